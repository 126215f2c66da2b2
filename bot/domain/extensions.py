"""More time on a live session: the agent asks, with a fresh reason; the policy decides whether
it is self-served within the role's cap or asked of approvers (policy.decide_extension_ask), and
never past the ceiling. Asked of approvers, it is decided like a gated request (who may decide,
votes, results: bot/domain/approvals.py) under the extension's row lock, or expired by the clock
once past its TTL or once its session is no longer live.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import Approval, ApprovalDecision, Extension, ImpersonationRequest, ImpersonationSession, RequestState
from bot.domain import audit, outbox
from bot.domain.approvals import (
    REFUSAL_MESSAGES,
    AlreadyCounted,
    AlreadyDecided,
    ApprovalAsk,
    ClickResult,
    Counted,
    Decided,
    ExtensionView,
    Refused,
    approvers_so_far,
    ask_now,
    check_deny_reason,
    eligible_approvers,
    expand_members,
    recent_sessions,
    refusal_cause,
    requester_of,
    role_of,
    vote,
)
from bot.domain.approver_dms import decision_audience, enqueue_approver_edits, enqueue_asks
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.identity import identify
from bot.domain.policy import ExtensionOutcome, ExtensionRefusal, decide_extension_ask, powers_of
from bot.domain.views import RequestView, SessionView


@dataclass(frozen=True)
class ExtensionAsked:
    ask: ApprovalAsk
    #: the outbox targets the ask owed (every approver's DM, the agent's session DM)
    targets: tuple[str, ...]


@dataclass(frozen=True)
class ExtensionGranted:
    """Self-served within the role's cap: the session runs longer at once."""

    session: SessionView
    #: the outbox targets the extension owed (the agent's session DM, the security feed)
    targets: tuple[str, ...]


EXTENSION_REFUSALS = {
    ExtensionRefusal.NO_POWER: "Your role cannot extend sessions. Start a new request with a fresh reason.",
    ExtensionRefusal.REASON_TOO_SHORT: "Give a fresh reason (at least {reason_min} characters).",
    ExtensionRefusal.INVALID_MINUTES: "Ask for a positive number of minutes.",
    ExtensionRefusal.AT_CEILING: "This session already runs to the longest any session may ({ceiling} minutes). Start a new request instead.",
}


def request_extension(
    ctx: DomainContext, session_id: str, *, agent_slack_id: str, minutes: int, reason: str, now: datetime | None = None
) -> ExtensionAsked | ExtensionGranted | Refused:
    """An agent with `can_request_extension` asks for more time, with a fresh reason, decided
    by `policy.decide_extension_ask`: self-served within the role's cap where the role allows,
    approved otherwise — by the past-cap approvers when it passes the cap — and never past the
    policy's ceiling (`extensions.max_total_minutes`), counted from the session's start."""
    now = now or utcnow()
    reason = reason.strip()
    powers = powers_of(ctx.policy, agent_slack_id, ctx.groups)
    with ctx.sessions() as db, db.begin():
        session = db.execute(
            select(ImpersonationSession).where(ImpersonationSession.id == session_id).with_for_update(of=ImpersonationSession)
        ).unique().scalar_one_or_none()
        if session is None or session.agent_slack_id != agent_slack_id:
            return Refused("Only the agent of a live session can ask to extend it.")
        request = session.request
        actor = Actor(slack_id=agent_slack_id, email=request.agent_email, role=powers.role if powers else None)

        def refuse(cause: str, message: str) -> Refused:
            audit.append(db, _event(session, "extension.refused", actor, {"cause": cause, "minutes": minutes}), now=now)
            return Refused(message)

        if request.state != RequestState.ACTIVE.value or now >= session.expires_at:
            return refuse("not_live", "This session is over; start a new request instead.")
        current_total = int((session.expires_at - session.started_at).total_seconds() // 60)
        ceiling = ctx.policy.extensions.max_total_minutes
        decision = decide_extension_ask(
            powers=powers,
            current_total_minutes=current_total,
            asked_minutes=minutes,
            reason_ok=len(reason) >= ctx.policy.requests.reason_min_length,
            ceiling_minutes=ceiling,
        )
        if decision.outcome is ExtensionOutcome.REFUSE:
            assert decision.cause is not None
            message = EXTENSION_REFUSALS[decision.cause].format(reason_min=ctx.policy.requests.reason_min_length, ceiling=max(ceiling, powers.max_minutes if powers else 0))
            return refuse(decision.cause.value, message)
        pending = db.execute(select(func.count()).select_from(Extension).where(Extension.session_id == session.id, Extension.state == "pending")).scalar_one()
        if pending:
            return refuse("already_pending", "An extension for this session is already waiting for approval.")
        granted_minutes = decision.new_total_minutes - current_total  # trimmed to the ceiling
        self_served = decision.outcome is ExtensionOutcome.SELF_SERVE
        new_end = session.started_at + timedelta(minutes=decision.new_total_minutes)
        extension = Extension(
            id=str(uuid.uuid4()),
            session_id=session.id,
            requested_by=agent_slack_id,
            reason=reason[:2000],
            minutes=granted_minutes,
            state="approved" if self_served else "pending",
            approvals_required=0 if self_served else max(1, request.approvals_required),
            created_at=now,
            pending_expires_at=now if self_served else now + timedelta(minutes=ctx.policy.gating.pending_ttl_minutes),
            decided_at=now if self_served else None,
            new_expires_at=new_end if self_served else None,
        )
        db.add(extension)
        db.flush()
        db.refresh(extension)
        if self_served:
            session.expires_at = new_end
            audit.append(
                db,
                _event(
                    session,
                    "extension.granted",
                    actor,
                    {
                        "extension_id": extension.id, "minutes": granted_minutes, "reason": extension.reason,
                        "self_served": True, "new_expires_at": audit.format_time(new_end),
                    },
                ),
                now=now,
            )
            targets = (
                outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now),
                outbox.enqueue(db, outbox.Kind.FEED, request.id, now=now),
            )
            return ExtensionGranted(SessionView.of(session), targets)
        approvers = eligible_approvers(ctx, account=request.account.external_id, team_id=request.team_id, requester=requester_of(request))
        if decision.past_cap and ctx.policy.extensions.past_cap_approvers:
            # past the role's cap: only the approvers the policy names for that
            named = expand_members(ctx, ctx.policy.extensions.past_cap_approvers)
            approvers = [a for a in approvers if a in named]
        audit.append(
            db,
            _event(
                session,
                "extension.requested",
                actor,
                {
                    "extension_id": extension.id, "minutes": granted_minutes, "reason": extension.reason, "asked": approvers,
                    "past_cap": decision.past_cap, "new_total_minutes": decision.new_total_minutes,
                },
            ),
            now=now,
        )
        # Owed with the extension: every approver's DM, and the agent's
        # session DM, which shows that more time is waiting for them.
        asked = enqueue_asks(db, extension.id, approvers, now=now)
        session_dm = outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now)
        recent = recent_sessions(db, agent_slack_id=agent_slack_id, account_id=request.account_id)
        ask = ApprovalAsk(RequestView.of(request), tuple(approvers), tuple(recent), ExtensionView.of(extension))
        return ExtensionAsked(ask, (*asked, session_dm))


