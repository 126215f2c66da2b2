"""Revocation (bot/domain/revocation.py): only `can_revoke`, checked at the
moment; audited either way; the product API reports the session revoked at once; the agent is
told through the outbox."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain import links, outbox, product_api, requests, revocation, sessions
from bot.domain.requests import AgentIdentity, RequestForm
from bot.domain.sessions import SessionStatus
from tests.fakes.directory_data import load_directory


@pytest.fixture
def live(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session


def events(ctx, event_type):
    with ctx.sessions() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == event_type).order_by(AuditEvent.seq)).scalars())


def test_security_revokes_a_live_session_and_the_product_api_sees_it_at_once(ctx, live):
    assert product_api.session_report(ctx, live.id).status is SessionStatus.LIVE
    result = revocation.revoke_session(ctx, live.id, actor_slack_id="USECURITY1", source="alert")
    assert isinstance(result, revocation.Revoked)
    assert product_api.session_report(ctx, live.id).status is SessionStatus.REVOKED
    assert sessions.check_session(ctx, live.id).status is SessionStatus.REVOKED
    (event,) = events(ctx, "session.revoked")
    assert (event.actor_slack_id, event.actor_role, event.session_id) == ("USECURITY1", "security", live.id)
    assert json.loads(event.details)["source"] == "alert"
    owed = {(r.kind, r.subject_id) for r in outbox.rows(ctx) if r.state == "pending"}
    assert {("notice", live.id), ("warning", live.id), ("agent", live.request.id), ("feed", live.request.id)} <= owed
    assert set(result.targets) == {
        outbox.target_of(outbox.Kind.AGENT, live.request.id, "UAGENT1"),
        outbox.target_of(outbox.Kind.NOTICE, live.id, "UAGENT1"),
        outbox.target_of(outbox.Kind.WARNING, live.id, "UAGENT1"),
        outbox.target_of(outbox.Kind.FEED, live.request.id, outbox.SECURITY),
    }


@pytest.mark.parametrize("who", ["UAGENT1", "UMANAGER1", "UNOBODY1"])
def test_without_can_revoke_it_is_refused_and_audited(ctx, live, who):
    result = revocation.revoke_session(ctx, live.id, actor_slack_id=who, source="command")
    assert isinstance(result, revocation.RevokeRefused) and result.cause == "not_permitted"
    assert sessions.check_session(ctx, live.id).live
    (event,) = events(ctx, "session.revoke_refused")
    assert (event.actor_slack_id, json.loads(event.details)) == (who, {"cause": "not_permitted", "source": "command"})


def test_the_power_is_checked_at_the_moment_not_taken_from_the_message(ctx, live):
    roles = dict(ctx.policy.roles)
    roles["security"] = roles["security"].model_copy(update={"can_revoke": False})
    ctx.policy = ctx.policy.model_copy(update={"roles": roles})
    result = revocation.revoke_session(ctx, live.id, actor_slack_id="USECURITY1", source="alert")
    assert isinstance(result, revocation.RevokeRefused) and result.cause == "not_permitted"


def test_an_unknown_or_forged_session_is_refused_and_audited(ctx, live):
    result = revocation.revoke_session(ctx, "not-a-session", actor_slack_id="USECURITY1", source="command")
    assert isinstance(result, revocation.RevokeRefused) and result.cause == "unknown_session"
    (event,) = events(ctx, "session.revoke_refused")
    assert json.loads(event.details) == {"cause": "unknown_session", "source": "command", "session_given": "not-a-session"}


def test_a_session_already_over_is_not_revoked(ctx, live):
    sessions.end_session(ctx, live.id, actor_slack_id="UAGENT1")
    result = revocation.revoke_session(ctx, live.id, actor_slack_id="USECURITY1", source="feed")
    assert isinstance(result, revocation.RevokeRefused) and result.cause == "not_live"
    assert sessions.check_session(ctx, live.id).status is SessionStatus.ENDED
    assert events(ctx, "session.revoked") == []
    assert len(events(ctx, "session.revoke_refused")) == 1
