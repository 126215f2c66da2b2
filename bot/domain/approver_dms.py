"""The approvers' DMs about an ask (a pending request, or more time on a session): who was
asked, read back from the audit events that asked them; which DMs Slack accepted, recorded in
`message_refs` by the outbox; and the outbox rows that post and later edit them.

Whom an ask reached is read from the audit log rather than from the DMs recorded, because a
DM may still be on its way when the ask is decided: the decision owes an edit to everyone
asked, and the row it writes follows the one still being sent (rows of one target go out in
order), so that one is edited too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import AuditEvent, Extension, ImpersonationRequest, MessageRef
from bot.domain import outbox


@dataclass(frozen=True)
class MessageView:
    recipient: str
    channel: str
    ts: str


@dataclass(frozen=True)
class AskHistory:
    """Whom an ask reached, from its audit events: asked first, reminded, asked on escalation."""

    asked: tuple[str, ...] = ()
    reminded: tuple[str, ...] = ()
    reminded_at: datetime | None = None
    escalated: tuple[str, ...] = ()
    escalated_at: datetime | None = None


def ask_history(db: Session, subject_id: str) -> AskHistory:
    """The `asked` lists of the events that owed approvers' DMs about a request or an
    extension (approval.requested / extension.requested, then approval.escalated), and its
    reminder (approval.reminded), in order, found through the indexed request id; an
    extension's events are told apart by their extension_id."""
    request_id, first_type, extension_id = subject_id, "approval.requested", None
    extension = db.get(Extension, subject_id) if db.get(ImpersonationRequest, subject_id) is None else None
    if extension is not None:
        request_id, first_type, extension_id = extension.session.request_id, "extension.requested", extension.id
    asked: list[str] = []
    reminded: tuple[str, ...] = ()
    escalated: tuple[str, ...] = ()
    reminded_at = escalated_at = None
    rows = db.execute(
        select(AuditEvent.type, AuditEvent.details, AuditEvent.occurred_at)
        .where(AuditEvent.request_id == request_id, AuditEvent.type.in_((first_type, "approval.escalated", "approval.reminded")))
        .order_by(AuditEvent.seq)
    )
    for event_type, details, occurred_at in rows:
        facts = json.loads(details)
        if facts.get("extension_id") != extension_id:
            continue
        if event_type == "approval.reminded":
            reminded, reminded_at = tuple(str(a) for a in facts.get("reminded") or ()), occurred_at
            continue
        people = [str(a) for a in facts.get("asked") or ()]
        asked.extend(people)
        if event_type == "approval.escalated":
            escalated, escalated_at = tuple(people), occurred_at
    return AskHistory(tuple(asked), reminded, reminded_at, escalated, escalated_at)


def recorded_dms(db: Session, subject_id: str) -> tuple[MessageView, ...]:
    """The approvers' DMs about a subject that Slack accepted, in the order posted (the
    outbox records each under its kind, outbox.Kind.APPROVER)."""
    rows = db.execute(
        select(MessageRef).where(MessageRef.subject_id == subject_id, MessageRef.purpose == outbox.Kind.APPROVER.value).order_by(MessageRef.id)
    ).scalars()
    return tuple(MessageView(r.recipient, r.channel, r.ts) for r in rows)


def everyone_asked(history: AskHistory, messages: tuple[MessageView, ...]) -> tuple[str, ...]:
    """Every approver asked, in the order asked (the first group, then the escalation group),
    and anyone whose DM was recorded otherwise."""
    return tuple(dict.fromkeys([*history.asked, *(m.recipient for m in messages)]))


def asked(db: Session, subject_id: str) -> tuple[str, ...]:
    """Every approver asked about a request or an extension (everyone_asked)."""
    return everyone_asked(ask_history(db, subject_id), recorded_dms(db, subject_id))


@dataclass(frozen=True)
class Audience:
    """Whom a decision tells, read once for its outbox rows and its result."""

    #: the approver DMs recorded
    messages: tuple[MessageView, ...]
    #: everyone asked
    asked: tuple[str, ...]
    #: everyone reminded
    reminded: tuple[str, ...]


def decision_audience(db: Session, subject_id: str) -> Audience:
    messages = recorded_dms(db, subject_id)
    history = ask_history(db, subject_id)
    return Audience(messages, everyone_asked(history, messages), history.reminded)


def asks(subject_id: str, approvers: list[str] | tuple[str, ...]) -> list[outbox.Owed]:
    """One outbox row per approver's DM about a request or an extension (its id as subject).
    The courier renders each from the state at delivery: the ask while the subject is
    pending, its outcome once decided, so a DM delivered late never offers stale buttons."""
    return [(outbox.Kind.APPROVER, subject_id, approver) for approver in approvers]


def enqueue_asks(db: Session, subject_id: str, approvers: list[str] | tuple[str, ...], *, now: datetime) -> list[str]:
    return outbox.enqueue_all(db, asks(subject_id, approvers), now=now)


def approver_edits(subject_id: str, audience: Audience) -> list[outbox.Owed]:
    """A decision edits every approver's DM through the outbox. A row is owed to everyone
    asked, not only to those whose DM is recorded (see the module's docstring). The
    reminders sent are edited too, so that none still offers the ask."""
    return [*asks(subject_id, audience.asked), *((outbox.Kind.REMINDER, subject_id, r) for r in audience.reminded)]


def enqueue_approver_edits(db: Session, subject_id: str, audience: Audience, *, now: datetime) -> list[str]:
    return outbox.enqueue_all(db, approver_edits(subject_id, audience), now=now)
