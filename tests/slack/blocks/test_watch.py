"""bot/slack/blocks/watch.py: the security channel's feed, alerts and storm summaries,
break-glass alert, revocation answers and checkpoints."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bot.domain.anomalies import AlertView, LiveSession, Rule
from bot.domain.checkpoints import Checkpoint
from bot.domain.revocation import Revoked, RevokeRefused
from bot.domain.watch import FeedStatus, FeedView
from bot.slack.blocks.watch import (
    alert_line,
    alert_message,
    alert_summary_message,
    break_glass_alert,
    checkpoint_message,
    revocation_answer_text,
    rule_title,
    security_feed_message,
)
from bot.slack.ids import ActionId, BlockId
from tests.slack.blocks.factories import (
    HOSTILE,
    LATER,
    LINK_URL,
    REQUEST_ID,
    SESSION_ID,
    STARTED,
    assert_no_raw_user_markup,
    buttons_of,
    check,
    hostile_request,
    regulated_request,
    rendered_text,
    request_view,
    session_view,
)


def test_break_glass_alert_tells_security_everything_but_the_link():
    # a break-glass request stores the gates it skipped in gated_by
    alert = replace(regulated_request(state="granted"), break_glass=True, gated_by=frozenset({"regulated"}))
    text, message_blocks = break_glass_alert(alert)
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


def feed(status: str, **changes) -> FeedView:
    request = hostile_request()
    session = session_view(request) if status != FeedStatus.GRANTED else None
    base = FeedView(request=request, session=session, status=status, approvers=(), warned=False, closed_at=None, closed_by=None)
    return replace(base, **changes)


@pytest.mark.parametrize("status", [FeedStatus.GRANTED, FeedStatus.LIVE, FeedStatus.ENDED, FeedStatus.EXPIRED, FeedStatus.REVOKED, FeedStatus.LAPSED])
def test_the_feed_message_for_every_status_is_valid_and_escaped(status):
    blocks = check(security_feed_message(feed(status, closed_at=LATER, closed_by="USECURITY1")))
    revoke = buttons_of(blocks)
    if status == FeedStatus.LIVE:
        assert [(b["action_id"], b["value"]) for b in revoke] == [(ActionId.REVOKE_SESSION.value, SESSION_ID)]
        assert revoke[0]["confirm"] and any(b.get("block_id") == BlockId.FEED_ACTIONS.value for b in blocks)
    else:
        assert revoke == []


def test_the_feed_shows_everything_security_needs():
    view = feed(FeedStatus.LIVE, approvers=("UMANAGER1", "UMANAGER2"), warned=True)
    view = replace(view, request=replace(request_view(account_flags=frozenset({"regulated", "sensitive"})), state="active"))
    text = json.dumps(security_feed_message(view)[1])
    for expected in ("<@UAGENT1>", "ACME Corp (acme)", "regulated, sensitive", "Bob Builder", "Read-only", "SUP-1234",
                     "<@UMANAGER1> and <@UMANAGER2>", "Ending soon", "<!date^", "Customer reports the invoice page is blank"):
        assert expected in text, expected


def test_break_glass_and_policy_grants_say_who_approved():
    glass = replace(feed(FeedStatus.GRANTED), request=request_view(break_glass=True))
    assert "break glass" in json.dumps(security_feed_message(glass)[1])
    assert "not needed (policy)" in json.dumps(security_feed_message(feed(FeedStatus.GRANTED))[1])


def alert(rule: Rule, facts: dict, **changes) -> AlertView:
    base = AlertView(
        id="7d6c5b4a-3f2e-4d1c-8b0a-9e8f7d6c5b4a",
        rule=rule,
        subject="acme",
        raised_at=STARTED,
        account="acme",
        account_name=HOSTILE * 20,
        agent="UAGENT1",
        request_id=None,
        session_id=None,
        facts=facts,
        live_sessions=(LiveSession(SESSION_ID, "UAGENT1", "acme", HOSTILE, LATER),),
    )
    return replace(base, **changes)


ALERTS = [
    alert(Rule.ACCOUNT_BURST, {"sessions_24h": 7, "limit": 5}),
    alert(Rule.AGENT_SPREAD, {"accounts_24h": 12, "limit": 10}),
    alert(Rule.OFF_HOURS, {"at": "2030-01-07T21:00:00.000000Z", "tz": HOSTILE, "hours": "08:00-19:00", "days": "mon"}),
    alert(Rule.FLAGGED_ACCOUNT, {"flags": ["sensitive", HOSTILE]}),
    alert(Rule.REPEATED_REFUSALS, {"refusals_24h": 4, "limit": 3}),
    alert(Rule.LINK_REPLAY, {"attempts": 3}),
    alert(Rule.LINK_IDENTITY_MISMATCH, {"signed_in_user": "UINTRUDER", "signed_in_team": HOSTILE}),
    alert(Rule.OPTED_OUT_ATTEMPT, {"attempts_24h": 1}),
    alert(Rule.CONCENTRATION, {"percent": 80, "sessions": 10, "by_agent": 8, "days": 30}),
]


@pytest.mark.parametrize("view", ALERTS, ids=[a.rule.value for a in ALERTS])
def test_each_alert_explains_itself_and_offers_revoke_for_live_sessions(view):
    blocks = check(alert_message(view))
    assert blocks[0]["text"]["text"] == f"Alert: {rule_title(view.rule)}"
    assert [(b["action_id"], b["value"]) for b in buttons_of(blocks)] == [(ActionId.REVOKE_SESSION.value, SESSION_ID)]
    assert "audited as alert.raised" in json.dumps(blocks)


def test_a_concentration_alert_reads_as_a_sentence():
    line = alert_line(alert(Rule.CONCENTRATION, {"percent": 80, "sessions": 10, "by_agent": 8, "days": 30}, account_name="ACME"))
    assert line == "80 % of ACME (acme)'s 10 sessions in the last 30 days were by one agent, <@UAGENT1>."


def test_a_storm_summary_carries_every_alert_within_slacks_limits():
    views = [replace(ALERTS[n % len(ALERTS)], id=f"7d6c5b4a-3f2e-4d1c-8b0a-{n:012d}") for n in range(40)]
    blocks = check(alert_summary_message(views))
    assert len(blocks) == 42 and blocks[0]["text"]["text"] == "40 alerts"
    assert len(buttons_of(blocks)) == 40


def test_revocation_answers():
    revoked = Revoked(session_view(hostile_request(), ended_at=LATER, end_reason="revoked"), ())
    text = revocation_answer_text(revoked, tz_name="UTC")
    assert text.startswith("Revoked <@UAGENT1>'s session as ") and text.endswith("The agent has been told.")
    assert_no_raw_user_markup(text)
    assert revocation_answer_text(RevokeRefused("No <!channel> here", "x"), tz_name=None) == "No &lt;!channel&gt; here"


def test_the_checkpoint_message():
    checkpoint = Checkpoint("kid-1", 42, "ab" * 32, "2030-01-07T09:00:00.000000Z", "c2lnbmF0dXJl")
    blocks = check(checkpoint_message(checkpoint))
    assert checkpoint.to_json().replace('"', "&quot;") not in json.dumps(blocks) and '\\"seq\\":42' in json.dumps(blocks)


def test_an_opt_out_alert_says_who_why_and_what_it_ended():
    from datetime import datetime, timezone

    from bot.domain.anomalies import AlertView, Rule
    from bot.slack.blocks.watch import alert_line, rule_title

    view = AlertView("a1", Rule.ACCOUNT_OPTED_OUT, "acme", datetime(2030, 1, 7, tzinfo=timezone.utc), "acme", "ACME <Corp>", None, None, None,
                     {"by": "UREVOPS1", "note": "MSA-1: <!channel> no access", "revoked": 2})
    line = alert_line(view)
    assert line.startswith("ACME &lt;Corp&gt; (acme) opted out of impersonation by contract, set by <@UREVOPS1>")
    assert "&lt;!channel&gt;" in line and "2 live sessions on it ended at once" in line
    assert rule_title(Rule.ACCOUNT_OPTED_OUT) == "Account opted out of impersonation"
