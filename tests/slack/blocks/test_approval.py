"""bot/slack/blocks/approval.py: an approver's DM, its reminder and outcome, the deny modal and
the answers to clicks that decided nothing."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from slack_sdk.models.views import View

from bot.domain.approvals import DENY_REASON_MAX_LENGTH, DENY_REASON_MIN_LENGTH, AlreadyCounted, AlreadyDecided, ApprovalAsk, Counted, Refused
from bot.slack import limits
from bot.slack.blocks.approval import (
    approval_reminder_message,
    approval_request_message,
    approver_outcome_message,
    click_answer_text,
    deny_modal,
    deny_reason_errors,
    deny_reason_from_state,
    notice_modal,
    reinitiation_text,
)
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.block_rules import problems
from tests.slack.blocks.factories import (
    DECIDED_AT,
    EXTENSION_ID,
    HOSTILE,
    LINK_URL,
    REQUEST_ID,
    SESSION_ID,
    STARTED,
    ask,
    assert_no_raw_user_markup,
    buttons_of,
    decided,
    extension_view,
    inputs,
    regulated_request,
    reinitiation,
    rendered_text,
    request_view,
)


def test_approvers_see_the_justification_beside_the_reason():
    _, message_blocks = approval_request_message(ask(regulated_request(justification="incident")), tz_name=None)
    assert "*Reason* · justification: incident\nCustomer reports the invoice page is blank" in rendered_text(message_blocks)


def test_approval_request_message_shows_what_an_approver_needs_in_their_time_zone():
    text, message_blocks = approval_request_message(ask(regulated_request()), tz_name="Asia/Tokyo")
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
    _, message_blocks = approval_request_message(ask(request, extension=extension_view(request)), tz_name=None)
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
    _, message_blocks = approval_request_message(ApprovalAsk(request, ("UMANAGER1",), ()), tz_name=None)
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
    text, message_blocks = approver_outcome_message(decided(regulated_request(), outcome, by=by, reason=reason), tz_name="Europe/Paris")
    assert message_blocks[1]["text"]["text"] == line
    assert message_blocks[0]["text"]["text"] == f"{outcome.capitalize()}: impersonation"
    assert "<@UAGENT1> asked to impersonate" in rendered_text(message_blocks)
    assert not [b for b in message_blocks if b["type"] == "actions"]
    assert not buttons_of(message_blocks)
    assert LINK_URL not in json.dumps(message_blocks) and LINK_URL not in text


def test_approver_outcome_message_for_more_time_gives_the_new_end():
    request = request_view(state="active")
    result = decided(request, "approved", extension=extension_view(request))
    _, message_blocks = approver_outcome_message(result, tz_name=None)
    assert message_blocks[1]["text"]["text"] == "*Approved* by <@UMANAGER1> at 14:12 UTC. The session now ends at 15:00 UTC."
    assert message_blocks[0]["text"]["text"] == "Approved: more time"


@pytest.mark.parametrize("extension", [False, True])
def test_deny_modal_asks_for_a_reason_and_carries_only_the_id(extension):
    subject = EXTENSION_ID if extension else REQUEST_ID
    view = deny_modal(subject, extension=extension)
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == (CallbackId.DENY_EXTENSION if extension else CallbackId.DENY_REQUEST).value
    assert view["private_metadata"] == subject
    reason = inputs(view)[BlockId.DENY_REASON.value]["element"]
    assert reason["action_id"] == ActionId.DENY_REASON_INPUT.value
    assert (reason["min_length"], reason["max_length"]) == (DENY_REASON_MIN_LENGTH, DENY_REASON_MAX_LENGTH)
    View(**view).validate_json()
    assert "private_metadata" not in deny_modal(HOSTILE, extension=extension)


def test_deny_reason_and_errors():
    values = {BlockId.DENY_REASON.value: {ActionId.DENY_REASON_INPUT.value: {"type": "plain_text_input", "value": "Not justified"}}}
    assert deny_reason_from_state(values) == "Not justified"
    assert deny_reason_from_state({}) == ""
    errors = deny_reason_errors("x" * 1000)
    assert list(errors) == [BlockId.DENY_REASON.value] and len(errors[BlockId.DENY_REASON.value]) <= limits.FIELD_ERROR_MAX


def test_notice_modal_has_nothing_to_submit():
    view = notice_modal("This request was already approved.")
    assert problems(view, surface="modal") == [] and "submit" not in view
    View(**view).validate_json()


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
    text = click_answer_text(result, tz_name="Europe/Paris", extension=extension)
    assert text.startswith(expected)
    assert_no_raw_user_markup(text)


def test_the_approvers_are_told_which_reinitiation_it_is_and_how_soon():
    request = reinitiation(2, after=timedelta(minutes=11, seconds=40))
    _, message_blocks = approval_request_message(ask(request), tz_name=None)
    assert problems(message_blocks, surface="message") == []
    summary = message_blocks[1]["text"]["text"]
    assert summary.endswith(" *Re-initiation #2 within 12 min* of their previous session with this user ending.")
    assert "It follows an earlier session" not in rendered_text(message_blocks)
    # and the decided DM keeps saying it
    _, decided_blocks = approver_outcome_message(decided(request, "approved"), tz_name=None)
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
    assert reinitiation_text(request_) == says


def test_the_reminder_is_the_ask_again_under_a_reminder_headline_with_buttons_carrying_the_id():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    text, message_blocks = approval_reminder_message(ask(request), tz_name="Europe/Paris")
    assert message_blocks[0]["text"]["text"] == "Reminder: approval needed: impersonation"
    assert "This still waits for your decision. Without a decision by 15:30 CET, it expires." in rendered_text(message_blocks)
    assert text.startswith("Reminder: Approval needed:")
    assert [(b["action_id"], b["value"]) for b in buttons_of(message_blocks)] == [
        (ActionId.APPROVE_REQUEST.value, REQUEST_ID),
        (ActionId.DENY_REQUEST.value, REQUEST_ID),
    ]
    assert [b.get("block_id") for b in message_blocks if b["type"] == "actions"] == [BlockId.APPROVAL_ACTIONS.value]


def test_a_reminder_about_more_time_carries_the_extension_id():
    request = request_view(state="active")
    _, message_blocks = approval_reminder_message(ask(request, extension=extension_view(request)), tz_name=None)
    assert message_blocks[0]["text"]["text"] == "Reminder: approval needed: more time"
    assert [(b["action_id"], b["value"]) for b in buttons_of(message_blocks)] == [
        (ActionId.APPROVE_EXTENSION.value, EXTENSION_ID),
        (ActionId.DENY_EXTENSION.value, EXTENSION_ID),
    ]