def _event(session: ImpersonationSession, type: str, actor: Actor, details: dict[str, Any]) -> EventDraft:
    """An event about more time on this session (and so about its request)."""
    return EventDraft.about(session.request, type, actor=actor, session_id=session.id, details=details)


def lock_extension(db: Session, extension_id: str) -> Extension | None:
    return db.execute(select(Extension).where(Extension.id == extension_id).with_for_update(of=Extension)).unique().scalar_one_or_none()


def decide_extension(
    ctx: DomainContext,
    extension_id: str,
    *,
    clicker_slack_id: str,
    approve: bool,
    reason: str | None = None,
    now: datetime | None = None,
) -> ClickResult:
    now = now or utcnow()
    clicker = identify(ctx.people, clicker_slack_id)
    if not approve:
        reason = (reason or "").strip()
        refused = check_deny_reason(reason)
        if refused:
            return refused
    with ctx.sessions() as db, db.begin():
        extension = lock_extension(db, extension_id)
        if extension is None:
            return Refused("That extension request no longer exists.")
        session = extension.session
        request = session.request
        if extension.state != "pending":
            last = db.execute(
                select(audit.AuditEvent)
                .where(audit.AuditEvent.session_id == session.id, audit.AuditEvent.type.in_(("extension.granted", "extension.denied", "extension.expired")))
                .order_by(audit.AuditEvent.seq.desc())
                .limit(1)
            ).scalar_one_or_none()
            return AlreadyDecided(extension.state, last.actor_slack_id if last else None, extension.decided_at or now)

        def finish(state: str, event_type: str, by: str | None, details: dict, reason_text: str | None) -> Decided:
            actor = Actor(slack_id=by, email=clicker.email if by else None, role=role_of(ctx, by) if by else "clock")
            return _finish_extension(db, extension, state=state, event_type=event_type, actor=actor, details=details, reason_text=reason_text, now=now)

        live = session_live(request, session, now)
        if now >= extension.pending_expires_at or not live:
            return finish("expired", "extension.expired", None, {"session_live": live}, None)
        refusal = refusal_cause(db, ctx, clicker, request, extension.id)
        if refusal:
            audit.append(db, _event(session, "extension.refused", Actor(slack_id=clicker.slack_id, email=clicker.email), {"cause": refusal, "extension_id": extension.id}), now=now)
            return Refused(REFUSAL_MESSAGES[refusal])
        if not vote(db, extension.id, clicker, ApprovalDecision.APPROVE if approve else ApprovalDecision.DENY, reason, now):
            return AlreadyCounted(extension.id)
        if not approve:
            return finish("denied", "extension.denied", clicker.slack_id, {"reason": reason}, reason)
        approvers = approvers_so_far(db, extension.id)
        if len(approvers) < extension.approvals_required:
            outbox.enqueue_home(db, clicker.slack_id, now=now)  # it leaves the approver's queue
            return Counted(extension.id, len(approvers), extension.approvals_required)
        # The ask was decided (and trimmed to the ceiling) when it was made; the ceiling holds
        # again here, should the session have been extended meanwhile.
        agent_powers = powers_of(ctx.policy, request.agent_slack_id, ctx.groups)
        ceiling = max(ctx.policy.extensions.max_total_minutes, agent_powers.max_minutes if agent_powers else 0)
        new_end = min(session.expires_at + timedelta(minutes=extension.minutes), session.started_at + timedelta(minutes=ceiling))
        session.expires_at = new_end
        extension.new_expires_at = new_end
        return finish("approved", "extension.granted", clicker.slack_id, {"approvers": approvers, "new_expires_at": audit.format_time(new_end)}, None)


