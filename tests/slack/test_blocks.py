"""Block Kit builders tested as functions: Slack's limits, escaping of hostile user text,
ids from the enums, ids-only button values, and structure (issue 2 points 17 and 20)."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.domain.policy import BLOCK_FIELD, REASON_MAX_LENGTH, TICKET_MAX_LENGTH, BlockCause
from bot.domain.requests import BLOCK_MESSAGES, Blocked, Granted, ModalOptions, Pending
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
        assert re.sub(r"<http://bot\.test/l/[A-Za-z0-9_-]{43}\|Open session>", "", mrkdwn).count("<") == 0


def assert_slack_sdk_round_trips(message_blocks: list[dict]) -> None:
    """slack_sdk's own Block Kit models parse and re-serialise every block unchanged, so no
    key is misspelt or misplaced (the models drop what they do not know)."""
    parsed = Block.parse_all(message_blocks)
    assert [b.to_dict() for b in parsed] == message_blocks


def message_builders():
    hostile = hostile_request()
    return {
        "grant": blocks.grant_message(granted(hostile)),
        "pending": blocks.pending_message(Pending(replace(hostile, state="pending", gated_by=frozenset({"sensitive", "role"})), 2)),
        "active": blocks.session_active_message(session_view(hostile)),
        "ended": blocks.session_over_message(
            session_view(hostile, ended_at=STARTED + timedelta(minutes=10), end_reason="ended", ended_by="UAGENT1")
        ),
        "expired": blocks.session_over_message(session_view(hostile, end_reason="expired")),
        "revoked": blocks.session_over_message(session_view(hostile, end_reason="revoked", ended_by="USECURITY1")),
    }


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


def test_pending_message_says_approval_is_needed_and_why():
    pending = Pending(request_view(state="pending", gated_by=frozenset({"regulated"})), approvals_required=2)
    text, message_blocks = blocks.pending_message(pending)
    rendered = "\n".join(all_texts(message_blocks))
    assert "Approval needed" in rendered
    assert "because the account is regulated" in rendered
    assert "2 different approvers" in rendered
    assert "needs approval" in text
    assert not [b for b in message_blocks if b["type"] == "actions"]


def test_session_active_message_has_an_end_button_carrying_only_the_session_id():
    text, message_blocks = blocks.session_active_message(session_view(request_view()))
    assert message_blocks[0]["text"]["text"] == "Session active until 15:30 CET"  # 14:30 UTC in Paris
    buttons = [obj for _, obj in walk(message_blocks) if obj.get("type") == "button"]
    assert len(buttons) == 1
    assert buttons[0]["action_id"] == ActionId.END_SESSION.value
    assert buttons[0]["value"] == SESSION_ID and UUID.match(buttons[0]["value"])
    assert "confirm" in buttons[0]
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
def test_session_over_message_wording_and_no_buttons(changes, headline):
    text, message_blocks = blocks.session_over_message(session_view(request_view(), **changes))
    assert message_blocks[0]["text"]["text"] == headline
    assert not [obj for _, obj in walk(message_blocks) if obj.get("type") in ("button", "actions")]
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


def test_field_errors_land_on_a_block_the_modal_has():
    view = blocks.request_modal(modal_options(), initial_account=None)
    block_ids = set(inputs(view))
    for cause, field in BLOCK_FIELD.items():
        errors = blocks.field_errors(Blocked(cause, field, BLOCK_MESSAGES.get(cause, "Refused.")))
        assert len(errors) == 1
        (block_id, message), = errors.items()
        assert block_id in block_ids
        assert 0 < len(message) <= limits.FIELD_ERROR_MAX
        if field in blocks.FIELD_BLOCKS:
            assert block_id == blocks.FIELD_BLOCKS[field].value == field.value


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
