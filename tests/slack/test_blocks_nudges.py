"""Reminders and escalation in Block Kit: the approver's reminder (a new DM, with the ask's
buttons carrying only the id) and the agent's DMs saying who was asked, reminded and asked on
escalation, as Slack mentions, never as user text."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from bot.domain.requests import Pending
from bot.slack import blocks, limits
from bot.slack.ids import ActionId, BlockId
from tests.slack.block_rules import mrkdwn_texts, problems
from tests.slack.test_blocks import (
    EXTENSION_ID,
    REQUEST_ID,
    STARTED,
    ask,
    assert_escaped_everywhere,
    assert_slack_sdk_round_trips,
    buttons_of,
    extension_view,
    gated_hostile,
    hostile_request,
    rendered_text,
    request_view,
)

REMINDED_AT = STARTED + timedelta(minutes=15)
ESCALATED_AT = STARTED + timedelta(minutes=22)


def nudged(ask_, *, escalated_to=("ULEAD1", "ULEAD2")):
    return replace(
        ask_,
        approvers=(*ask_.approvers, *escalated_to),
        reminded_at=REMINDED_AT,
        escalated_at=ESCALATED_AT,
        escalated_to=tuple(escalated_to),
    )


def builders():
    hostile, gated = hostile_request(), gated_hostile()
    ext = extension_view(hostile, reason="<!channel> more &amp; more")
    return {
        "reminder": blocks.approval_reminder_message(ask(gated), tz_name="Asia/Tokyo"),
        "reminder for more time": blocks.approval_reminder_message(ask(hostile, extension=ext), tz_name=None),
        "pending, reminded and escalated": blocks.pending_message(Pending(gated, 2, nudged(ask(gated)))),
        "more time pending, reminded and escalated": blocks.extension_pending_message(nudged(ask(hostile, extension=ext))),
    }


@pytest.mark.parametrize("name", list(builders()))
def test_the_messages_escape_user_text_and_fit_slack_limits(name):
    text, message_blocks = builders()[name]
    assert problems(message_blocks, surface="message") == []
    assert 0 < len(text) <= limits.MESSAGE_TEXT_MAX
    assert_escaped_everywhere(text, message_blocks)
    assert_slack_sdk_round_trips(message_blocks)


def test_the_reminder_is_the_ask_again_under_a_reminder_headline_with_buttons_carrying_the_id():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    text, message_blocks = blocks.approval_reminder_message(ask(request), tz_name="Europe/Paris")
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
    _, message_blocks = blocks.approval_reminder_message(ask(request, extension=extension_view(request)), tz_name=None)
    assert message_blocks[0]["text"]["text"] == "Reminder: approval needed: more time"
    assert [(b["action_id"], b["value"]) for b in buttons_of(message_blocks)] == [
        (ActionId.APPROVE_EXTENSION.value, EXTENSION_ID),
        (ActionId.DENY_EXTENSION.value, EXTENSION_ID),
    ]


def test_the_agent_sees_who_was_asked_first_when_they_were_reminded_and_who_was_asked_on_escalation():
    request = request_view(state="pending", gated_by=frozenset({"sensitive"}), pending_expires_at=STARTED + timedelta(minutes=30))
    shown = rendered_text(blocks.pending_message(Pending(request, 1, nudged(ask(request))))[1])
    assert "It was sent to <@UMANAGER1> and <@UMANAGER2>; it needs one approver." in shown
    assert "Approvers who had not answered were reminded at 15:15 CET." in shown  # the agent's zone
    assert "Still undecided at 15:22 CET, it was also sent to <@ULEAD1> and <@ULEAD2>." in shown


def test_before_any_reminder_the_agent_sees_only_who_was_asked():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    shown = rendered_text(blocks.pending_message(Pending(request, 1, ask(request)))[1])
    assert "reminded" not in shown and "also sent" not in shown


def test_an_escalation_to_nobody_eligible_is_said_plainly():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    shown = rendered_text(blocks.pending_message(Pending(request, 1, nudged(ask(request), escalated_to=())))[1])
    assert "it was escalated, but no one in the escalation group can approve it" in shown


def test_an_escalated_approver_with_a_malformed_id_is_text_not_markup():
    request = request_view(state="pending", pending_expires_at=STARTED + timedelta(minutes=30))
    _, message_blocks = blocks.pending_message(Pending(request, 1, nudged(ask(request), escalated_to=("!channel", "ULEAD1"))))
    rendered = "\n".join(mrkdwn_texts(message_blocks))
    assert "<!channel>" not in rendered and "<@!channel>" not in rendered and "<@ULEAD1>" in rendered


def test_the_agents_session_dm_says_who_was_asked_for_more_time_and_on_escalation():
    request = request_view(state="active")
    _, message_blocks = blocks.extension_pending_message(nudged(ask(request, extension=extension_view(request))))
    shown = rendered_text(message_blocks)
    assert "Waiting for <@UMANAGER1> and <@UMANAGER2>." in shown
    assert "also sent to <@ULEAD1> and <@ULEAD2>" in shown and "reminded at" in shown
    assert "<@ULEAD1>" in json.dumps(message_blocks)
