"""Revocation: security ends someone's live session, from an alert's or the
feed's **Revoke session** button or with `/impersonate revoke <session>`.

The power is checked at the moment of the click or command (the policy's `can_revoke`,
through the clicker's current roles and groups), never taken from the message. Every
refusal is audited (`session.revoke_refused`) like the revocation itself
(`session.revoked`). The state moves through the lifecycle in one transaction with the
outbox rows that tell the agent, so the product API (sessions.status_at) reports the
session revoked from the moment that transaction commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Alert, ImpersonationRequest, ImpersonationSession, RequestState
from bot.domain import audit
from bot.domain.anomalies import related_live_sessions
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.lifecycle import TransitionRefused
from bot.domain.policy import powers_of
from bot.domain.sessions import SessionStatus, close_session, status_at
from bot.domain.views import SessionView

#: where a revocation came from, recorded in its audit event ("account_opted_out": the account
#: opted out of impersonation while the session was live; "home": security's Home tab)
SOURCES = ("alert", "feed", "command", "account_opted_out", "home")


@dataclass(frozen=True)
class Revoked:
    session: SessionView
    #: the outbox targets of this change (for an immediate delivery)
    targets: tuple[str, ...]


@dataclass(frozen=True)
class RevokeRefused:
    message: str
    cause: str
    session: SessionView | None = None


REFUSALS = {
    "not_permitted": "You do not hold a role that can revoke sessions. Ask in the security channel; `/impersonate help` lists what you can do.",
    "unknown_session": "There is no session with that id. The security channel's feed and your Home tab show the live sessions.",
    "not_live": "This session is already over; there is nothing to revoke.",
    "unknown_alert": "There is no alert with that id.",
    "none_live": "None of this alert's sessions is live any more; there is nothing to revoke.",
}


@dataclass(frozen=True)
class RevokedAll:
    """Every session an alert is about that was live at the click, revoked."""

    alert_id: str
    revoked: tuple[Revoked, ...]

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(target for one in self.revoked for target in one.targets)


def revoke_alert_sessions(
    ctx: DomainContext, alert_id: str, *, actor_slack_id: str, now: datetime | None = None
) -> RevokedAll | RevokeRefused:
    """**Revoke all** on an alert: the button carries the alert id only; the sessions are
    reloaded now (anomalies.related_live_sessions — all of them, not just those the message
    showed) and the clicker's `can_revoke` is checked now. Each session is revoked as by its
    own button (audited `session.revoked`, source "alert", the agent told), in one
    transaction, so either all that were live are revoked or none; a refusal is audited."""
    now = now or utcnow()
    powers = powers_of(ctx.policy, actor_slack_id, ctx.groups)
    person = ctx.people.person(actor_slack_id)
    actor = Actor(slack_id=actor_slack_id, email=person.email, role=powers.role if powers else None)
    with ctx.sessions() as db, db.begin():
        alert = db.get(Alert, alert_id) if alert_id else None

        def refuse(cause: str) -> RevokeRefused:
            audit.append(
                db,
                EventDraft(
                    type="session.revoke_refused",
                    actor=actor,
                    account=alert.account if alert is not None else None,
                    details={"cause": cause, "source": "alert", "alert_id": (alert_id or "")[:36]},
                ),
                now=now,
            )
            return RevokeRefused(REFUSALS[cause], cause)

        if not (powers and powers.can_revoke):
            return refuse("not_permitted")
        if alert is None:
            return refuse("unknown_alert")
        statement = related_live_sessions(alert, now)
        live = (
            db.execute(statement.order_by(ImpersonationSession.started_at).with_for_update(of=ImpersonationSession)).unique().scalars().all()
            if statement is not None
            else []
        )
        live = [session for session in live if status_at(session, now) is SessionStatus.LIVE]
        if not live:
            return refuse("none_live")
        return RevokedAll(alert.id, tuple(_close_revoked(db, session, actor=actor, source="alert", now=now) for session in live))


def revoke_session(
    ctx: DomainContext, session_id: str, *, actor_slack_id: str, source: str, now: datetime | None = None
) -> Revoked | RevokeRefused:
    if source not in SOURCES:
        raise ValueError(f"unknown revocation source {source!r}")
    now = now or utcnow()
    powers = powers_of(ctx.policy, actor_slack_id, ctx.groups)
    person = ctx.people.person(actor_slack_id)
    actor = Actor(slack_id=actor_slack_id, email=person.email, role=powers.role if powers else None)
    try:
        return _revoke(ctx, session_id, actor=actor, can_revoke=bool(powers and powers.can_revoke), source=source, now=now)
    except TransitionRefused:
        # Ended or expired between the read and the update: nothing was revoked. Say so, and
        # keep the refusal in the log (the first transaction was rolled back).
        return _revoke(ctx, session_id, actor=actor, can_revoke=False, source=source, now=now, cause="not_live")


def _revoke(
    ctx: DomainContext, session_id: str, *, actor: Actor, can_revoke: bool, source: str, now: datetime, cause: str | None = None
) -> Revoked | RevokeRefused:
    with ctx.sessions() as db, db.begin():
        session = (
            db.execute(
                select(ImpersonationSession).where(ImpersonationSession.id == session_id).with_for_update(of=ImpersonationSession)
            ).unique().scalar_one_or_none()
            if session_id
            else None
        )

        def refuse(cause: str) -> RevokeRefused:
            request = session.request if session is not None else None
            audit.append(
                db,
                EventDraft(
                    type="session.revoke_refused",
                    actor=actor,
                    account=request.account.external_id if request else None,
                    customer_user=request.customer_user.external_id if request else None,
                    request_id=request.id if request else None,
                    session_id=session.id if session is not None else None,
                    details={"cause": cause, "source": source, **({} if session is not None else {"session_given": session_id[:36]})},
                ),
                now=now,
            )
            return RevokeRefused(REFUSALS[cause], cause, SessionView.of(session) if session is not None else None)

        if cause is not None:
            return refuse(cause)
        if not can_revoke:
            return refuse("not_permitted")
        if session is None:
            return refuse("unknown_session")
        if status_at(session, now) is not SessionStatus.LIVE:
            return refuse("not_live")
        return _close_revoked(db, session, actor=actor, source=source, now=now)


def _close_revoked(db: Session, session: ImpersonationSession, *, actor: Actor, source: str, now: datetime) -> Revoked:
    """Revoke one live, locked session: the state move, its audit event and the messages it
    owes (the agent's DM and notice, any expiry warning, the security feed), in `db`'s
    transaction."""
    targets = close_session(db, session, target=RequestState.REVOKED, actor=actor, now=now, details={"source": source})
    return Revoked(SessionView.of(session), targets)


def revoke_live_sessions_on_account(db: Session, account_id: int, *, actor: Actor, source: str, now: datetime) -> list[Revoked]:
    """Revoke every session live on the account at `now`, in `db`'s transaction (the change
    that calls for it commits with the revocations or not at all). The rows are locked, so a
    session ended or expired meanwhile by someone else is not revoked a second time."""
    if source not in SOURCES:
        raise ValueError(f"unknown revocation source {source!r}")
    live = (
        db.execute(
            select(ImpersonationSession)
            .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
            .where(
                ImpersonationSession.account_id == account_id,
                ImpersonationSession.ended_at.is_(None),
                ImpersonationSession.expires_at > now,
                ImpersonationRequest.state == RequestState.ACTIVE.value,
            )
            .order_by(ImpersonationSession.started_at)
            .with_for_update(of=ImpersonationSession)
        )
        .unique()
        .scalars()
        .all()
    )
    return [_close_revoked(db, session, actor=actor, source=source, now=now) for session in live if status_at(session, now) is SessionStatus.LIVE]
