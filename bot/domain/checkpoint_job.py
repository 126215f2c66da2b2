"""The scheduler's signed audit checkpoints: once an hour,
across however many schedulers, the chain head is signed (checkpoints.make_and_store_checkpoint,
which re-checks the chain since the previous checkpoint and appends to AUDIT_CHECKPOINT_FILE),
recorded as an `audit.checkpoint` event, and posted to the security channel through the
outbox, so that a copy lives outside the database.

The event comes after the head it vouches for (it is event N+1 about event N), which is what
any log that records its own checkpoints must do.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import AuditEvent
from bot.domain import audit, checkpoints, outbox
from bot.domain.audit import Actor, EventDraft
from bot.domain.checkpoints import ChainTampered, Checkpoint
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.once import claim_once

log = logging.getLogger(__name__)

JOB = "checkpoint"
EVENT = "audit.checkpoint"


def period_key(now: datetime) -> str:
    """One checkpoint per UTC hour."""
    return now.strftime("%Y-%m-%dT%H")


def run_due(ctx: DomainContext, *, now: datetime | None = None) -> Checkpoint | None:
    """Make this hour's checkpoint unless a scheduler already did. A chain that no longer
    verifies is not signed over: that is logged and audited as `audit.checkpoint_refused`."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        if not claim_once(db, JOB, period_key(now), now=now):
            return None
    try:
        checkpoint = checkpoints.make_and_store_checkpoint(ctx, ctx.checkpoint_file, now=now)
    except ChainTampered as problem:
        log.error("audit checkpoint refused: %s", problem)
        with ctx.sessions() as db, db.begin():
            audit.append(
                db,
                EventDraft(type="audit.checkpoint_refused", actor=Actor.system("scheduler"), details={"seq": problem.seq, "reason": problem.reason[:300]}),
                now=now,
            )
        return None
    with ctx.sessions() as db, db.begin():
        event = audit.append_now(
            db,
            EventDraft(
                type=EVENT,
                actor=Actor.system("scheduler"),
                details={"kid": checkpoint.kid, "seq": checkpoint.seq, "hash": checkpoint.hash, "time": checkpoint.time, "signature": checkpoint.signature},
            ),
            now=now,
        )
        outbox.enqueue(db, outbox.Kind.CHECKPOINT, str(event.seq), now=now)
    return checkpoint


def checkpoint_for(ctx: DomainContext, subject_id: str) -> Checkpoint | None:
    """The checkpoint an `audit.checkpoint` event (by its seq) recorded."""
    if not subject_id.isdigit():
        return None
    with reading(ctx.sessions) as db:
        event = db.execute(select(AuditEvent).where(AuditEvent.seq == int(subject_id), AuditEvent.type == EVENT)).scalar_one_or_none()
        return Checkpoint.from_json(event.details) if event is not None else None
