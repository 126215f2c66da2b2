"""The scheduler's work on requests and sessions, and what the Slack face
needs to show them.

Expiry is decided at every use (sessions.status_at); these jobs only tell people and tidy the
state, so a stopped scheduler never extends access. Each job is idempotent and safe to run in
two schedulers at once: it reads what is due, then moves each row in its own transaction with
a conditional UPDATE (lifecycle.transition) or a one-time claim (once.claim_once), and writes
its outbox rows in that same transaction. Whoever loses a race changes nothing and sends
nothing, and a scheduler that was down catches up on its first run: whatever is overdue is
still selected, exactly once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from bot.db.engine import reading
from bot.db.models import Approval, Extension, ImpersonationRequest, ImpersonationSession, Link, RequestState
from bot.domain import approvals, asks, audit, extensions, outbox
from bot.domain.approvals import ApprovalAsk, Decided
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.lifecycle import TransitionRefused, transition
from bot.domain.once import claim_once, claimed
from bot.domain.sessions import SessionStatus, close_session, status_at
from bot.domain.snapshots import request_snapshot, session_of
from bot.domain.views import RequestView, SessionView

log = logging.getLogger(__name__)

WARNING_JOB = "expiry_warning"


def _warning_key(session_id: str, expires_at: datetime) -> str:
    # Keyed by the end time too: an extended session is warned again before its new end.
    return f"{session_id}@{audit.format_time(expires_at)}"


# ---------------------------------------------------------------------------- jobs


def warn_expiring(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Warn each agent once, `notifications.expiry_warning_minutes` before their session ends
    (DM with End now and, where the role allows, Extend), and mark the security feed. A
    session already past its end gets no warning: it is expired instead."""
    now = now or utcnow()
    lead = timedelta(minutes=ctx.policy.notifications.expiry_warning_minutes)
    with reading(ctx.sessions) as db:
        due = db.execute(
            select(ImpersonationSession.id)
            .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
            .where(
                ImpersonationRequest.state == RequestState.ACTIVE.value,
                ImpersonationSession.expires_at > now,
                ImpersonationSession.expires_at <= now + lead,
            )
        ).scalars().all()
    warned = 0
    for session_id in due:
        with ctx.sessions() as db, db.begin():
            session = db.get(ImpersonationSession, session_id)
            if session is None or status_at(session, now) is not SessionStatus.LIVE or session.expires_at > now + lead:
                continue
            if not claim_once(db, WARNING_JOB, _warning_key(session.id, session.expires_at), now=now):
                continue
            request = session.request
            outbox.enqueue(db, outbox.Kind.WARNING, session.id, recipient=request.agent_slack_id, now=now)
            outbox.enqueue(db, outbox.Kind.FEED, request.id, now=now)
            warned += 1
    return warned


def expire_sessions(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Record as expired every active session past its end (state → expired through the
    lifecycle, audited `session.expired`); the agent's DM, the warning and the feed are
    edited through the outbox (sessions.close_session writes those rows)."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        due = db.execute(
            select(ImpersonationSession.id)
            .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
            .where(ImpersonationRequest.state == RequestState.ACTIVE.value, ImpersonationSession.expires_at <= now)
        ).scalars().all()
    expired = 0
    for session_id in due:
        with ctx.sessions() as db, db.begin():
            session = db.get(ImpersonationSession, session_id)
            if session is None or session.request.state != RequestState.ACTIVE.value or now < session.expires_at:
                continue
            try:
                close_session(db, session, target=RequestState.EXPIRED, actor=Actor.system("clock"), now=now, details={"by": "scheduler"})
            except TransitionRefused:
                db.rollback()  # ended or revoked a moment ago: that change stands
                continue
            expired += 1
    return expired


