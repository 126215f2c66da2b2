"""Block Kit builders tested as functions: Slack's limits, escaping of hostile user text,
ids from the enums, ids-only button values, and structure."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.domain.approvals import (
    DENY_REASON_MAX_LENGTH,
    DENY_REASON_MIN_LENGTH,
    AlreadyCounted,
    AlreadyDecided,
    ApprovalAsk,
    Counted,
    Decided,
    ExtensionView,
    MessageView,
    PastSession,
    Refused,
)
from bot.domain.policy import BLOCK_FIELD, REASON_MAX_LENGTH, TICKET_MAX_LENGTH, BlockCause, Field_
from bot.domain.requests import BLOCK_MESSAGES, AlreadyOpen, Blocked, Granted, ModalOptions, NewRequestModal, Pending
from bot.domain.views import IssuedLink, RequestView, SessionView
from bot.slack import blocks, limits
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.block_rules import all_texts, mrkdwn_texts, problems, walk

HOSTILE = "<!channel> <@U123> <https://evil.example|click> &amp; <!subteam^S1>"
#: what must never reach a mrkdwn field or a fallback text unescaped
RAW_FRAGMENTS = ["<!channel>", "<@U123>", "<https://evil.example|click>", "<!subteam^S1>"]
LINK_URL = "http://bot.test/l/" + "T" * 43
STARTED = datetime(2026, 1, 15, 14, 0, tzinfo=timezone.utc)
SESSION_ID = "5f0c6f5e-8a37-4a4f-9d0b-6c1f7b6f2a11"
REQUEST_ID = "0b8f2a1e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def request_view(**changes) -> RequestView:
    base = RequestView(
        id=REQUEST_ID,
        state="granted",
        agent_slack_id="UAGENT1",
        agent_tz="Europe/Paris",
        account="acme",
        account_name="ACME Corp",
        account_flags=frozenset(),
        customer_user="u-bob",
        customer_user_name="Bob Builder",
        customer_user_email="bob@acme.example",
        reason="Customer reports the invoice page is blank",
        ticket="SUP-1234",
        duration_minutes=30,
        scope="read_only",
        gated_by=frozenset(),
        created_at=STARTED,
        agent_channel="DAGENT1",
        agent_message_ts="1700000000.000001",
    )
    return replace(base, **changes)


def hostile_request(**changes) -> RequestView:
    return request_view(
        account_name=HOSTILE * 10,
        customer_user_name=HOSTILE * 10,
        customer_user_email=f"x{HOSTILE}@acme.example",
        reason=(HOSTILE + " ") * 80,  # ~5000 characters, escaping makes it longer still
        ticket=HOSTILE,
        **changes,
    )


def session_view(request: RequestView, **changes) -> SessionView:
    base = SessionView(
        id=SESSION_ID,
        request=replace(request, state="active"),
        started_at=STARTED,
        expires_at=STARTED + timedelta(minutes=30),
        ended_at=None,
        end_reason=None,
        ended_by=None,
    )
    return replace(base, **changes)


def granted(request: RequestView) -> Granted:
    return Granted(request, IssuedLink(url=LINK_URL, expires_at=STARTED + timedelta(minutes=5)), redeem_window_minutes=5)


def modal_options(**changes) -> ModalOptions:
    base = ModalOptions(
        role="support",
        duration_choices=(15, 30, 60),
        default_duration=15,
        can_read_write=False,
        reason_min_length=10,
        ticket_required=True,
    )
    return replace(base, **changes)


def assert_no_raw_user_markup(text: str) -> None:
    for fragment in RAW_FRAGMENTS:
        assert fragment not in text, f"{fragment!r} reached Slack unescaped"


def assert_escaped_everywhere(text: str, message_blocks: list[dict]) -> None:
    assert_no_raw_user_markup(text)
    for mrkdwn in mrkdwn_texts(message_blocks):
        assert_no_raw_user_markup(mrkdwn)
        # the only "<" left in mrkdwn is our own link to the landing page
        # the only "<" left in mrkdwn is our own link to the landing page and our mentions of
        # well-formed Slack user ids
        ours = re.sub(r"<http://bot\.test/l/[A-Za-z0-9_-]{43}\|Open session>", "", mrkdwn)
        assert re.sub(r"<@[UW][A-Z0-9]+>", "", ours).count("<") == 0


def assert_slack_sdk_round_trips(message_blocks: list[dict]) -> None:
    """slack_sdk's own Block Kit models parse and re-serialise every block unchanged, so no
    key is misspelt or misplaced (the models drop what they do not know)."""
    parsed = Block.parse_all(message_blocks)
    assert [b.to_dict() for b in parsed] == message_blocks


EXTENSION_ID = "9c1d2e3f-4a5b-4c6d-8e9f-a0b1c2d3e4f5"
DECIDED_AT = STARTED + timedelta(minutes=12)


def extension_view(request: RequestView, **changes) -> ExtensionView:
    base = ExtensionView(
        id=EXTENSION_ID,
        session=session_view(request),
        requested_by=request.agent_slack_id,
        reason="Still reproducing the invoice bug",
        minutes=30,
        state="pending",
        approvals_required=1,
        pending_expires_at=STARTED + timedelta(minutes=40),
        new_expires_at=None,
    )
    return replace(base, **changes)


def past_sessions(reason: str = "Earlier look at billing") -> tuple[PastSession, ...]:
    return (
        PastSession(STARTED - timedelta(days=2), STARTED - timedelta(days=2) + timedelta(minutes=25), "ended", reason),
        PastSession(STARTED - timedelta(days=1), None, None, reason),
    )


def ask(request: RequestView, *, extension: ExtensionView | None = None, approvers=("UMANAGER1", "UMANAGER2")) -> ApprovalAsk:
    return ApprovalAsk(request, tuple(approvers), past_sessions(request.reason), extension)


def decided(request: RequestView, outcome: str, *, by: str | None = "UMANAGER1", reason: str | None = None, extension: ExtensionView | None = None) -> Decided:
    link = IssuedLink(url=LINK_URL, expires_at=DECIDED_AT + timedelta(minutes=5)) if outcome == "approved" and extension is None else None
    session = None
    if extension is not None:
        session = replace(extension.session, expires_at=extension.session.expires_at + timedelta(minutes=extension.minutes))
    return Decided(
        request,
        outcome,
        by,
        DECIDED_AT,
        reason,
        (MessageView("UMANAGER1", "DMANAGER1", "1700000000.000002"),),
        link=link,
        extension=replace(extension, state=outcome) if extension is not None else None,
        session=session,
    )


def gated_hostile() -> RequestView:
    return hostile_request(
        state="pending",
        account_flags=frozenset({"regulated", "sensitive"}),
        gated_by=frozenset({"regulated"}),
        approvals_required=2,
        pending_expires_at=STARTED + timedelta(minutes=30),
    )


def message_builders():
    hostile = hostile_request()
    gated = gated_hostile()
    ext = extension_view(hostile, reason=(HOSTILE + " ") * 80)
    denial = (HOSTILE + " ") * 80
    built = {
        "grant": blocks.grant_message(granted(hostile)),
        "grant after approval": blocks.grant_message(granted(hostile), approved_by="UMANAGER1"),
        "grant by break glass": blocks.grant_message(replace(granted(hostile), bypassed=frozenset({"regulated"}))),
        "pending": blocks.pending_message(
            Pending(replace(hostile, state="pending", gated_by=frozenset({"sensitive", "role"})), 2, ask(gated))
        ),
        "approval request": blocks.approval_request_message(ask(gated), tz_name="Asia/Tokyo"),
        "approval request for more time": blocks.approval_request_message(ask(hostile, extension=ext), tz_name=None),
        "break-glass alert": blocks.break_glass_alert(replace(gated, break_glass=True, gated_by=frozenset({"regulated", "role"}))),
        "extension pending": blocks.extension_pending_message(ask(hostile, extension=ext)),
        "active, can extend": blocks.session_active_message(session_view(hostile), can_request_extension=True),
        "active": blocks.session_active_message(session_view(hostile)),
        "ended": blocks.session_over_message(
            session_view(hostile, ended_at=STARTED + timedelta(minutes=10), end_reason="ended", ended_by="UAGENT1")
        ),
        "expired": blocks.session_over_message(session_view(hostile, end_reason="expired")),
        "revoked": blocks.session_over_message(session_view(hostile, end_reason="revoked", ended_by="USECURITY1")),
    }
    for outcome in ("approved", "denied", "expired", "cancelled"):
        by = None if outcome == "expired" else ("UAGENT1" if outcome == "cancelled" else "UMANAGER1")
        result = decided(gated, outcome, by=by, reason=denial if outcome == "denied" else None)
        built[f"approver sees {outcome}"] = blocks.approver_outcome_message(result, tz_name="Europe/Paris")
        built[f"agent sees {outcome}"] = blocks.request_outcome_message(result)
    for outcome in ("approved", "denied", "expired"):
        result = decided(hostile, outcome, by=None if outcome == "expired" else "UMANAGER1", reason=denial if outcome == "denied" else None, extension=ext)
        built[f"approver sees more time {outcome}"] = blocks.approver_outcome_message(result, tz_name=None)
        built[f"agent sees more time {outcome}"] = blocks.extension_outcome_message(result, can_request_extension=True)
    return built


@pytest.mark.parametrize("name", list(message_builders()))
def test_messages_escape_hostile_text_and_fit_slack_limits(name):
    text, message_blocks = message_builders()[name]
    assert problems(message_blocks, surface="message") == []
    assert 0 < len(text) <= limits.MESSAGE_TEXT_MAX
    assert_escaped_everywhere(text, message_blocks)
    assert "&amp;amp;" in json.dumps(message_blocks)  # the user's literal "&amp;" survives as text
    assert_slack_sdk_round_trips(message_blocks)
    for mrkdwn in (obj for _, obj in walk(message_blocks) if obj.get("type") == "mrkdwn"):
        assert mrkdwn["verbatim"] is True  # no auto-linking of bare URLs, #channels or @names


def test_grant_message_holds_the_link_once_outside_user_text():
    text, message_blocks = blocks.grant_message(granted(hostile_request()))
    sections = [b for b in message_blocks if b.get("block_id") == BlockId.GRANT_LINK.value]
    assert len(sections) == 1
    assert sections[0]["text"]["text"].startswith(f"<{LINK_URL}|Open session>\n")
    assert json.dumps(message_blocks).count(LINK_URL) == 1
    assert LINK_URL not in text  # notifications and lock screens never show the link


def test_grant_message_says_what_the_link_opens_and_for_how_long():
    _, message_blocks = blocks.grant_message(granted(request_view(scope="read_write", duration_minutes=120)))
    rendered = "\n".join(all_texts(message_blocks))
    assert "valid for 5 minutes, until 15:05 CET" in rendered  # the agent's time zone (Paris)
    assert "ACME Corp (acme)" in rendered
    assert "Bob Builder (bob@acme.example)" in rendered
    assert "Read and write" in rendered
    assert "2 hours, from when you open the link" in rendered
    assert "SUP-1234" in rendered


def pending(request: RequestView, approvals_required: int, approvers: tuple[str, ...]) -> Pending:
    return Pending(request, approvals_required, ApprovalAsk(request, approvers, ()))


def test_pending_message_says_why_who_was_asked_and_offers_cancel():
    request = request_view(state="pending", gated_by=frozenset({"regulated"}), pending_expires_at=STARTED + timedelta(minutes=30))
    text, message_blocks = blocks.pending_message(pending(request, 2, ("UMANAGER1", "UMANAGER2")))
    rendered = "\n".join(all_texts(message_blocks))
    assert "Approval needed" in rendered
    assert "because the account is regulated" in rendered
    assert "It was sent to <@UMANAGER1> and <@UMANAGER2>; it needs 2 different approvers." in rendered
    assert "Without a decision by 15:30 CET, it expires." in rendered  # the agent's zone
    assert "needs approval" in text
    (button,) = buttons_of(message_blocks)
    assert (button["action_id"], button["value"]) == (ActionId.CANCEL_REQUEST.value, REQUEST_ID)
    assert "confirm" in button


def test_pending_message_when_no_one_can_approve():
    _, message_blocks = blocks.pending_message(pending(request_view(state="pending"), 1, ()))
    assert "No one in the policy can approve it" in "\n".join(all_texts(message_blocks))


def test_a_long_list_of_approvers_is_shortened_by_whole_mentions():
    approvers = tuple(f"UMANAGER{i:03d}" for i in range(300))
    _, message_blocks = blocks.pending_message(pending(request_view(state="pending"), 1, approvers))
    assert problems(message_blocks, surface="message") == []
    rendered = "\n".join(mrkdwn_texts(message_blocks))
    assert "<@UMANAGER019> and 280 others" in rendered
    assert rendered.count("<@") == 20
    assert "<@UMANAGER020>" not in rendered


def test_a_malformed_approver_id_is_shown_as_text_not_markup():
    _, message_blocks = blocks.pending_message(pending(request_view(state="pending"), 1, ("!channel", "U1|x>", "UOK1")))
    rendered = "\n".join(mrkdwn_texts(message_blocks))
    assert "<!channel>" not in rendered and "<@!channel>" not in rendered
    assert "U1|x&gt;" in rendered and "<@UOK1>" in rendered


def buttons_of(message_blocks) -> list[dict]:
    return [obj for _, obj in walk(message_blocks) if obj.get("type") == "button"]


@pytest.mark.parametrize(
    ("can_request_extension", "second"), [(True, ActionId.REQUEST_EXTENSION), (False, ActionId.START_NEW_REQUEST)]
)
def test_session_active_message_buttons_carry_only_the_session_id(can_request_extension, second):
    text, message_blocks = blocks.session_active_message(session_view(request_view()), can_request_extension=can_request_extension)
    assert message_blocks[0]["text"]["text"] == "Session active until 15:30 CET"  # 14:30 UTC in Paris
    end, other = buttons_of(message_blocks)
    assert end["action_id"] == ActionId.END_SESSION.value and "confirm" in end
    assert other["action_id"] == second.value
    assert end["value"] == other["value"] == SESSION_ID and UUID.match(end["value"])
    assert "15:30 CET" in text


@pytest.mark.parametrize(
    ("changes", "headline"),
    [
        ({"end_reason": "ended", "ended_by": "UAGENT1", "ended_at": STARTED + timedelta(minutes=10)}, "Session ended at 15:10 CET"),
        ({"end_reason": "expired", "ended_at": STARTED + timedelta(minutes=30)}, "Session expired at 15:30 CET"),
        ({"end_reason": "revoked", "ended_by": "USECURITY1", "ended_at": STARTED + timedelta(minutes=5)}, "Session was revoked at 15:05 CET"),
        ({}, "Session expired at 15:30 CET"),  # still marked active, but over by the clock
    ],
)
def test_session_over_message_wording_and_its_one_button(changes, headline):
    text, message_blocks = blocks.session_over_message(session_view(request_view(), **changes))
    assert message_blocks[0]["text"]["text"] == headline
    if changes.get("end_reason") == "revoked":
        # security took the access away: nothing invites the agent straight back
        assert not [obj for _, obj in walk(message_blocks) if obj.get("type") in ("button", "actions")]
    else:
        # ended or expired: ask again (a re-initiation); the value is the session id only
        (again,) = buttons_of(message_blocks)
        assert (again["action_id"], again["value"]) == (ActionId.START_NEW_REQUEST.value, SESSION_ID)
        assert [b["block_id"] for b in message_blocks if b["type"] == "actions"] == [BlockId.SESSION_ACTIONS.value]
    assert problems(message_blocks, surface="message") == []
    if changes.get("end_reason") == "ended":
        assert "ended by you" in "\n".join(all_texts(message_blocks))
    if changes.get("end_reason") == "revoked":
        assert "revoked by security" in "\n".join(all_texts(message_blocks))


def test_unknown_time_zone_falls_back_to_utc():
    _, message_blocks = blocks.session_active_message(session_view(request_view(agent_tz="Not/AZone")))
    assert message_blocks[0]["text"]["text"] == "Session active until 14:30 UTC"


# ---------------------------------------------------------------------------- the modal


def inputs(view: dict) -> dict[str, dict]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


@pytest.mark.parametrize("can_read_write", [False, True])
@pytest.mark.parametrize("ticket_required", [False, True])
def test_request_modal_structure(can_read_write, ticket_required):
    view = blocks.request_modal(
        modal_options(can_read_write=can_read_write, ticket_required=ticket_required),
        initial_account=("acme", "ACME Corp (acme)"),
    )
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value
    assert "private_metadata" not in view  # nothing to carry: the submission is decided afresh
    fields = inputs(view)
    assert list(fields) == [b.value for b in (BlockId.ACCOUNT, BlockId.USER, BlockId.REASON, BlockId.TICKET, BlockId.DURATION, BlockId.SCOPE)]
    account = fields[BlockId.ACCOUNT.value]["element"]
    assert account["type"] == "external_select" and account["min_query_length"] == 0
    assert account["initial_option"]["value"] == "acme"
    user = fields[BlockId.USER.value]["element"]
    assert user["type"] == "external_select" and "initial_option" not in user
    reason = fields[BlockId.REASON.value]["element"]
    assert reason["multiline"] is True
    assert reason["min_length"] == 10 and reason["max_length"] == REASON_MAX_LENGTH
    assert fields[BlockId.TICKET.value]["optional"] is (not ticket_required)
    assert fields[BlockId.TICKET.value]["element"]["max_length"] == TICKET_MAX_LENGTH
    duration = fields[BlockId.DURATION.value]["element"]
    assert [o["value"] for o in duration["options"]] == ["15", "30", "60"]
    assert duration["initial_option"]["value"] == "15"
    scope = fields[BlockId.SCOPE.value]["element"]
    assert scope["initial_option"]["value"] == "read_only"
    assert [o["value"] for o in scope["options"]] == (["read_only", "read_write"] if can_read_write else ["read_only"])
    view_model = View(**view)
    view_model.validate_json()  # slack_sdk's own checks (lengths, required keys)
    assert view_model.to_dict() == view


def test_request_modal_without_a_prefilled_account():
    view = blocks.request_modal(modal_options(), initial_account=None)
    assert "initial_option" not in inputs(view)[BlockId.ACCOUNT.value]["element"]


def test_request_modal_cuts_a_long_account_label_and_drops_an_overlong_id():
    view = blocks.request_modal(modal_options(), initial_account=("acme", HOSTILE * 5))
    option = inputs(view)[BlockId.ACCOUNT.value]["element"]["initial_option"]
    assert len(option["text"]["text"]) <= limits.OPTION_TEXT_MAX and option["value"] == "acme"
    view = blocks.request_modal(modal_options(), initial_account=("a" * 200, "label"))
    assert "initial_option" not in inputs(view)[BlockId.ACCOUNT.value]["element"]


def test_no_role_gets_an_informational_view_without_submit():
    view = blocks.request_modal(modal_options(role=None, duration_choices=(), default_duration=None), initial_account=None)
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == CallbackId.IMPERSONATE_UNAVAILABLE.value
    assert "submit" not in view
    assert not [b for b in view["blocks"] if b["type"] == "input"]
    assert "no impersonation role" in view["blocks"][0]["text"]["text"]
    View(**view).validate_json()


JUSTIFICATIONS = (("contract", "Support the customer asked for"), ("incident", "Incident affecting the customer"))


@pytest.mark.parametrize("can_break_glass", [False, True])
def test_field_errors_land_on_a_block_the_modal_has(can_break_glass):
    view = blocks.request_modal(modal_options(can_break_glass=can_break_glass, justifications=JUSTIFICATIONS), initial_account=None)
    block_ids = set(inputs(view))
    for cause, field in BLOCK_FIELD.items():
        blocked = Blocked(cause, field, BLOCK_MESSAGES.get(cause, "Refused."))
        errors = blocks.field_errors(blocked, present=blocks.view_block_ids(view))
        assert len(errors) == 1
        (block_id, message), = errors.items()
        assert block_id in block_ids
        assert 0 < len(message) <= limits.FIELD_ERROR_MAX
        if field in blocks.FIELD_BLOCKS and (can_break_glass or field is not Field_.BREAK_GLASS):
            assert block_id == blocks.FIELD_BLOCKS[field].value == field.value
        # without the submitted view's blocks, each field maps to its own block
        assert list(blocks.field_errors(blocked)) == [blocks.FIELD_BLOCKS[field].value]


def test_a_break_glass_refusal_on_a_modal_without_the_checkbox_goes_to_the_top():
    blocked = Blocked(BlockCause.BREAK_GLASS_NOT_ALLOWED, Field_.BREAK_GLASS, "no")
    assert blocks.field_errors(blocked) == {"break_glass": "no"}
    view = blocks.request_modal(modal_options(), initial_account=None)
    assert blocks.field_errors(blocked, present=blocks.view_block_ids(view)) == {"account": "no"}


def test_field_errors_examples():
    assert blocks.field_errors(Blocked(BlockCause.OPTED_OUT, BLOCK_FIELD[BlockCause.OPTED_OUT], "opted out")) == {"account": "opted out"}
    assert blocks.field_errors(Blocked(BlockCause.REASON_TOO_SHORT, BLOCK_FIELD[BlockCause.REASON_TOO_SHORT], "longer")) == {"reason": "longer"}
    assert blocks.field_errors(Blocked(BlockCause.PROTECTED_USER, BLOCK_FIELD[BlockCause.PROTECTED_USER], "no")) == {"user": "no"}


def state(account="acme", user="u-bob", reason="A reason long enough", ticket="SUP-1", duration="30", scope="read_only"):
    def selected(value):
        return {"type": "static_select", "selected_option": None if value is None else {"text": {"type": "plain_text", "text": "x"}, "value": value}}

    return {
        BlockId.ACCOUNT.value: {ActionId.ACCOUNT_SELECT.value: selected(account)},
        BlockId.USER.value: {ActionId.USER_SELECT.value: selected(user)},
        BlockId.REASON.value: {ActionId.REASON_INPUT.value: {"type": "plain_text_input", "value": reason}},
        BlockId.TICKET.value: {ActionId.TICKET_INPUT.value: {"type": "plain_text_input", "value": ticket}},
        BlockId.DURATION.value: {ActionId.DURATION_SELECT.value: selected(duration)},
        BlockId.SCOPE.value: {ActionId.SCOPE_CHOICE.value: selected(scope)},
    }


def test_the_justification_is_a_required_select_of_the_policy_codes_beside_the_reason():
    view = blocks.request_modal(modal_options(justifications=JUSTIFICATIONS), initial_account=None)
    assert problems(view, surface="modal") == []
    fields = inputs(view)
    assert list(fields)[2:4] == [BlockId.REASON.value, BlockId.JUSTIFICATION.value]
    justification = fields[BlockId.JUSTIFICATION.value]
    assert "optional" not in justification  # required: Slack will not submit the modal without it
    element = justification["element"]
    assert (element["type"], element["action_id"]) == ("static_select", ActionId.JUSTIFICATION_SELECT.value)
    assert [(o["value"], o["text"]["text"]) for o in element["options"]] == list(JUSTIFICATIONS)
    assert "initial_option" not in element  # the agent chooses; nothing is chosen for them
    View(**view).validate_json()
    # a policy listing no codes asks for none
    assert BlockId.JUSTIFICATION.value not in inputs(blocks.request_modal(modal_options(), initial_account=None))


def test_request_form_from_state_reads_the_chosen_justification():
    values = state()
    values[BlockId.JUSTIFICATION.value] = {
        ActionId.JUSTIFICATION_SELECT.value: {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": "incident"}}
    }
    assert blocks.request_form_from_state(values).justification == "incident"
    assert blocks.request_form_from_state(state()).justification is None


def test_approvers_see_the_justification_beside_the_reason():
    _, message_blocks = blocks.approval_request_message(ask(regulated_request(justification="incident")), tz_name=None)
    assert "*Reason* · justification: incident\nCustomer reports the invoice page is blank" in rendered_text(message_blocks)


def test_request_form_from_state_reads_ids_and_minutes():
    form = blocks.request_form_from_state(state())
    assert (form.account, form.user, form.reason, form.ticket, form.duration_minutes, form.scope) == (
        "acme", "u-bob", "A reason long enough", "SUP-1", 30, "read_only"
    )


@pytest.mark.parametrize("duration", ["-5", "abc", "1e3", "²", "١٥", "9" * 50, None])
def test_request_form_from_state_leaves_bad_answers_for_the_domain_to_refuse(duration):
    form = blocks.request_form_from_state(state(duration=duration, ticket=None, user=None))
    assert form.duration_minutes is None and form.ticket is None and form.user is None


def test_request_form_from_state_tolerates_a_missing_block():
    values = state()
    del values[BlockId.SCOPE.value]
    del values[BlockId.REASON.value]
    form = blocks.request_form_from_state(values)
    assert form.scope == "read_only" and form.reason == ""
    assert blocks.request_form_from_state({}).account is None


def test_option_lists_respect_slack_limits():
    pairs = [(f"acct-{i}", f"{HOSTILE} {i}") for i in range(150)] + [("x" * 151, "too long an id")]
    for builder in (blocks.account_options, blocks.user_options):
        options = builder(pairs)
        assert len(options) == limits.OPTIONS_MAX
        assert all(len(o["text"]["text"]) <= limits.OPTION_TEXT_MAX for o in options)
        assert all(len(o["value"]) <= limits.OPTION_VALUE_MAX for o in options)
        assert options[0] == {"text": {"type": "plain_text", "text": f"{HOSTILE} 0", "emoji": True}, "value": "acct-0"}
    assert blocks.account_options([("x" * 151, "dropped"), ("ok", "kept")]) == [
        {"text": {"type": "plain_text", "text": "kept", "emoji": True}, "value": "ok"}
    ]


def test_raw_user_text_appears_only_in_plain_text_objects():
    """plain_text objects are not parsed for mentions or links (Slack "Composition objects:
    text object"), so they may show user text as typed; any other string Slack receives
    (mrkdwn, values, the fallback text) must not carry it raw."""

    def raw_strings(node, parent=None, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from raw_strings(v, node, k)
        elif isinstance(node, list):
            for v in node:
                yield from raw_strings(v, parent, key)
        elif isinstance(node, str) and any(f in node for f in RAW_FRAGMENTS):
            yield parent, key

    for name, (text, message_blocks) in message_builders().items():
        assert not any(f in text for f in RAW_FRAGMENTS), name
        for parent, key in raw_strings(message_blocks):
            assert parent.get("type") == "plain_text" and key == "text", (name, parent)


# ---------------------------------------------------------------------------- against real views


def test_our_structure_rules_hold_for_slacks_own_example_views(reference_dir):
    """The rules the checker enforces are Slack's: real views from python-slack-sdk's test
    data pass them (ids aside: those views use their own), and every one of them with input
    blocks has `submit`, as ours does."""
    fixtures = sorted((reference_dir / "sdk-fixtures").glob("view_modal_*.json"))
    assert fixtures
    with_inputs = 0
    for path in fixtures:
        view = json.loads(path.read_text())
        assert problems(view, surface="modal", own_ids=False) == [], path.name
        if any(b.get("type") == "input" for b in view.get("blocks", [])):
            with_inputs += 1
            assert "submit" in view
    assert with_inputs > 0
    ours = blocks.request_modal(modal_options(), initial_account=None)
    real_keys = set().union(*(json.loads(p.read_text()).keys() for p in fixtures))
    assert set(ours) <= real_keys | {"callback_id"}


# ---------------------------------------------------------------------------- approvals


def rendered_text(message_blocks) -> str:
    return "\n".join(all_texts(message_blocks))


def regulated_request(**changes) -> RequestView:
    base = dict(
        state="pending",
        account_flags=frozenset({"regulated", "sensitive"}),
        gated_by=frozenset({"regulated"}),
        approvals_required=2,
        pending_expires_at=STARTED + timedelta(minutes=30),
    )
    return request_view(**{**base, **changes})


def test_approval_request_message_shows_what_an_approver_needs_in_their_time_zone():
    text, message_blocks = blocks.approval_request_message(ask(regulated_request()), tz_name="Asia/Tokyo")
    shown = rendered_text(message_blocks)
    assert message_blocks[0]["text"]["text"] == "Approval needed: impersonation"
    assert "<@UAGENT1> asks to impersonate Bob Builder (bob@acme.example) in ACME Corp (acme)." in shown
    for label, value in [
        ("Agent", "<@UAGENT1>"),
        ("Account flags", "regulated, sensitive"),
        ("Customer user", "Bob Builder (bob@acme.example)"),
        ("Access", "Read-only"),
        ("Session length", "30 minutes"),
        ("Ticket", "SUP-1234"),
        ("Approvals needed", "2 different approvers"),
        ("Decide by", "23:30 JST"),  # 14:30 UTC in Tokyo
    ]:
        assert f"*{label}*\n{value}" in shown
    assert "*Reason*\nCustomer reports the invoice page is blank" in shown
    # the agent's recent sessions on this account
    assert "• 13 Jan 23:00 JST (25 minutes, ended): Customer reports the invoice page is blank" in shown
    assert "• 14 Jan 23:00 JST (still open)" in shown
    (actions,) = [b for b in message_blocks if b["type"] == "actions"]
    assert actions["block_id"] == BlockId.APPROVAL_ACTIONS.value
    approve, deny = actions["elements"]
    assert (approve["action_id"], approve["value"], approve["style"]) == (ActionId.APPROVE_REQUEST.value, REQUEST_ID, "primary")
    assert (deny["action_id"], deny["value"], deny["style"]) == (ActionId.DENY_REQUEST.value, REQUEST_ID, "danger")
    assert "confirm" in approve and "confirm" not in deny  # deny asks for a reason instead
    assert text.startswith("Approval needed: <@UAGENT1> asks to impersonate Bob Builder in ACME Corp")
    assert LINK_URL not in json.dumps(message_blocks)


def test_approval_request_message_for_more_time_carries_the_extension_id():
    request = request_view(state="active")
    _, message_blocks = blocks.approval_request_message(ask(request, extension=extension_view(request)), tz_name=None)
    shown = rendered_text(message_blocks)
    assert message_blocks[0]["text"]["text"] == "Approval needed: more time"
    assert "asks for 30 minutes more on their live session as Bob Builder (bob@acme.example) in ACME Corp (acme), which ends at 14:30 UTC." in shown
    assert "*More time*\n30 minutes" in shown and "*Decide by*\n14:40 UTC" in shown
    assert "*Reason for more time*\nStill reproducing the invoice bug" in shown
    assert "*Original reason*\nCustomer reports the invoice page is blank" in shown
    approve, deny = buttons_of(message_blocks)
    assert (approve["action_id"], deny["action_id"]) == (ActionId.APPROVE_EXTENSION.value, ActionId.DENY_EXTENSION.value)
    assert approve["value"] == deny["value"] == EXTENSION_ID


def test_approval_request_message_without_recent_sessions_and_after_an_earlier_session():
    request = regulated_request(previous_session_id=SESSION_ID)
    _, message_blocks = blocks.approval_request_message(ApprovalAsk(request, ("UMANAGER1",), ()), tz_name=None)
    shown = rendered_text(message_blocks)
    assert "None: this is their first session on this account." in shown
    assert "It follows an earlier session of theirs." in shown


@pytest.mark.parametrize(
    ("outcome", "by", "reason", "line"),
    [
        ("approved", "UMANAGER1", None, "*Approved* by <@UMANAGER1> at 15:12 CET."),
        ("denied", "UMANAGER2", "Not justified by the ticket", "*Denied* by <@UMANAGER2> at 15:12 CET: Not justified by the ticket"),
        ("expired", None, None, "*Expired* at 15:12 CET: no decision in the time allowed."),
        ("cancelled", "UAGENT1", None, "*Cancelled by the agent* at 15:12 CET."),
    ],
)
def test_approver_outcome_message_says_who_decided_and_leaves_no_buttons(outcome, by, reason, line):
    text, message_blocks = blocks.approver_outcome_message(decided(regulated_request(), outcome, by=by, reason=reason), tz_name="Europe/Paris")
    assert message_blocks[1]["text"]["text"] == line
    assert message_blocks[0]["text"]["text"] == f"{outcome.capitalize()}: impersonation"
    assert "<@UAGENT1> asked to impersonate" in rendered_text(message_blocks)
    assert not [b for b in message_blocks if b["type"] == "actions"]
    assert not buttons_of(message_blocks)
    assert LINK_URL not in json.dumps(message_blocks) and LINK_URL not in text


def test_approver_outcome_message_for_more_time_gives_the_new_end():
    request = request_view(state="active")
    result = decided(request, "approved", extension=extension_view(request))
    _, message_blocks = blocks.approver_outcome_message(result, tz_name=None)
    assert message_blocks[1]["text"]["text"] == "*Approved* by <@UMANAGER1> at 14:12 UTC. The session now ends at 15:00 UTC."
    assert message_blocks[0]["text"]["text"] == "Approved: more time"


@pytest.mark.parametrize(
    ("outcome", "by", "reason", "headline", "line"),
    [
        ("approved", "UMANAGER1", None, "Request approved", "Approved by <@UMANAGER1> at 15:12 CET. Your one-time link is in the next message."),
        ("denied", "UMANAGER2", "Not justified", "Request denied", "Denied by <@UMANAGER2> at 15:12 CET.\n*Their reason*\nNot justified"),
        ("expired", None, None, "Request expired", "No approver decided in time: the request expired at 15:12 CET."),
        ("cancelled", "UAGENT1", None, "Request cancelled", "You cancelled this request at 15:12 CET."),
    ],
)
def test_request_outcome_message_tells_the_agent_in_their_time_zone(outcome, by, reason, headline, line):
    text, message_blocks = blocks.request_outcome_message(decided(regulated_request(), outcome, by=by, reason=reason))
    assert message_blocks[0]["text"]["text"] == headline
    assert message_blocks[1]["text"]["text"].startswith(line)
    assert not buttons_of(message_blocks)  # no Cancel left on a decided request
    assert LINK_URL not in json.dumps(message_blocks)  # the link comes in its own DM


def test_grant_message_after_approval_names_the_approver():
    _, message_blocks = blocks.grant_message(granted(request_view()), approved_by="UMANAGER1")
    assert "Approved by <@UMANAGER1>." in rendered_text(message_blocks)
    assert json.dumps(message_blocks).count(LINK_URL) == 1


def test_break_glass_alert_tells_security_everything_but_the_link():
    # a break-glass request stores the gates it skipped in gated_by
    alert = replace(regulated_request(state="granted"), break_glass=True, gated_by=frozenset({"regulated"}))
    text, message_blocks = blocks.break_glass_alert(alert)
    shown = rendered_text(message_blocks)
    assert message_blocks[0]["text"]["text"] == "Break-glass impersonation"
    assert "<@UAGENT1> skipped approval to impersonate Bob Builder (bob@acme.example) in ACME Corp (acme) at 14:00 UTC." in shown
    for label, value in [
        ("Account flags", "regulated, sensitive"),
        ("Approval skipped", "regulated"),
        ("Access", "Read-only"),
        ("Session length", "30 minutes"),
        ("Ticket", "SUP-1234"),
    ]:
        assert f"*{label}*\n{value}" in shown
    assert "*Reason*\nCustomer reports the invoice page is blank" in shown
    assert REQUEST_ID in shown
    assert LINK_URL not in json.dumps(message_blocks) and LINK_URL not in text
    assert not buttons_of(message_blocks)


def test_extension_pending_message_names_who_was_asked_and_offers_no_second_ask():
    request = request_view(state="active")
    _, message_blocks = blocks.extension_pending_message(ask(request, extension=extension_view(request)))
    assert "You asked for 30 minutes more. Waiting for <@UMANAGER1> and <@UMANAGER2>." in rendered_text(message_blocks)
    assert [b["action_id"] for b in buttons_of(message_blocks)] == [ActionId.END_SESSION.value]
    with pytest.raises(ValueError):
        blocks.extension_pending_message(ask(request))


@pytest.mark.parametrize(
    ("outcome", "notice"),
    [
        ("approved", "Your request for 30 minutes more was approved by <@UMANAGER1> at 15:12 CET."),
        ("denied", "Your request for 30 minutes more was denied by <@UMANAGER1> at 15:12 CET: Enough for today"),
        ("expired", "Your request for 30 minutes more expired without a decision."),
    ],
)
def test_extension_outcome_message_edits_the_live_session(outcome, notice):
    request = request_view(state="active")
    result = decided(request, outcome, reason="Enough for today" if outcome == "denied" else None, extension=extension_view(request))
    _, message_blocks = blocks.extension_outcome_message(result, can_request_extension=True)
    assert message_blocks[0]["text"]["text"] == "Session active until 16:00 CET"  # the session as the domain returned it
    assert message_blocks[1]["text"]["text"] == notice
    assert [b["action_id"] for b in buttons_of(message_blocks)] == [ActionId.END_SESSION.value, ActionId.REQUEST_EXTENSION.value]


def test_extension_outcome_message_never_revives_a_session_that_is_over():
    request = request_view(state="active")
    result = decided(request, "expired", by=None, extension=extension_view(request))
    over = replace(result, session=replace(result.session, ended_at=DECIDED_AT - timedelta(minutes=1), request=replace(request, state="ended")))
    assert blocks.extension_outcome_message(over, can_request_extension=True) is None
    past_end = replace(result, at=result.session.expires_at)
    assert blocks.extension_outcome_message(past_end, can_request_extension=True) is None
    assert blocks.extension_outcome_message(decided(request, "approved"), can_request_extension=True) is None  # not an extension


# ---------------------------------------------------------------------------- approval modals


def test_request_modal_offers_break_glass_only_to_break_glass_roles():
    assert BlockId.BREAK_GLASS.value not in inputs(blocks.request_modal(modal_options(), initial_account=None))
    view = blocks.request_modal(modal_options(can_break_glass=True, break_glass_reason_min_length=60), initial_account=None)
    assert problems(view, surface="modal") == []
    box = inputs(view)[BlockId.BREAK_GLASS.value]
    assert box["optional"] is True
    assert "at least 60 characters" in box["hint"]["text"]
    element = box["element"]
    assert element["type"] == "checkboxes" and element["action_id"] == ActionId.BREAK_GLASS_CHOICE.value
    assert [o["value"] for o in element["options"]] == [blocks.BREAK_GLASS_VALUE]
    assert element["options"][0]["text"]["text"] == "Break glass (skip approval)"
    assert "initial_options" not in element  # never ticked by default
    View(**view).validate_json()


def test_request_modal_after_a_session_carries_only_its_id():
    view = blocks.request_modal(modal_options(), initial_account=("acme", "ACME Corp (acme)"), previous_session_id=SESSION_ID)
    assert problems(view, surface="modal") == []
    assert view["private_metadata"] == SESSION_ID
    assert "fresh reason" in view["blocks"][0]["text"]["text"]
    assert inputs(view)[BlockId.ACCOUNT.value]["element"]["initial_option"]["value"] == "acme"
    View(**view).validate_json()
    for forged in ("not-an-id", SESSION_ID.upper(), HOSTILE, "x" * 5000):
        assert "private_metadata" not in blocks.request_modal(modal_options(), initial_account=None, previous_session_id=forged)


def checkbox_state(checked: list[str]) -> dict:
    values = state()
    values[BlockId.BREAK_GLASS.value] = {
        ActionId.BREAK_GLASS_CHOICE.value: {"type": "checkboxes", "selected_options": [{"value": v, "text": {"type": "plain_text", "text": "x"}} for v in checked]}
    }
    return values


def test_request_form_from_state_reads_break_glass_and_the_previous_session():
    assert blocks.request_form_from_state(state()).break_glass is False
    assert blocks.request_form_from_state(checkbox_state([])).break_glass is False
    assert blocks.request_form_from_state(checkbox_state(["something else"])).break_glass is False
    assert blocks.request_form_from_state(checkbox_state([blocks.BREAK_GLASS_VALUE])).break_glass is True
    assert blocks.request_form_from_state(state()).previous_session_id is None
    assert blocks.request_form_from_state(state(), private_metadata=SESSION_ID).previous_session_id == SESSION_ID
    assert blocks.request_form_from_state(state(), private_metadata="'; drop table sessions; --").previous_session_id is None


@pytest.mark.parametrize("extension", [False, True])
def test_deny_modal_asks_for_a_reason_and_carries_only_the_id(extension):
    subject = EXTENSION_ID if extension else REQUEST_ID
    view = blocks.deny_modal(subject, extension=extension)
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == (CallbackId.DENY_EXTENSION if extension else CallbackId.DENY_REQUEST).value
    assert view["private_metadata"] == subject
    reason = inputs(view)[BlockId.DENY_REASON.value]["element"]
    assert reason["action_id"] == ActionId.DENY_REASON_INPUT.value
    assert (reason["min_length"], reason["max_length"]) == (DENY_REASON_MIN_LENGTH, DENY_REASON_MAX_LENGTH)
    View(**view).validate_json()
    assert "private_metadata" not in blocks.deny_modal(HOSTILE, extension=extension)


def test_deny_reason_and_errors():
    values = {BlockId.DENY_REASON.value: {ActionId.DENY_REASON_INPUT.value: {"type": "plain_text_input", "value": "Not justified"}}}
    assert blocks.deny_reason_from_state(values) == "Not justified"
    assert blocks.deny_reason_from_state({}) == ""
    errors = blocks.deny_reason_errors("x" * 1000)
    assert list(errors) == [BlockId.DENY_REASON.value] and len(errors[BlockId.DENY_REASON.value]) <= limits.FIELD_ERROR_MAX


def test_extension_modal_offers_the_policy_choices_and_carries_the_session_id():
    view = blocks.extension_modal(SESSION_ID, choices_minutes=[15, 30, 60], reason_min_length=10)
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == CallbackId.REQUEST_EXTENSION.value
    assert view["private_metadata"] == SESSION_ID
    fields = inputs(view)
    minutes = fields[BlockId.EXTENSION_MINUTES.value]["element"]
    assert [o["value"] for o in minutes["options"]] == ["15", "30", "60"] and minutes["initial_option"]["value"] == "15"
    reason = fields[BlockId.EXTENSION_REASON.value]["element"]
    assert reason["min_length"] == 10 and reason["max_length"] == REASON_MAX_LENGTH
    View(**view).validate_json()
    assert "private_metadata" not in blocks.extension_modal("../etc", choices_minutes=[15], reason_min_length=10)


@pytest.mark.parametrize(("minutes", "expected"), [("30", 30), ("forged", 0), (None, 0), ("-5", 0)])
def test_extension_answer_from_state(minutes, expected):
    values = {
        BlockId.EXTENSION_MINUTES.value: {
            ActionId.EXTENSION_MINUTES_SELECT.value: {"type": "static_select", "selected_option": None if minutes is None else {"value": minutes}}
        },
        BlockId.EXTENSION_REASON.value: {ActionId.EXTENSION_REASON_INPUT.value: {"type": "plain_text_input", "value": "more to do"}},
    }
    assert blocks.extension_answer_from_state(values) == blocks.ExtensionAnswer(expected, "more to do")
    assert list(blocks.extension_errors("no")) == [BlockId.EXTENSION_REASON.value]


def test_notice_modal_has_nothing_to_submit():
    view = blocks.notice_modal("This request was already approved.")
    assert problems(view, surface="modal") == [] and "submit" not in view
    View(**view).validate_json()


# ---------------------------------------------------------------------------- click answers


@pytest.mark.parametrize(
    ("result", "extension", "expected"),
    [
        (Counted(REQUEST_ID, 1, 2), False, "Your approval is recorded: 1 of 2. It waits for one more approver."),
        (Counted(REQUEST_ID, 1, 3), False, "Your approval is recorded: 1 of 3. It waits for 2 more approvers."),
        (AlreadyCounted(REQUEST_ID), False, "Your decision on this request was already counted. Nothing changed."),
        (AlreadyDecided("approved", "UMANAGER2", DECIDED_AT), False, "This request was already approved by <@UMANAGER2> at 15:12 CET."),
        (AlreadyDecided("denied", "UMANAGER2", DECIDED_AT), True, "This request for more time was already denied by <@UMANAGER2> at 15:12 CET."),
        (AlreadyDecided("expired", None, DECIDED_AT), False, "This request was already expired at 15:12 CET."),
        (AlreadyDecided("cancelled", "UAGENT1", DECIDED_AT), False, "This request was already cancelled by <@UAGENT1> at 15:12 CET."),
        (Refused(HOSTILE), False, "&lt;!channel&gt; &lt;@U123&gt;"),
    ],
)
def test_click_answer_text(result, extension, expected):
    text = blocks.click_answer_text(result, tz_name="Europe/Paris", extension=extension)
    assert text.startswith(expected)
    assert_no_raw_user_markup(text)


def test_carried_id_accepts_only_our_ids():
    assert blocks.carried_id(REQUEST_ID) == REQUEST_ID
    for forged in (None, "", 42, REQUEST_ID.upper(), "{" + REQUEST_ID + "}", REQUEST_ID + "\n", HOSTILE, "x" * 5000):
        assert blocks.carried_id(forged) == ""


def test_account_choice_matches_the_typeahead_label():
    assert blocks.account_choice(request_view()) == ("acme", "ACME Corp (acme)")


# ---------------------------------------------------------------------------- re-initiation


def reinitiation(ordinal: int, *, after: timedelta, **changes) -> RequestView:
    """A request made `after` the end of the agent's previous session with the user."""
    return regulated_request(
        previous_session_id=SESSION_ID, reinitiation_ordinal=ordinal, previous_session_ended_at=STARTED - after, **changes
    )


def test_the_approvers_are_told_which_reinitiation_it_is_and_how_soon():
    request = reinitiation(2, after=timedelta(minutes=11, seconds=40))
    _, message_blocks = blocks.approval_request_message(ask(request), tz_name=None)
    assert problems(message_blocks, surface="message") == []
    summary = message_blocks[1]["text"]["text"]
    assert summary.endswith(" *Re-initiation #2 within 12 min* of their previous session with this user ending.")
    assert "It follows an earlier session" not in rendered_text(message_blocks)
    # and the decided DM keeps saying it
    _, decided_blocks = blocks.approver_outcome_message(decided(request, "approved"), tz_name=None)
    assert "*Re-initiation #2 within 12 min*" in rendered_text(decided_blocks)


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (request_view(), None),
        (replace(request_view(), previous_session_id=SESSION_ID), None),  # linked before re-initiations were numbered
        (replace(request_view(), reinitiation_ordinal=1, previous_session_ended_at=STARTED), "re-initiation #1 within 1 min"),
        (replace(request_view(), reinitiation_ordinal=4, previous_session_ended_at=STARTED - timedelta(minutes=30)), "re-initiation #4 within 30 min"),
    ],
)
def test_reinitiation_text(request_, says):
    assert blocks.reinitiation_text(request_) == says


