"""Live sessions: checked at every use against `expires_at` (the scheduler only tidies, so a
stopped scheduler never extends access), and ended by their agent."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import ImpersonationSession, RequestState
from bot.domain import audit, outbox, webhooks
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.lifecycle import TransitionRefused, transition
from bot.domain.views import SessionView


class SessionStatus(str, enum.Enum):
    LIVE = "live"
    ENDED = "ended"
    EXPIRED = "expired"
    REVOKED = "revoked"


def status_at(session: ImpersonationSession, now: datetime) -> SessionStatus:
    """The truth about a session at `now`, whatever the scheduler has or hasn't done yet."""
    state = session.request.state
    if state == RequestState.ACTIVE.value:
        return SessionStatus.LIVE if now < session.expires_at else SessionStatus.EXPIRED
    return SessionStatus(state) if state in SessionStatus._value2member_map_ else SessionStatus.ENDED


@dataclass(frozen=True)
class SessionCheck:
    session: SessionView | None
    status: SessionStatus | None

    @property
    def live(self) -> bool:
        return self.status is SessionStatus.LIVE


def check_session(ctx: DomainContext, session_id: str, *, now: datetime | None = None) -> SessionCheck:
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        session = db.get(ImpersonationSession, session_id)
        if session is None:
            return SessionCheck(None, None)
        return SessionCheck(SessionView.of(session), status_at(session, now))


@dataclass(frozen=True)
class SessionEnded:
    """A session its agent ended (or found expired), with the outbox targets the end owed (the
    agent's DM, any expiry warning, the security feed), for the deliverer."""

    session: SessionView
    targets: tuple[str, ...]


class EndRefused(Exception):
    def __init__(self, message: str, session: SessionView | None = None) -> None:
        super().__init__(message)
        self.session = session


def close_session(
    db: Session, session: ImpersonationSession, *, target: RequestState, actor: Actor, now: datetime, details: dict
) -> tuple[str, ...]:
    """End a live session in `db`'s transaction: the state move with its audit event and the
    messages it owes — the one path for ending, expiring and revoking. Returns the outbox
    targets it owed."""
    request = session.request
    end_at = min(now, session.expires_at)
    transition(
        db,
        request,
        source=RequestState.ACTIVE,
        target=target,
        event=EventDraft.about(request, f"session.{target.value}", actor=actor, session_id=session.id, details={"ended_at": audit.format_time(end_at), **details}),
        now=now,
    )
    session.ended_at, session.end_reason, session.ended_by = end_at, target.value, actor.slack_id
    # The agent's DM, any expiry warning and the security feed are edited through the outbox,
    # committed with this change; so is the notification to the account's subscribers.
    targets = outbox.enqueue_session_over(db, request, session.id, revoked=target is RequestState.REVOKED, now=now)
    webhooks.session_over(
        db,
        session_id=session.id,
        request_id=request.id,
        account=request.account.external_id,
        customer_user=request.customer_user.external_id,
        agent=request.agent_email or request.agent_slack_id,
        end_reason=target.value,
        ended_by=actor.email or actor.slack_id or actor.role,
        started_at=session.started_at,
        ended_at=end_at,
        now=now,
    )
    return tuple(targets)


def audit_not_the_agent(db: Session, session: ImpersonationSession, *, event_type: str, actor_slack_id: str, now: datetime) -> None:
    """Someone clicked a button of a session that is not theirs (a forged value: the buttons
    are in the agent's own DM): refused, and recorded with the cause `not_the_agent`."""
    audit.append(
        db,
        EventDraft(
            type=event_type,
            actor=Actor(slack_id=actor_slack_id),
            account=session.request.account.external_id,
            request_id=session.request_id,
            session_id=session.id,
            details={"cause": "not_the_agent"},
        ),
        now=now,
    )


def end_session(ctx: DomainContext, session_id: str, *, actor_slack_id: str, now: datetime | None = None) -> SessionEnded:
    """The agent ends their own live session. Re-checked at click time: only the session's
    agent may end it here (security revokes instead), and only while it is live.
    A session already past its end is recorded as expired, not ended."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        session = db.get(ImpersonationSession, session_id)
        if session is None:
            raise EndRefused("That session does not exist.")
        if session.agent_slack_id != actor_slack_id:
            audit_not_the_agent(db, session, event_type="session.end_refused", actor_slack_id=actor_slack_id, now=now)
            # Commit before raising: leaving db.begin() by an exception would roll back the
            # audit event, and the refused attempt must stay in the log.
            db.commit()
            raise EndRefused("Only the agent who opened this session can end it.")
        agent = Actor.agent_of(session.request)
        status = status_at(session, now)
        try:
            if status is SessionStatus.LIVE:
                targets = close_session(db, session, target=RequestState.ENDED, actor=agent, now=now, details={})
            elif status is SessionStatus.EXPIRED and session.request.state == RequestState.ACTIVE.value:
                targets = close_session(db, session, target=RequestState.EXPIRED, actor=Actor.system("clock"), now=now, details={})
            else:
                raise EndRefused("This session is already over.", SessionView.of(session))
        except TransitionRefused:
            db.rollback()
            raise EndRefused("This session is already over.") from None
        db.flush()
        return SessionEnded(SessionView.of(session), targets)


def session_for_request(ctx: DomainContext, request_id: str) -> SessionView | None:
    with reading(ctx.sessions) as db:
        session = db.execute(select(ImpersonationSession).where(ImpersonationSession.request_id == request_id)).scalar_one_or_none()
        return SessionView.of(session) if session else None
