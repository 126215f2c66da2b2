"""Retention of operational rows (bot/domain/retention.py): finished outbox rows and expired
links go once older than their retention; pending rows, fresh rows and the audit log stay."""
from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select, update

from bot.db.models import AuditEvent, Link, OutboxMessage, WebhookEvent
from bot.domain import outbox, retention, webhooks
from bot.domain import requests as domain_requests
from bot.domain.audit import Actor, verify_chain
from bot.domain.clock import utcnow
from bot.domain.context import Retention
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory


def _count(session_factory, model, *where) -> int:
    with session_factory() as db:
        return db.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


@pytest.fixture
def granted(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    result = domain_requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, domain_requests.Granted), result
    return result


def test_finished_outbox_rows_and_expired_links_go_after_their_retention_and_nothing_else(ctx, session_factory, granted, caplog):
    ctx.retention = Retention(outbox=timedelta(days=30), links=timedelta(days=90))
    start = utcnow()
    with session_factory() as db, db.begin():
        rows = db.execute(select(OutboxMessage.id).order_by(OutboxMessage.id)).scalars().all()
        assert len(rows) >= 2
        finished, pending = rows[0], rows[1]
        db.execute(update(OutboxMessage).where(OutboxMessage.id == finished).values(state=outbox.SENT, finished_at=start))
        db.execute(update(OutboxMessage).where(OutboxMessage.id == pending).values(state=outbox.PENDING, finished_at=None))
    link_expiry = _link_expiry(session_factory)
    events_before = _count(session_factory, AuditEvent)

    with freeze_time(start + timedelta(days=29, hours=23)):
        assert retention.prune(ctx) == retention.Pruned(outbox=0, links=0)
    caplog.set_level("INFO")
    with freeze_time(start + timedelta(days=30, minutes=1)):
        assert retention.prune(ctx) == retention.Pruned(outbox=1, links=0)
    assert _count(session_factory, OutboxMessage, OutboxMessage.id == finished) == 0
    assert _count(session_factory, OutboxMessage, OutboxMessage.id == pending) == 1  # never a row still owed
    assert "deleted 1 finished outbox rows, 0 expired links and 0 webhook events" in caplog.text

    with freeze_time(link_expiry + timedelta(days=89)):
        assert retention.prune(ctx).links == 0
    with freeze_time(link_expiry + timedelta(days=90, minutes=1)):
        assert retention.prune(ctx).links == 1
    assert _count(session_factory, Link) == 0
    # the audit log is never pruned, and still verifies
    assert _count(session_factory, AuditEvent) == events_before
    with session_factory() as db:
        assert verify_chain(db)[1] is None


def _link_expiry(session_factory):
    with session_factory() as db:
        return db.execute(select(Link.expires_at)).scalar_one()


def test_a_large_backlog_is_deleted_in_batches(ctx, session_factory, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 3)
    ctx.retention = Retention(outbox=timedelta(days=1))
    old = utcnow() - timedelta(days=2)
    with session_factory() as db, db.begin():
        for n in range(8):
            outbox.enqueue(db, outbox.Kind.DIGEST, f"2026Q{n}", now=old)
        db.execute(update(OutboxMessage).values(state=outbox.SKIPPED, finished_at=old))
    assert retention.prune(ctx).outbox == 8
    assert _count(session_factory, OutboxMessage) == 0


def test_a_webhook_event_goes_after_the_outbox_retention_once_nobody_is_still_owed_it(ctx, session_factory):
    ctx.retention = Retention(outbox=timedelta(days=30), links=timedelta(days=90))
    start = utcnow()
    webhooks.subscribe(session_factory, url="https://hooks.example.com/a", actor=Actor(slack_id="UOPS1", role="cli"))
    webhooks.subscribe(session_factory, url="https://hooks.example.com/b", actor=Actor(slack_id="UOPS1", role="cli"))
    with session_factory() as db, db.begin():
        event_id = webhooks.raise_event(db, webhooks.EventType.SESSION_STARTED, account="acme", data={}, now=start)
    first, second = (r.id for r in outbox.rows(ctx))
    with session_factory() as db, db.begin():
        db.execute(update(OutboxMessage).where(OutboxMessage.id == first).values(state=outbox.SENT, finished_at=start))
    with freeze_time(start + timedelta(days=31)):
        # one subscription still waits for it (its endpoint is down): the body must stay
        assert retention.prune(ctx).webhook_events == 0
    assert _count(session_factory, WebhookEvent) == 1
    with session_factory() as db, db.begin():
        db.execute(update(OutboxMessage).where(OutboxMessage.id == second).values(state=outbox.FAILED, finished_at=start))
    with freeze_time(start + timedelta(days=29)):
        assert retention.prune(ctx).webhook_events == 0
    with freeze_time(start + timedelta(days=31)):
        assert retention.prune(ctx).webhook_events == 1
    assert _count(session_factory, WebhookEvent, WebhookEvent.id == event_id) == 0
