"""Every message builder of the agent's, approvers' and security channel's DMs, fed hostile
user text: within Slack's limits, escaped wherever Slack parses markup, and readable by
slack_sdk's own Block Kit models; and our structure rules checked against Slack's example views."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from bot.domain.requests import Pending
from bot.slack import limits
from bot.slack.blocks.approval import approval_reminder_message, approval_request_message, approver_outcome_message
from bot.slack.blocks.request import pending_message, request_modal, request_outcome_message
from bot.slack.blocks.session import extension_outcome_message, extension_pending_message, grant_message, session_active_message, session_over_message
from bot.slack.blocks.watch import break_glass_alert
from tests.slack.block_rules import problems, walk
from tests.slack.blocks.factories import (
    HOSTILE,
    RAW_FRAGMENTS,
    STARTED,
    ask,
    assert_escaped_everywhere,
    assert_slack_sdk_round_trips,
    decided,
    extension_view,
    gated_hostile,
    granted,
    hostile_request,
    modal_options,
    nudged,
    session_view,
)


def message_builders():
    hostile = hostile_request()
    gated = gated_hostile()
    ext = extension_view(hostile, reason=(HOSTILE + " ") * 80)
    denial = (HOSTILE + " ") * 80
    built = {
        "grant": grant_message(granted(hostile)),
        "grant after approval": grant_message(granted(hostile), approved_by="UMANAGER1"),
        "grant by break glass": grant_message(replace(granted(hostile), bypassed=frozenset({"regulated"}))),
        "pending": pending_message(
            Pending(replace(hostile, state="pending", gated_by=frozenset({"sensitive", "role"})), 2, ask(gated))
        ),
        "approval request": approval_request_message(ask(gated), tz_name="Asia/Tokyo"),
        "approval request for more time": approval_request_message(ask(hostile, extension=ext), tz_name=None),
        "break-glass alert": break_glass_alert(replace(gated, break_glass=True, gated_by=frozenset({"regulated", "role"}))),
        "extension pending": extension_pending_message(ask(hostile, extension=ext)),
        "active, can extend": session_active_message(session_view(hostile), can_request_extension=True),
        "active": session_active_message(session_view(hostile)),
        "ended": session_over_message(
            session_view(hostile, ended_at=STARTED + timedelta(minutes=10), end_reason="ended", ended_by="UAGENT1")
        ),
        "expired": session_over_message(session_view(hostile, end_reason="expired")),
        "revoked": session_over_message(session_view(hostile, end_reason="revoked", ended_by="USECURITY1")),
        "reminder": approval_reminder_message(ask(gated), tz_name="Asia/Tokyo"),
        "reminder for more time": approval_reminder_message(ask(hostile, extension=ext), tz_name=None),
        "pending, reminded and escalated": pending_message(Pending(gated, 2, nudged(ask(gated)))),
        "more time pending, reminded and escalated": extension_pending_message(nudged(ask(hostile, extension=ext))),
    }
    for outcome in ("approved", "denied", "expired", "cancelled"):
        by = None if outcome == "expired" else ("UAGENT1" if outcome == "cancelled" else "UMANAGER1")
        result = decided(gated, outcome, by=by, reason=denial if outcome == "denied" else None)
        built[f"approver sees {outcome}"] = approver_outcome_message(result, tz_name="Europe/Paris")
        built[f"agent sees {outcome}"] = request_outcome_message(result)
    for outcome in ("approved", "denied", "expired"):
        result = decided(hostile, outcome, by=None if outcome == "expired" else "UMANAGER1", reason=denial if outcome == "denied" else None, extension=ext)
        built[f"approver sees more time {outcome}"] = approver_outcome_message(result, tz_name=None)
        built[f"agent sees more time {outcome}"] = extension_outcome_message(result, can_request_extension=True)
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
    ours = request_modal(modal_options(), initial_account=None)
    real_keys = set().union(*(json.loads(p.read_text()).keys() for p in fixtures))
    assert set(ours) <= real_keys | {"callback_id"}
