"""An ask to approvers, whatever its subject (a pending request, or more time on a live
session): what their DM shows now, and the reminder and escalation an ask left unanswered
is owed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import Approval, Extension, ImpersonationRequest, ImpersonationSession, JobClaim, RequestState
from bot.domain import audit, outbox
from bot.domain.approvals import (
    ESCALATE_CLAIM,
    REMIND_CLAIM,
    ApprovalAsk,
    Decided,
    approver_pool,
    ask_now,
    escalation_members,
    lock_request,
    outcome_of,
    requester_of,
)
from bot.domain.approver_dms import ask_history, asked, enqueue_asks, everyone_asked, recorded_dms
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.extensions import extension_outcome, lock_extension, session_live
from bot.domain.once import claim_once, claimed
from bot.domain.policy import approval_nudges, escalation_group


def approver_message_state(ctx: DomainContext, subject_id: str) -> ApprovalAsk | Decided | None:
    """What an approver's DM about a request or an extension should show now (the outbox
    renders it at delivery): the ask while pending, else how it was decided."""
    with reading(ctx.sessions) as db:
        request = db.get(ImpersonationRequest, subject_id)
        if request is not None:
            return ask_now(db, request, None) if request.state == RequestState.PENDING.value else outcome_of(db, request)
        extension = db.get(Extension, subject_id)
        if extension is None:
            return None
        if extension.state == "pending":
            return ask_now(db, extension.session.request, extension)
        return extension_outcome(db, extension)


def waiting_for(db: Session, approver_slack_id: str, *, now: datetime, limit: int) -> list[ApprovalAsk]:
    """The requests and extensions waiting for this approver, oldest first: pending, not past
    their time, asked of them (as their DMs were), and not yet voted on by them. What the
    Approve / Deny buttons then do is decided again at the click, as on the DMs."""
    voted = set(db.execute(select(Approval.subject_id).where(Approval.approver_slack_id == approver_slack_id)).scalars())
    asks: list[ApprovalAsk] = []
    pending = db.execute(
        select(ImpersonationRequest)
        .where(ImpersonationRequest.state == RequestState.PENDING.value, ImpersonationRequest.pending_expires_at > now)
        .order_by(ImpersonationRequest.created_at)
    ).unique().scalars()
    for request in pending:
        if request.id not in voted and approver_slack_id in asked(db, request.id):
            asks.append(ask_now(db, request, None))
    extensions = db.execute(
        select(Extension).where(Extension.state == "pending", Extension.pending_expires_at > now).order_by(Extension.created_at)
    ).unique().scalars()
    for extension in extensions:
        if extension.id not in voted and approver_slack_id in asked(db, extension.id):
            asks.append(ask_now(db, extension.session.request, extension))
    return asks[:limit]


@dataclass(frozen=True)
class Nudged:
    """What one run owed an unanswered ask: reminders sent, the escalation group asked."""

    subject_id: str
    reminded: tuple[str, ...]
    escalated: bool
    asked: tuple[str, ...]
    targets: tuple[str, ...]


def nudge_approvers(ctx: DomainContext, subject_id: str, *, now: datetime | None = None) -> Nudged | None:
    """The scheduler's reminder and escalation of a request or an extension still pending
    (`policy.approval_nudges` decides what is due): past the reminder point, every approver
    asked who has not answered gets a reminder, a new DM so that Slack notifies them
    (chat.update does not), audited `approval.reminded`; past the escalation point, the
    policy's escalation group is asked (their approver DMs), audited `approval.escalated`.
    Either edits the agent's DM, which shows who was asked. Each happens once per ask
    however many schedulers run: under the subject's row lock, a one-time claim (job_claims)
    commits with the event and the outbox rows, or none of them does. None: nothing owed."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        request = lock_request(db, subject_id)
        extension = None
        if request is None:
            extension = lock_extension(db, subject_id)
            if extension is None or extension.state != "pending" or not session_live(extension.session.request, extension.session, now):
                return None
            request = extension.session.request
            asked_at, expires_at = extension.created_at, extension.pending_expires_at
        elif request.state != RequestState.PENDING.value or request.pending_expires_at is None:
            return None
        else:
            asked_at, expires_at = request.created_at, request.pending_expires_at
        requester = requester_of(request)
        history = ask_history(db, subject_id)
        escalated = claimed(db, ESCALATE_CLAIM, subject_id)
        group = escalation_members(ctx, request)
        gating = ctx.policy.gating
        answered = frozenset(db.execute(select(Approval.approver_slack_id).where(Approval.subject_id == subject_id)).scalars())
        nudges = approval_nudges(
            now=now,
            asked_at=asked_at,
            expires_at=expires_at,
            asked=everyone_asked(history, recorded_dms(db, subject_id)),
            answered=answered,
            escalation_named=bool(group),
            escalation=approver_pool(ctx, group, requester=requester) if group and not escalated else (),
            reminded=claimed(db, REMIND_CLAIM, subject_id),
            escalated=escalated,
            remind_after_percent=gating.remind_after_percent,
            escalate_after_percent=gating.escalate_after_percent,
            escalate_after_minutes=gating.escalate_after_minutes,
        )
        session_id = extension.session_id if extension is not None else None
        about = {"extension_id": extension.id} if extension is not None else {}
        targets: list[str] = []
        reminded: tuple[str, ...] = ()
        if nudges.remind and claim_once(db, REMIND_CLAIM, subject_id, now=now):
            reminded = nudges.remind
            audit.append(
                db,
                EventDraft.about(
                    request,
                    "approval.reminded",
                    actor=Actor.system("clock"),
                    session_id=session_id,
                    details={**about, "reminded": list(reminded), "expires_at": audit.format_time(expires_at)},
                ),
                now=now,
            )
            targets += [outbox.enqueue(db, outbox.Kind.REMINDER, subject_id, recipient=r, now=now) for r in reminded]
        escalated_now = nudges.escalate and claim_once(db, ESCALATE_CLAIM, subject_id, now=now)
        if escalated_now:
            audit.append(
                db,
                EventDraft.about(
                    request,
                    "approval.escalated",
                    actor=Actor.system("clock"),
                    session_id=session_id,
                    details={**about, "asked": list(nudges.ask), "group": list(group), "expires_at": audit.format_time(expires_at)},
                ),
                now=now,
            )
            targets += enqueue_asks(db, subject_id, nudges.ask, now=now)
        if not reminded and not escalated_now:
            return None
        if extension is not None:
            targets.append(outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now))
        else:
            targets.append(outbox.enqueue_agent_request(db, request, now=now))
        return Nudged(subject_id, reminded, escalated_now, nudges.ask if escalated_now else (), tuple(targets))