def expire_pending_requests(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Pending requests past their TTL are expired (approvals.expire_pending_request, which
    writes `request.expired` and the outbox rows that edit every approver's DM and the
    agent's)."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        due = db.execute(
            select(ImpersonationRequest.id).where(
                ImpersonationRequest.state == RequestState.PENDING.value,
                ImpersonationRequest.pending_expires_at <= now,
            )
        ).scalars().all()
    return sum(1 for request_id in due if approvals.expire_pending_request(ctx, request_id, now=now) is not None)


def expire_pending_extensions(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Asks for more time nobody decided are expired like pending requests: past their TTL,
    or once their session is no longer live (extensions.expire_pending_extension: audited
    `extension.expired`, every approver's DM and the agent's session DM edited)."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        due = db.execute(
            select(Extension.id)
            .join(ImpersonationSession, ImpersonationSession.id == Extension.session_id)
            .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
            .where(
                Extension.state == "pending",
                or_(
                    Extension.pending_expires_at <= now,
                    ImpersonationRequest.state != RequestState.ACTIVE.value,
                    ImpersonationSession.expires_at <= now,
                ),
            )
        ).scalars().all()
    return sum(1 for extension_id in due if extensions.expire_pending_extension(ctx, extension_id, now=now) is not None)


def nudge_pending_approvals(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Requests and extensions nobody has decided yet, past their reminder or escalation
    point: unanswered approvers are reminded, the escalation group is asked
    (asks.nudge_approvers, each once per ask however many schedulers run)."""
    now = now or utcnow()
    return sum(1 for subject_id in asks.asks_to_nudge(ctx, now=now) if asks.nudge_approvers(ctx, subject_id, now=now) is not None)


def lapse_links(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Grants whose link was never redeemed within its window become `lapsed` (audited
    `link.lapsed`); the agent's link DM is edited so it no longer offers a dead link, and the
    feed shows the grant lapsed."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        due = db.execute(
            select(ImpersonationRequest.id)
            .join(Link, Link.request_id == ImpersonationRequest.id)
            .where(ImpersonationRequest.state == RequestState.GRANTED.value, Link.redeemed_at.is_(None), Link.expires_at <= now)
        ).scalars().all()
    lapsed = 0
    for request_id in due:
        with ctx.sessions() as db, db.begin():
            request = db.get(ImpersonationRequest, request_id)
            link = db.execute(select(Link).where(Link.request_id == request_id)).scalar_one_or_none()
            if request is None or link is None or link.redeemed_at is not None or link.expires_at > now:
                continue
            try:
                transition(
                    db,
                    request,
                    source=RequestState.GRANTED,
                    target=RequestState.LAPSED,
                    event=EventDraft.about(
                        request,
                        "link.lapsed",
                        actor=Actor.system("clock"),
                        details={"link_expired_at": audit.format_time(link.expires_at)},
                    ),
                    now=now,
                )
            except TransitionRefused:
                db.rollback()
                continue
            outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now)
            outbox.enqueue(db, outbox.Kind.FEED, request.id, now=now)
            lapsed += 1
    return lapsed


# ---------------------------------------------------------------------------- views for rendering


class FeedStatus:
    GRANTED = "granted"
    LIVE = "live"
    ENDED = "ended"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LAPSED = "lapsed"


@dataclass(frozen=True)
class FeedView:
    """The security channel's live message about one grant."""

    request: RequestView
    session: SessionView | None
    #: granted (link not yet opened) | live | ended | expired | revoked | lapsed
    status: str
    #: who approved, in order; empty when the policy granted it or break-glass skipped approval
    approvers: tuple[str, ...]
    #: the expiry warning went out for the session's current end
    warned: bool
    #: when the link lapsed / the session ended, and who ended it
    closed_at: datetime | None
    closed_by: str | None


_OVER = {
    RequestState.ENDED.value: FeedStatus.ENDED,
    RequestState.EXPIRED.value: FeedStatus.EXPIRED,
    RequestState.REVOKED.value: FeedStatus.REVOKED,
}


def feed_view(ctx: DomainContext, request_id: str, *, now: datetime | None = None) -> FeedView | None:
    """None for a request that was never granted (the feed shows grants only). Read as
    snapshots (bot/domain/snapshots.py): this renders on every delivery of a feed message."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        snapshot = request_snapshot(db, request_id)
        if snapshot is None:
            return None
        request = snapshot.view
        if request.state in (RequestState.PENDING.value, RequestState.DENIED.value, RequestState.CANCELLED.value):
            return None
        session = session_of(db, request)
        if session is None and request.state == RequestState.EXPIRED.value:
            return None  # a pending request that expired: it was never granted
        approvers = tuple(
            db.execute(
                select(Approval.approver_slack_id)
                .where(Approval.subject_id == request_id, Approval.decision == "approve")
                .order_by(Approval.id)
            ).scalars()
        )
        closed_at = closed_by = None
        warned = False
        if session is None:
            status = FeedStatus.LAPSED if request.state == RequestState.LAPSED.value else FeedStatus.GRANTED
            if status == FeedStatus.LAPSED:
                closed_at = snapshot.updated_at
        elif is_live(session, now):
            status = FeedStatus.LIVE
            warned = claimed(db, WARNING_JOB, _warning_key(session.id, session.expires_at))
        else:
            status = _OVER.get(request.state, FeedStatus.EXPIRED)
            closed_at = session.ended_at or session.expires_at
            closed_by = session.ended_by
        return FeedView(
            request=request,
            session=session,
            status=status,
            approvers=approvers,
            warned=warned,
            closed_at=closed_at,
            closed_by=closed_by,
        )


@dataclass(frozen=True)
class AgentNews:
    """What the agent's DM about a request should show now. Exactly one field is set, or none
    when the DM must be left alone (pending: its Cancel button; granted: it holds the link)."""

    live: SessionView | None = None
    over: SessionView | None = None
    lapsed: RequestView | None = None
    decided: Decided | None = None
    #: with `live`: more time is waiting for approval (the DM says who was asked)
    extension_ask: ApprovalAsk | None = None


def agent_news(ctx: DomainContext, request_id: str, *, now: datetime | None = None) -> AgentNews:
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        # snapshots, not ORM objects (bot/domain/snapshots.py): on every delivery of the DM
        snapshot = request_snapshot(db, request_id)
        if snapshot is None:
            return AgentNews()
        request = snapshot.view
        session = session_of(db, request)
        if session is not None:
            if not is_live(session, now):
                return AgentNews(over=session)
            return AgentNews(live=session, extension_ask=extensions.pending_extension_ask(db, session.id))
        if request.state == RequestState.LAPSED.value:
            return AgentNews(lapsed=request)
        if request.state in (RequestState.EXPIRED.value, RequestState.DENIED.value, RequestState.CANCELLED.value):
            return AgentNews(decided=approvals.outcome_of(db, db.get_one(ImpersonationRequest, request_id)))
        return AgentNews()


def session_view(ctx: DomainContext, session_id: str) -> SessionView | None:
    with reading(ctx.sessions) as db:
        session = db.get(ImpersonationSession, session_id)
        return SessionView.of(session) if session is not None else None


def is_live(session: SessionView, now: datetime) -> bool:
    return session.state == RequestState.ACTIVE.value and now < session.expires_at
