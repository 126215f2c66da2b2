"""Concurrent appenders keep the chain gap-free and fork-free —
8 writers × 500 events at once yield one valid chain with consecutive sequence numbers."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from bot.db.models import AuditEvent
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft

WRITERS = 8
EVENTS_EACH = 500


def test_eight_concurrent_writers_make_one_chain(session_factory):
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            barrier.wait()
            for i in range(EVENTS_EACH):
                with session_factory() as db, db.begin():
                    audit.append(db, EventDraft(type="test.concurrent", actor=Actor(slack_id=f"UWRITER{number}"), details={"i": i}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_factory() as db:
        checked, problem = audit.verify_chain(db)
        assert problem is None
        assert checked == WRITERS * EVENTS_EACH
        seqs = db.execute(select(func.min(AuditEvent.seq), func.max(AuditEvent.seq), func.count())).one()
        assert tuple(seqs) == (1, WRITERS * EVENTS_EACH, WRITERS * EVENTS_EACH)
        per_writer = db.execute(
            select(AuditEvent.actor_slack_id, func.count()).group_by(AuditEvent.actor_slack_id)
        ).all()
        assert sorted(n for _, n in per_writer) == [EVENTS_EACH] * WRITERS
