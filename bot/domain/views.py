"""Read-only snapshots of domain objects handed to the Slack and web faces for rendering.
Plain data: the faces never touch ORM objects or the database."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# RequestState, SessionScope and AccountFlag name the values a view's `state`, `scope` and
# `account_flags` hold; they are re-exported (`X as X`) so that the faces compare against them
# through the domain and nothing above it imports the database layer (tests/domain/test_layers.py).
from bot.db.models import AccountFlag as AccountFlag
from bot.db.models import ImpersonationRequest, ImpersonationSession
from bot.db.models import RequestState as RequestState
from bot.db.models import SessionScope as SessionScope


def minutes_between(earlier: datetime, later: datetime) -> int:
    """Whole minutes from `earlier` to `later`, rounded up (never below 0)."""
    seconds = max(0.0, (later - earlier).total_seconds())
    return -int(-seconds // 60)


@dataclass(frozen=True)
class RequestView:
    id: str
    state: str
    agent_slack_id: str
    agent_tz: str | None
    account: str
    account_name: str
    account_flags: frozenset[str]
    customer_user: str
    customer_user_name: str
    customer_user_email: str
    reason: str
    ticket: str | None
    duration_minutes: int
    scope: str
    gated_by: frozenset[str]
    created_at: datetime
    agent_channel: str | None
    agent_message_ts: str | None
    approvals_required: int = 0
    pending_expires_at: datetime | None = None
    previous_session_id: str | None = None
    break_glass: bool = False
    #: 0 for a fresh request; N for the Nth re-initiation in a row (docs/policy.md)
    reinitiation_ordinal: int = 0
    #: when the session it re-initiates ended
    previous_session_ended_at: datetime | None = None
    #: the justification code chosen from the policy's list (None before there was one)
    justification: str | None = None

    @property
    def minutes_after_previous(self) -> int | None:
        """Whole minutes, rounded up, from the previous session's end to this request: a
        re-initiation 40 seconds after the end came "within 1 min"; None for a fresh request."""
        if not self.reinitiation_ordinal or self.previous_session_ended_at is None:
            return None
        return max(1, minutes_between(self.previous_session_ended_at, self.created_at))

    @classmethod
    def of(cls, request: ImpersonationRequest) -> RequestView:
        return cls.of_columns(
            request,
            account=request.account.external_id,
            account_name=request.account.name,
            account_flags=request.account.flag_names(),
            customer_user=request.customer_user.external_id,
            customer_user_name=request.customer_user.name,
            customer_user_email=request.customer_user.email,
        )

    @classmethod
    def of_columns(
        cls,
        request: Any,
        *,
        account: str,
        account_name: str,
        account_flags: frozenset[str],
        customer_user: str,
        customer_user_name: str,
        customer_user_email: str,
    ) -> RequestView:
        """From the request's own columns, read by name from an ORM object or a Core row
        (bot/domain/snapshots.py), and what its account and customer user say."""
        return cls(
            id=request.id,
            state=request.state,
            agent_slack_id=request.agent_slack_id,
            agent_tz=request.agent_tz,
            account=account,
            account_name=account_name,
            account_flags=account_flags,
            customer_user=customer_user,
            customer_user_name=customer_user_name,
            customer_user_email=customer_user_email,
            reason=request.reason,
            ticket=request.ticket,
            duration_minutes=request.duration_minutes,
            scope=request.scope,
            gated_by=frozenset(filter(None, request.gated_by.split(","))),
            created_at=request.created_at,
            agent_channel=request.agent_channel,
            agent_message_ts=request.agent_message_ts,
            approvals_required=request.approvals_required or 0,
            pending_expires_at=request.pending_expires_at,
            previous_session_id=request.previous_session_id,
            break_glass=bool(request.break_glass),
            reinitiation_ordinal=request.reinitiation_ordinal or 0,
            previous_session_ended_at=request.previous_session_ended_at,
            justification=request.justification,
        )


@dataclass(frozen=True)
class SessionView:
    id: str
    request: RequestView
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    ended_by: str | None
    #: the product it was launched into (None: none was configured)
    product: str | None = None

    @property
    def state(self) -> str:
        return self.request.state

    @classmethod
    def of(cls, session: ImpersonationSession) -> SessionView:
        return cls(
            id=session.id,
            request=RequestView.of(session.request),
            started_at=session.started_at,
            expires_at=session.expires_at,
            ended_at=session.ended_at,
            end_reason=session.end_reason,
            ended_by=session.ended_by,
            product=session.product,
        )


@dataclass(frozen=True)
class IssuedLink:
    """The one moment the plaintext token exists: it goes into the agent's DM and is then
    forgotten. Its repr hides the URL so it can never reach a log by accident."""

    url: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"IssuedLink(url=<redacted>, expires_at={self.expires_at.isoformat()})"