def test_the_agent_is_told_the_reinitiation_is_why_it_waits():
    request = reinitiation(3, after=timedelta(minutes=4), state="pending", account_flags=frozenset(), gated_by=frozenset({"reinitiation"}))
    _, message_blocks = blocks.pending_message(pending(request, 1, ("UMANAGER1",)))
    rendered = "\n".join(all_texts(message_blocks))
    assert "needs approval because it is your re-initiation #3 in a row with this customer user." in rendered
    assert "the account is" not in rendered


def test_start_a_new_request_opens_the_modal_or_the_open_access():
    over = NewRequestModal(modal_options(), request_view(), SESSION_ID)
    view = blocks.new_request_view(over, tz_name=None)
    assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value and view["private_metadata"] == SESSION_ID
    account = next(b for b in view["blocks"] if b.get("block_id") == BlockId.ACCOUNT.value)["element"]
    assert account["initial_option"]["value"] == "acme"
    plain = blocks.new_request_view(NewRequestModal(modal_options()), tz_name=None)
    assert "private_metadata" not in plain and "initial_option" not in plain["blocks"][0]["element"]
    live = AlreadyOpen(request_view(state="active"), SESSION_ID, STARTED + timedelta(minutes=30))
    assert blocks.new_request_view(live, tz_name=None)["callback_id"] == CallbackId.IMPERSONATE_ALREADY_OPEN.value
    for shown in (view, plain):
        assert problems(shown, surface="modal") == []
