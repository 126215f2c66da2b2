"""More time on a live session: self-served within the role's cap, asked of approvers past
it, never past the ceiling; the outbox rows an ask owes."""
from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time

from bot.domain import approvals, extensions, links, outbox, requests, sessions
from bot.domain.clock import utcnow
from bot.domain.policy import ExtensionRefusal
from bot.domain.requests import AgentIdentity
from tests.domain.conftest import REASON, events, form


def live_session(ctx, agent="USENIOR1", account="acme", user="u-bob"):
    granted = requests.submit_request(ctx, AgentIdentity(agent), form(account, user, duration_minutes=60))
    assert isinstance(granted, requests.Granted), granted
    red = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])
    return red.session


def test_an_extension_past_the_roles_cap_is_approved_up_to_the_ceiling_and_no_further(gated, session_factory):
    gated.policy = gated.policy.model_copy(update={"extensions": gated.policy.extensions.model_copy(update={"max_total_minutes": 180})})
    with freeze_time("2026-11-25 10:00:00"):
        session = live_session(gated)  # the senior role caps sessions at 120 minutes; this one runs 60
        asked = extensions.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=90, reason="still reproducing the bug")
        assert isinstance(asked, extensions.ExtensionAsked)  # 150 min passes the cap: an approval
        (requested,) = events(session_factory, "extension.requested")
        assert '"past_cap":true' in requested.details and '"new_total_minutes":150' in requested.details
        out = extensions.decide_extension(gated, asked.ask.extension.id, clicker_slack_id="UMANAGER1", approve=True)
        assert isinstance(out, approvals.Decided) and out.outcome == "approved"
        assert out.session.expires_at == utcnow() + timedelta(minutes=150)
        trimmed = extensions.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=60, reason="need a bit more time")
        assert isinstance(trimmed, extensions.ExtensionAsked) and trimmed.ask.extension.minutes == 30  # to the 180-minute ceiling
        out = extensions.decide_extension(gated, trimmed.ask.extension.id, clicker_slack_id="UMANAGER2", approve=True)
        assert out.session.expires_at == utcnow() + timedelta(minutes=180)
        again = extensions.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=15, reason="need a bit more time")
        assert again == approvals.Refused(extensions.EXTENSION_REFUSALS[ExtensionRefusal.AT_CEILING].format(ceiling=180, reason_min=10))
    assert len(events(session_factory, "extension.granted")) == 2


def test_a_role_that_may_self_extend_does_so_within_its_cap_at_once(gated, session_factory):
    gated.policy.roles["senior"] = gated.policy.roles["senior"].model_copy(update={"can_self_extend": True})
    with freeze_time("2026-11-25 10:00:00"):
        session = live_session(gated)  # 60 of the senior's 120 minutes
        granted = extensions.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=30, reason="still reproducing the bug")
        assert isinstance(granted, extensions.ExtensionGranted)
        assert granted.session.expires_at == utcnow() + timedelta(minutes=90)
        (event,) = events(session_factory, "extension.granted")
        assert event.actor_slack_id == "USENIOR1" and '"self_served":true' in event.details
        assert events(session_factory, "extension.requested") == []
        # past the cap, the same role asks like anyone else
        past = extensions.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=60, reason="the fix needs a deploy")
        assert isinstance(past, extensions.ExtensionAsked) and past.ask.approvers


def test_extension_needs_the_power(gated, session_factory):
    session = live_session(gated, agent="UAGENT1")
    out = extensions.request_extension(gated, session.id, agent_slack_id="UAGENT1", minutes=15, reason="still reproducing the bug")
    assert isinstance(out, approvals.Refused)
    # re-initiation: a new request linked to the previous session, once it is over
    sessions.end_session(gated, session.id, actor_slack_id="UAGENT1")
    again = requests.submit_request(gated, AgentIdentity("UAGENT1"), form("acme", "u-bob", previous_session_id=session.id))
    assert isinstance(again, requests.Granted) and again.request.previous_session_id == session.id


def test_an_extension_owes_its_asks_and_the_agents_dm_in_its_transaction(gated):
    granted = requests.submit_request(gated, AgentIdentity("USENIOR1"), form(account="acme", user="u-bob"))
    session = links.redeem(gated, granted.link.url.rsplit("/", 1)[1]).session
    before = len(outbox.rows(gated))
    asked = extensions.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=15, reason=REASON)
    assert isinstance(asked, extensions.ExtensionAsked)
    owed = [(r.kind, r.subject_id, r.recipient) for r in outbox.rows(gated)[before:]]
    extension = asked.ask.extension
    assert owed == [*(("approver", extension.id, a) for a in asked.ask.approvers), ("agent", granted.request.id, "USENIOR1")]
    assert approvals.ask_targets(asked.ask) == [outbox.target_of(outbox.Kind(k), s, r) for k, s, r in owed]
