"""bot/slack/blocks/request.py: the `/impersonate` modal laid out and read back, field errors,
the typeahead options, and the agent's DMs while the request waits and once it is decided."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from slack_sdk.models.views import View

from bot.domain.policy import BLOCK_FIELD, REASON_MAX_LENGTH, TICKET_MAX_LENGTH, BlockCause, Field_
from bot.domain.requests import BLOCK_MESSAGES, AlreadyOpen, Blocked, NewRequestModal, Pending
from bot.slack import limits
from bot.slack.blocks.request import (
    BREAK_GLASS_VALUE,
    FIELD_BLOCKS,
    account_choice,
    account_options,
    field_errors,
    new_request_view,
    pending_message,
    request_form_from_state,
    request_modal,
    request_outcome_message,
    user_options,
)
from bot.slack.blocks.state import view_block_ids
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.block_rules import all_texts, mrkdwn_texts, problems
from tests.slack.blocks.factories import (
    HOSTILE,
    LINK_URL,
    REQUEST_ID,
    SESSION_ID,
    STARTED,
    ask,
    buttons_of,
    decided,
    inputs,
    modal_options,
    nudged,
    pending,
    regulated_request,
    reinitiation,
    rendered_text,
    request_view,
)
from tests.slack.listeners.flow import REASON, request_state


def test_pending_message_says_why_who_was_asked_and_offers_cancel():
    request = request_view(state="pending", gated_by=frozenset({"regulated"}), pending_expires_at=STARTED + timedelta(minutes=30))
    text, message_blocks = pending_message(pending(request, 2, ("UMANAGER1", "UMANAGER2")))
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
    _, message_blocks = pending_message(pending(request_view(state="pending"), 1, ()))
    assert "No one in the policy can approve it" in "\n".join(all_texts(message_blocks))


def test_a_long_list_of_approvers_is_shortened_by_whole_mentions():
    approvers = tuple(f"UMANAGER{i:03d}" for i in range(300))
    _, message_blocks = pending_message(pending(request_view(state="pending"), 1, approvers))
    assert problems(message_blocks, surface="message") == []
    rendered = "\n".join(mrkdwn_texts(message_blocks))
    assert "<@UMANAGER019> and 280 others" in rendered
    assert rendered.count("<@") == 20
    assert "<@UMANAGER020>" not in rendered


def test_a_malformed_approver_id_is_shown_as_text_not_markup():
    _, message_blocks = pending_message(pending(request_view(state="pending"), 1, ("!channel", "U1|x>", "UOK1")))
    rendered = "\n".join(mrkdwn_texts(message_blocks))
    assert "<!channel>" not in rendered and "<@!channel>" not in rendered
    assert "U1|x&gt;" in rendered and "<@UOK1>" in rendered


@pytest.mark.parametrize("can_read_write", [False, True])
@pytest.mark.parametrize("ticket_required", [False, True])
def test_request_modal_structure(can_read_write, ticket_required):
    view = request_modal(
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
    view = request_modal(modal_options(), initial_account=None)
    assert "initial_option" not in inputs(view)[BlockId.ACCOUNT.value]["element"]


def test_request_modal_cuts_a_long_account_label_and_drops_an_overlong_id():
    view = request_modal(modal_options(), initial_account=("acme", HOSTILE * 5))
    option = inputs(view)[BlockId.ACCOUNT.value]["element"]["initial_option"]
    assert len(option["text"]["text"]) <= limits.OPTION_TEXT_MAX and option["value"] == "acme"
    view = request_modal(modal_options(), initial_account=("a" * 200, "label"))
    assert "initial_option" not in inputs(view)[BlockId.ACCOUNT.value]["element"]


def test_no_role_gets_an_informational_view_without_submit():
    view = request_modal(modal_options(role=None, duration_choices=(), default_duration=None), initial_account=None)
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == CallbackId.IMPERSONATE_UNAVAILABLE.value
    assert "submit" not in view
    assert not [b for b in view["blocks"] if b["type"] == "input"]
    assert "no impersonation role" in view["blocks"][0]["text"]["text"]
    View(**view).validate_json()


JUSTIFICATIONS = (("contract", "Support the customer asked for"), ("incident", "Incident affecting the customer"))


@pytest.mark.parametrize("can_break_glass", [False, True])
def test_field_errors_land_on_a_block_the_modal_has(can_break_glass):
    view = request_modal(modal_options(can_break_glass=can_break_glass, justifications=JUSTIFICATIONS), initial_account=None)
    block_ids = set(inputs(view))
    for cause, field in BLOCK_FIELD.items():
        blocked = Blocked(cause, field, BLOCK_MESSAGES.get(cause, "Refused."))
        errors = field_errors(blocked, present=view_block_ids(view))
        assert len(errors) == 1
        (block_id, message), = errors.items()
        assert block_id in block_ids
        assert 0 < len(message) <= limits.FIELD_ERROR_MAX
        if field in FIELD_BLOCKS and (can_break_glass or field is not Field_.BREAK_GLASS):
            assert block_id == FIELD_BLOCKS[field].value == field.value
        # without the submitted view's blocks, each field maps to its own block
        assert list(field_errors(blocked)) == [FIELD_BLOCKS[field].value]


def test_a_break_glass_refusal_on_a_modal_without_the_checkbox_goes_to_the_top():
    blocked = Blocked(BlockCause.BREAK_GLASS_NOT_ALLOWED, Field_.BREAK_GLASS, "no")
    assert field_errors(blocked) == {"break_glass": "no"}
    view = request_modal(modal_options(), initial_account=None)
    assert field_errors(blocked, present=view_block_ids(view)) == {"account": "no"}


def test_field_errors_examples():
    assert field_errors(Blocked(BlockCause.OPTED_OUT, BLOCK_FIELD[BlockCause.OPTED_OUT], "opted out")) == {"account": "opted out"}
    assert field_errors(Blocked(BlockCause.REASON_TOO_SHORT, BLOCK_FIELD[BlockCause.REASON_TOO_SHORT], "longer")) == {"reason": "longer"}
    assert field_errors(Blocked(BlockCause.PROTECTED_USER, BLOCK_FIELD[BlockCause.PROTECTED_USER], "no")) == {"user": "no"}


def test_the_justification_is_a_required_select_of_the_policy_codes_beside_the_reason():
    view = request_modal(modal_options(justifications=JUSTIFICATIONS), initial_account=None)
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
    assert BlockId.JUSTIFICATION.value not in inputs(request_modal(modal_options(), initial_account=None))


def test_request_form_from_state_reads_the_chosen_justification():
    values = request_state()
    values[BlockId.JUSTIFICATION.value] = {
        ActionId.JUSTIFICATION_SELECT.value: {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": "incident"}}
    }
    assert request_form_from_state(values).justification == "incident"
    assert request_form_from_state(request_state()).justification is None


def test_request_form_from_state_reads_ids_and_minutes():
    form = request_form_from_state(request_state())
    assert (form.account, form.user, form.reason, form.ticket, form.duration_minutes, form.scope) == (
        "acme", "u-bob", REASON, "SUP-1", 30, "read_only"
    )


@pytest.mark.parametrize("duration", ["-5", "abc", "1e3", "²", "١٥", "9" * 50, None])
def test_request_form_from_state_leaves_bad_answers_for_the_domain_to_refuse(duration):
    form = request_form_from_state(request_state(duration=duration, ticket=None, user=None))
    assert form.duration_minutes is None and form.ticket is None and form.user is None


def test_request_form_from_state_tolerates_a_missing_block():
    values = request_state()
    del values[BlockId.SCOPE.value]
    del values[BlockId.REASON.value]
    form = request_form_from_state(values)
    assert form.scope == "read_only" and form.reason == ""
    assert request_form_from_state({}).account is None


def test_option_lists_respect_slack_limits():
    pairs = [(f"acct-{i}", f"{HOSTILE} {i}") for i in range(150)] + [("x" * 151, "too long an id")]
    for builder in (account_options, user_options):
        options = builder(pairs)
        assert len(options) == limits.OPTIONS_MAX
        assert all(len(o["text"]["text"]) <= limits.OPTION_TEXT_MAX for o in options)
        assert all(len(o["value"]) <= limits.OPTION_VALUE_MAX for o in options)
        assert options[0] == {"text": {"type": "plain_text", "text": f"{HOSTILE} 0", "emoji": True}, "value": "acct-0"}
    assert account_options([("x" * 151, "dropped"), ("ok", "kept")]) == [
        {"text": {"type": "plain_text", "text": "kept", "emoji": True}, "value": "ok"}
    ]


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
    text, message_blocks = request_outcome_message(decided(regulated_request(), outcome, by=by, reason=reason))
    assert message_blocks[0]["text"]["text"] == headline
    assert message_blocks[1]["text"]["text"].startswith(line)
    assert not buttons_of(message_blocks)  # no Cancel left on a decided request
    assert LINK_URL not in json.dumps(message_blocks)  # the link comes in its own DM


def test_request_modal_offers_break_glass_only_to_break_glass_roles():
    assert BlockId.BREAK_GLASS.value not in inputs(request_modal(modal_options(), initial_account=None))
    view = request_modal(modal_options(can_break_glass=True, break_glass_reason_min_length=60), initial_account=None)
    assert problems(view, surface="modal") == []
    box = inputs(view)[BlockId.BREAK_GLASS.value]
    assert box["optional"] is True
    assert "at least 60 characters" in box["hint"]["text"]
    element = box["element"]
    assert element["type"] == "checkboxes" and element["action_id"] == ActionId.BREAK_GLASS_CHOICE.value
    assert [o["value"] for o in element["options"]] == [BREAK_GLASS_VALUE]
    assert element["options"][0]["text"]["text"] == "Break glass (skip approval)"
    assert "initial_options" not in element  # never ticked by default
    View(**view).validate_json()


def test_request_modal_after_a_session_carries_only_its_id():
    view = request_modal(modal_options(), initial_account=("acme", "ACME Corp (acme)"), previous_session_id=SESSION_ID)
    assert problems(view, surface="modal") == []
    assert view["private_metadata"] == SESSION_ID
    assert "fresh reason" in view["blocks"][0]["text"]["text"]
    assert inputs(view)[BlockId.ACCOUNT.value]["element"]["initial_option"]["value"] == "acme"
    View(**view).validate_json()
    for forged in ("not-an-id", SESSION_ID.upper(), HOSTILE, "x" * 5000):
        assert "private_metadata" not in request_modal(modal_options(), initial_account=None, previous_session_id=forged)


def checkbox_state(checked: list[str]) -> dict:
    values = request_state()
    values[BlockId.BREAK_GLASS.value] = {
        ActionId.BREAK_GLASS_CHOICE.value: {"type": "checkboxes", "selected_options": [{"value": v, "text": {"type": "plain_text", "text": "x"}} for v in checked]}
    }
    return values


def test_request_form_from_state_reads_break_glass_and_the_previous_session():
    assert request_form_from_state(request_state()).break_glass is False
    assert request_form_from_state(checkbox_state([])).break_glass is False
    assert request_form_from_state(checkbox_state(["something else"])).break_glass is False
    assert request_form_from_state(checkbox_state([BREAK_GLASS_VALUE])).break_glass is True
    assert request_form_from_state(request_state()).previous_session_id is None
    assert request_form_from_state(request_state(), private_metadata=SESSION_ID).previous_session_id == SESSION_ID
    assert request_form_from_state(request_state(), private_metadata="'; drop table sessions; --").previous_session_id is None


def test_account_choice_matches_the_typeahead_label():
    assert account_choice(request_view()) == ("acme", "ACME Corp (acme)")


def test_the_agent_is_told_the_reinitiation_is_why_it_waits():
    request = reinitiation(3, after=timedelta(minutes=4), state="pending", account_flags=frozenset(), gated_by=frozenset({"reinitiation"}))
    _, message_blocks = pending_message(pending(request, 1, ("UMANAGER1",)))
    rendered = "\n".join(all_texts(message_blocks))
    assert "needs approval because it is your re-initiation #3 in a row with this customer user." in rendered
    assert "the account is" not in rendered


def test_start_a_new_request_opens_the_modal_or_the_open_access():
    over = NewRequestModal(modal_options(), request_view(), SESSION_ID)
    view = new_request_view(over, tz_name=None)
    assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value and view["private_metadata"] == SESSION_ID
    account = next(b for b in view["blocks"] if b.get("block_id") == BlockId.ACCOUNT.value)["element"]
    assert account["initial_option"]["value"] == "acme"
    plain = new_request_view(NewRequestModal(modal_options()), tz_name=None)
    assert "private_metadata" not in plain and "initial_option" not in plain["blocks"][0]["element"]
    live = AlreadyOpen(request_view(state="active"), SESSION_ID, STARTED + timedelta(minutes=30))
    assert new_request_view(live, tz_name=None)["callback_id"] == CallbackId.IMPERSONATE_ALREADY_OPEN.value
    for shown in (view, plain):
        assert problems(shown, surface="modal") == []


def test_the_agent_sees_who_was_asked_first_when_they_were_reminded_and_who_was_asked_on_escalation():
    request = request_view(state="pending", gated_by=frozenset({"sensitive"}), pending_expires_at=STARTED + timedelta(minutes=30))
    shown = rendered_text(pending_message(Pending(request, 1, nudged(ask(request))))[1])
    assert "It was sent to <@UMANAGER1> and <@UMANAGER2>; it needs one approver." in shown
    assert "Approvers who had not answered were reminded at 15:15 CET." in shown  # the agent's zone
    assert "Still undecided at 15:22 CET, it was also sent to <@ULEAD1> and <@ULEAD2>." in shown


def test_before_any_reminder_the_agent_sees_only_who_was_asked():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    shown = rendered_text(pending_message(Pending(request, 1, ask(request)))[1])
    assert "reminded" not in shown and "also sent" not in shown


def test_an_escalation_to_nobody_eligible_is_said_plainly():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    shown = rendered_text(pending_message(Pending(request, 1, nudged(ask(request), escalated_to=())))[1])
    assert "it was escalated, but no one in the escalation group can approve it" in shown


def test_an_escalated_approver_with_a_malformed_id_is_text_not_markup():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    _, message_blocks = pending_message(Pending(request, 1, nudged(ask(request), escalated_to=("!channel", "ULEAD1"))))
    rendered = "\n".join(mrkdwn_texts(message_blocks))
    assert "<!channel>" not in rendered and "<@!channel>" not in rendered and "<@ULEAD1>" in rendered