def asks_to_nudge(ctx: DomainContext, *, now: datetime) -> list[str]:
    """Requests and extensions still pending for which a reminder or an escalation may be
    due at `now` (read without locks; nudge_approvers decides under its lock)."""
    gating = ctx.policy.gating
    with reading(ctx.sessions) as db:
        pending = [
            (row.id, row.created_at, row.pending_expires_at, row.gated_by)
            for row in db.execute(
                select(ImpersonationRequest.id, ImpersonationRequest.created_at, ImpersonationRequest.pending_expires_at, ImpersonationRequest.gated_by)
                .where(ImpersonationRequest.state == RequestState.PENDING.value, ImpersonationRequest.pending_expires_at > now)
            )
        ]
        pending += [
            (row.id, row.created_at, row.pending_expires_at, row.gated_by)
            for row in db.execute(
                select(Extension.id, Extension.created_at, Extension.pending_expires_at, ImpersonationRequest.gated_by)
                .join(ImpersonationSession, ImpersonationSession.id == Extension.session_id)
                .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
                .where(Extension.state == "pending", Extension.pending_expires_at > now)
            )
        ]
        ids = [subject_id for subject_id, *_ in pending]
        claims = select(JobClaim.job, JobClaim.key).where(JobClaim.job.in_((REMIND_CLAIM, ESCALATE_CLAIM)), JobClaim.key.in_(ids))
        done = {(job, key) for job, key in db.execute(claims)} if ids else set()
    due = []
    for subject_id, asked_at, expires_at, gated_by in pending:
        gates = frozenset(g for g in gated_by.split(",") if g)
        named = bool(escalation_group(gates=gates, escalate_to=gating.escalate_to, escalate_to_by_gate=gating.escalate_to_by_gate))
        # "could anything be owed": someone unanswered to remind, a group to escalate to
        could = approval_nudges(
            now=now, asked_at=asked_at, expires_at=expires_at, asked=("?",), answered=frozenset(), escalation_named=named, escalation=(),
            reminded=(REMIND_CLAIM, subject_id) in done, escalated=(ESCALATE_CLAIM, subject_id) in done,
            remind_after_percent=gating.remind_after_percent, escalate_after_percent=gating.escalate_after_percent,
            escalate_after_minutes=gating.escalate_after_minutes,
        )
        if could.remind or could.escalate:
            due.append(subject_id)
    return due