def session_live(request: ImpersonationRequest, session: ImpersonationSession, now: datetime) -> bool:
    return request.state == RequestState.ACTIVE.value and now < session.expires_at


def _finish_extension(
    db: Session,
    extension: Extension,
    *,
    state: str,
    event_type: str,
    actor: Actor,
    details: dict,
    reason_text: str | None,
    now: datetime,
) -> Decided:
    """An extension leaves `pending` (approved, denied or expired), audited, with the outbox
    rows that edit every approver's DM and the agent's session DM (rendered at delivery)."""
    session = extension.session
    request = session.request
    extension.state, extension.decided_at = state, now
    audit.append(db, _event(session, event_type, actor, {"extension_id": extension.id, **details}), now=now)
    db.flush()
    audience = decision_audience(db, extension.id)
    targets = enqueue_approver_edits(db, extension.id, audience, now=now)
    targets.append(outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now))
    if state == "approved":
        # the security feed shows the new end
        targets.append(outbox.enqueue(db, outbox.Kind.FEED, request.id, now=now))
    return Decided(
        RequestView.of(request), state, actor.slack_id, now, reason_text, audience.messages,
        extension=ExtensionView.of(extension), session=SessionView.of(session), asked=audience.asked,
        targets=tuple(targets),
    )


def expire_pending_extension(ctx: DomainContext, extension_id: str, *, now: datetime | None = None) -> Decided | None:
    """The scheduler's notice for an ask for more time nobody decided (as
    for requests): once past its TTL, or once its session is no longer live, it is expired —
    audited `extension.expired` by the clock, every approver's DM and the agent's session DM
    edited through the outbox. Idempotent: an extension no longer pending is left alone."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        extension = lock_extension(db, extension_id)
        if extension is None or extension.state != "pending":
            return None
        session = extension.session
        live = session_live(session.request, session, now)
        if live and now < extension.pending_expires_at:
            return None
        return _finish_extension(
            db, extension, state="expired", event_type="extension.expired", actor=Actor.system("clock"),
            details={"session_live": live}, reason_text=None, now=now,
        )


def last_extension_outcome(ctx: DomainContext, session_id: str) -> Decided | None:
    """How the session's latest ask for more time was decided, while none is pending (the
    agent's session DM shows it, rendered by the outbox at delivery); None when there was
    none or one is pending."""
    with reading(ctx.sessions) as db:
        latest = db.execute(
            select(Extension).where(Extension.session_id == session_id).order_by(Extension.created_at.desc(), Extension.id.desc()).limit(1)
        ).scalar_one_or_none()
        if latest is None or latest.state == "pending":
            return None
        return extension_outcome(db, latest)


def extension_outcome(db: Session, extension: Extension) -> Decided:
    """How more time was decided, rebuilt from the extension and its votes (the deciding
    vote is the last one of its kind; an expiry has none)."""
    by = reason = None
    if extension.state in ("approved", "denied"):
        decision = ApprovalDecision.APPROVE if extension.state == "approved" else ApprovalDecision.DENY
        deciding = db.execute(
            select(Approval).where(Approval.subject_id == extension.id, Approval.decision == decision.value).order_by(Approval.id.desc()).limit(1)
        ).scalar_one_or_none()
        if deciding is not None:
            by, reason = deciding.approver_slack_id, deciding.reason
    session = extension.session
    audience = decision_audience(db, extension.id)
    return Decided(
        RequestView.of(session.request),
        extension.state,
        by,
        extension.decided_at or extension.created_at,
        reason,
        audience.messages,
        extension=ExtensionView.of(extension),
        session=SessionView.of(session),
        asked=audience.asked,
    )


def pending_extension_ask(db: Session, session_id: str) -> ApprovalAsk | None:
    """The ask for more time waiting on a session, if any (the agent's DM shows it)."""
    extension = db.execute(select(Extension).where(Extension.session_id == session_id, Extension.state == "pending")).scalar_one_or_none()
    return ask_now(db, extension.session.request, extension) if extension is not None else None

