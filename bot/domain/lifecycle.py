"""The one state machine (DESIGN.md "Lifecycle"), enforced in one place.

`transition()` moves a request with a conditional UPDATE (`… WHERE id = :id AND state =
:from`), so of two concurrent movers exactly one wins, and writes the audit event in the
same transaction. A final state never changes.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot.db.base import affected_rows
from bot.db.models import ImpersonationRequest, RequestState
from bot.domain import audit
from bot.domain.audit import EventDraft

S = RequestState

ALLOWED: dict[RequestState, frozenset[RequestState]] = {
    S.PENDING: frozenset({S.GRANTED, S.DENIED, S.EXPIRED, S.CANCELLED}),
    S.GRANTED: frozenset({S.ACTIVE, S.LAPSED, S.REVOKED}),
    S.ACTIVE: frozenset({S.ENDED, S.EXPIRED, S.REVOKED}),
}
FINAL: frozenset[RequestState] = frozenset(set(S) - set(ALLOWED))


#: the one conditional UPDATE, built once (statement construction is costly on hot paths)
_MOVE = (
    update(ImpersonationRequest)
    .where(ImpersonationRequest.id == bindparam("rid"), ImpersonationRequest.state == bindparam("source"))
    .values(state=bindparam("target"), updated_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


class TransitionRefused(Exception):
    """The request was not in the state the caller expected (someone else moved it first)."""

    def __init__(self, request_id: str, expected: RequestState, target: RequestState) -> None:
        super().__init__(f"request {request_id} is no longer {expected.value}; cannot move to {target.value}")
        self.request_id, self.expected, self.target = request_id, expected, target


def can_move(source: RequestState, target: RequestState) -> bool:
    return target in ALLOWED.get(source, frozenset())


def transition(
    db: Session,
    request: ImpersonationRequest,
    *,
    source: RequestState,
    target: RequestState,
    event: EventDraft,
    now: datetime,
) -> None:
    move(db, request.id, source=source, target=target, event=event, now=now)
    # The row already holds these values (the UPDATE above): tell the loaded object without
    # marking it dirty, or the unit of work would write the same row again at commit.
    set_committed_value(request, "state", target.value)
    set_committed_value(request, "updated_at", now)


def move(db: Session, request_id: str, *, source: RequestState, target: RequestState, event: EventDraft, now: datetime) -> None:
    """`transition` for a request that was read as a snapshot, not loaded as an ORM object
    (bot/domain/snapshots.py): the same conditional UPDATE and audit event."""
    if not can_move(source, target):
        raise ValueError(f"illegal transition {source.value} → {target.value}")
    if affected_rows(db, _MOVE, {"rid": request_id, "source": source.value, "target": target.value, "now": now}) != 1:
        raise TransitionRefused(request_id, source, target)
    audit.append(db, event, now=now)
