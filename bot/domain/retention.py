"""Retention of operational rows (docs/operations.md "Retention").

Some tables only serve the running system: the outbox's finished rows (kept for looking into
a delivery problem) and the webhook events they sent, the one-time links (a link past its expiry can never redeem; its row only
lets the landing page say "expired" instead of "unknown"), and Slack's delivery keys (pruned
by bot/domain/deliveries.py as soon as no replay can pass verification). They grow with every
request, so a job deletes them once they are older than the configured retention.

The audit log (`audit_events`, `audit_head`) is never pruned by the app: it is the record, and
the app's PostgreSQL role cannot delete from it anyway (docs/postgresql.md). Requests,
sessions, approvals and extensions are the audit log's subjects and are kept too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, exists, select

from bot.db.models import Link, OutboxMessage, WebhookEvent
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.messages import FAILED, MERGED, PENDING, SENDING, SENT, SKIPPED, Kind

log = logging.getLogger(__name__)

#: rows deleted per statement: keeps each transaction (and PostgreSQL's locks, SQLite's
#: writer lock) short however far behind the job is
BATCH = 5000


@dataclass(frozen=True)
class Pruned:
    outbox: int
    links: int
    webhook_events: int = 0


def prune(ctx: DomainContext, *, now: datetime | None = None) -> Pruned:
    now = now or utcnow()
    retention = ctx.retention
    outbox = _delete_in_batches(
        ctx,
        select(OutboxMessage.id).where(
            OutboxMessage.state.in_((SENT, SKIPPED, MERGED, FAILED)), OutboxMessage.finished_at < now - retention.outbox
        ),
        OutboxMessage,
    )
    links = _delete_in_batches(ctx, select(Link.id).where(Link.expires_at < now - retention.links), Link)
    still_owed = exists().where(
        OutboxMessage.kind == Kind.WEBHOOK.value, OutboxMessage.subject_id == WebhookEvent.id, OutboxMessage.state.in_((PENDING, SENDING))
    )
    events = _delete_in_batches(
        ctx, select(WebhookEvent.id).where(WebhookEvent.created_at < now - retention.outbox, ~still_owed), WebhookEvent
    )
    if outbox or links or events:
        # one line per run that changed something; an idle run says nothing (docs/cli.md "Logs")
        log.info("retention: deleted %d finished outbox rows, %d expired links and %d webhook events", outbox, links, events)
    return Pruned(outbox, links, events)


def _delete_in_batches(ctx: DomainContext, ids: Select[Any], model: type[OutboxMessage | Link | WebhookEvent]) -> int:
    total = 0
    while True:
        with ctx.sessions() as db, db.begin():
            batch = db.execute(ids.order_by(model.id).limit(BATCH)).scalars().all()
            if not batch:
                return total
            db.execute(delete(model).where(model.id.in_(batch)))
        total += len(batch)
