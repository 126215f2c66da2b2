"""The audit log: append-only, hash-chained (DESIGN.md "The audit log", docs/audit.md).

Each event's hash is SHA-256 over its canonical encoding, which includes the previous
event's hash, so changing, removing or reordering any row breaks every hash after it.

Canonical encoding (documented for auditors in docs/audit.md): a JSON object with exactly the
keys below, keys sorted, no insignificant white space (separators "," and ":"), UTF-8,
non-ASCII characters written as themselves, times as RFC 3339 UTC with microseconds and a
"Z". `details` is itself a JSON object (no floats: integers, strings, booleans, null, lists
and objects only), so the encoding is also RFC 8785 (JCS) canonical.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from bot.db.models import AuditEvent, AuditHead
from bot.domain.clock import utcnow

GENESIS_HASH = "0" * 64
_EVENT_COLUMNS = tuple(column.key for column in AuditEvent.__table__.columns)
# Built once: constructing SQLAlchemy statements per call costs more CPU than running them.
_LOCK_HEAD = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
_INSERT_EVENT = insert(AuditEvent)
_ADVANCE_HEAD = (
    update(AuditHead).where(AuditHead.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


@dataclass(frozen=True)
class Actor:
    """Who did it, as they were at the time (role and e-mail can change later)."""

    slack_id: str | None = None
    email: str | None = None
    role: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(slack_id=None, email=None, role=name)


@dataclass
class EventDraft:
    type: str
    actor: Actor = field(default_factory=Actor)
    account: str | None = None
    customer_user: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    _reject_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit details (canonical encoding)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("audit detail keys must be strings")
            _reject_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _reject_floats(item)


def encode_event(
    *,
    seq: int,
    occurred_at: str,
    type: str,
    actor_slack_id: str | None,
    actor_email: str | None,
    actor_role: str | None,
    account: str | None,
    customer_user: str | None,
    request_id: str | None,
    session_id: str | None,
    details: str,
    prev_hash: str,
) -> bytes:
    """The exact bytes that are hashed. `details` is the stored canonical JSON text."""
    document = {
        "seq": seq,
        "occurred_at": occurred_at,
        "type": type,
        "actor": {"slack_id": actor_slack_id, "email": actor_email, "role": actor_role},
        "account": account,
        "customer_user": customer_user,
        "request_id": request_id,
        "session_id": session_id,
        "details": json.loads(details),
        "prev_hash": prev_hash,
    }
    return canonical_json(document).encode("utf-8")


def hash_event_row(row: AuditEvent) -> str:
    return hashlib.sha256(
        encode_event(
            seq=row.seq,
            occurred_at=format_time(row.occurred_at),
            type=row.type,
            actor_slack_id=row.actor_slack_id,
            actor_email=row.actor_email,
            actor_role=row.actor_role,
            account=row.account,
            customer_user=row.customer_user,
            request_id=row.request_id,
            session_id=row.session_id,
            details=row.details,
            prev_hash=row.prev_hash,
        )
    ).hexdigest()


def append(db: Session, draft: EventDraft, *, now: datetime | None = None) -> AuditEvent:
    """Append one event inside the caller's transaction (so it commits with the state change).

    The head row is locked first: on PostgreSQL `SELECT … FOR UPDATE` makes concurrent
    appenders queue, and each re-reads the head after the one before it commits; on SQLite
    every transaction already holds the write lock (BEGIN IMMEDIATE, bot/db/engine.py).
    """
    occurred = (now or utcnow()).astimezone(timezone.utc)
    # Stored and hashed at microsecond precision, which both databases keep exactly.
    head_seq, head_hash = db.execute(_LOCK_HEAD).one()
    seq = head_seq + 1
    details = canonical_json(draft.details)
    event = AuditEvent(
        seq=seq,
        occurred_at=occurred,
        type=draft.type,
        actor_slack_id=draft.actor.slack_id,
        actor_email=draft.actor.email,
        actor_role=draft.actor.role,
        account=draft.account,
        customer_user=draft.customer_user,
        request_id=draft.request_id,
        session_id=draft.session_id,
        details=details,
        prev_hash=head_hash,
        hash="",
    )
    event.hash = hash_event_row(event)
    # Core statements, not the unit of work: an append is on every state change's path,
    # and the ORM flush machinery was most of its cost (bench/http_bench.py).
    db.execute(_INSERT_EVENT, [{column: getattr(event, column) for column in _EVENT_COLUMNS}])
    db.execute(_ADVANCE_HEAD, {"new_seq": seq, "new_hash": event.hash})
    return event


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    reason: str


def verify_chain(db: Session, *, batch: int = 5000) -> tuple[int, ChainProblem | None]:
    """Walk the chain in order. Returns (events checked, first problem or None)."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = db.execute(
            select(AuditEvent).where(AuditEvent.seq > last_seq).order_by(AuditEvent.seq).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return checked, ChainProblem(expected_seq, f"sequence gap: expected {expected_seq}, found {row.seq}")
            if row.prev_hash != expected_prev:
                if row.seq > 1 and hash_event_row(row) == row.hash:
                    # This event is intact but was chained to a different predecessor: the
                    # earliest row that can have changed is the one before it (replaced or forged).
                    return checked - 1, ChainProblem(
                        row.seq - 1, f"event {row.seq - 1} is not the event {row.seq} was chained to: it was replaced or forged"
                    )
                return checked, ChainProblem(row.seq, "prev_hash does not match the previous event's hash")
            if hash_event_row(row) != row.hash:
                return checked, ChainProblem(row.seq, "hash does not match the event's contents")
            expected_prev = row.hash
            expected_seq += 1
            checked += 1
            last_seq = row.seq
        db.expunge_all()
    head = db.get(AuditHead, 1)
    if head is not None and (head.seq != checked or head.hash != expected_prev):
        return checked, ChainProblem(checked + 1, f"chain head records seq {head.seq}, log ends at {checked}")
    return checked, None
