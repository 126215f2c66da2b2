"""A request read for a hot path with one Core SELECT, not the ORM.

`db.get(ImpersonationRequest, id)` joins the account and the customer user and then loads the
account's flags with a second, select-in query, building three kinds of ORM objects and their
identity-map bookkeeping for a snapshot that is read once. On the link redemption that load
was about a third of the web worker's CPU (py-spy, bench/http_bench.py).
This reads the same columns as one row and builds the RequestView with the constructor
`RequestView.of` uses (`of_columns`); tests/domain/test_snapshots.py holds the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from bot.db.models import Account, AccountFlagSetting, CustomerUser, ImpersonationRequest, ImpersonationSession
from bot.domain.views import RequestView, SessionView

_R = ImpersonationRequest

#: built once (statement construction is costly on hot paths); one row or none
_REQUEST = (
    select(
        _R.id,
        _R.state,
        _R.agent_slack_id,
        _R.agent_email,
        _R.agent_role,
        _R.agent_tz,
        _R.account_id,
        Account.external_id.label("account"),
        Account.name.label("account_name"),
        CustomerUser.external_id.label("customer_user"),
        CustomerUser.name.label("customer_user_name"),
        CustomerUser.email.label("customer_user_email"),
        _R.reason,
        _R.ticket,
        _R.duration_minutes,
        _R.scope,
        _R.gated_by,
        _R.created_at,
        _R.agent_channel,
        _R.agent_message_ts,
        _R.approvals_required,
        _R.pending_expires_at,
        _R.previous_session_id,
        _R.break_glass,
        _R.reinitiation_ordinal,
        _R.previous_session_ended_at,
        _R.justification,
        _R.updated_at,
        # the account's flags in the same round trip: string_agg on PostgreSQL, group_concat
        # on SQLite (SQLAlchemy's aggregate_strings); flag names never contain a comma
        # (the table's CHECK constraint lists them)
        select(func.aggregate_strings(AccountFlagSetting.flag, ","))
        .where(AccountFlagSetting.account_id == _R.account_id)
        .scalar_subquery()
        .label("flags"),
    )
    .join(Account, Account.id == _R.account_id)
    .join(CustomerUser, CustomerUser.id == _R.customer_user_id)
    .where(_R.id == bindparam("request_id"))
)


@dataclass(frozen=True)
class RequestSnapshot:
    """What a hot path needs of one request: its view, and the facts about the agent and the
    account that the view leaves out (the audit actor, the session row's account)."""

    view: RequestView
    account_id: int
    agent_email: str | None
    agent_role: str
    #: when the request last changed state (a lapsed link's feed message shows it)
    updated_at: datetime

    # the attributes Actor.agent_of reads
    @property
    def agent_slack_id(self) -> str:
        return self.view.agent_slack_id

    @property
    def id(self) -> str:
        return self.view.id


def request_snapshot(db: Session, request_id: str) -> RequestSnapshot | None:
    """The request as it is in this transaction (None if there is no such request)."""
    row = db.execute(_REQUEST, {"request_id": request_id}).one_or_none()
    if row is None:
        return None
    view = RequestView.of_columns(
        row,
        account=row.account,
        account_name=row.account_name,
        account_flags=frozenset(filter(None, (row.flags or "").split(","))),
        customer_user=row.customer_user,
        customer_user_name=row.customer_user_name,
        customer_user_email=row.customer_user_email,
    )
    return RequestSnapshot(view=view, account_id=row.account_id, agent_email=row.agent_email, agent_role=row.agent_role, updated_at=row.updated_at)


_S = ImpersonationSession
#: a request's session (at most one: sessions.request_id is unique)
_SESSION = select(_S.id, _S.started_at, _S.expires_at, _S.ended_at, _S.end_reason, _S.ended_by, _S.product).where(_S.request_id == bindparam("request_id"))


def session_of(db: Session, request: RequestView) -> SessionView | None:
    """The session a request was redeemed into, None before its redemption: one Core SELECT
    (the agent's DM and the security feed render this on every delivery)."""
    row = db.execute(_SESSION, {"request_id": request.id}).one_or_none()
    if row is None:
        return None
    return SessionView(
        id=row.id, request=request, started_at=row.started_at, expires_at=row.expires_at,
        ended_at=row.ended_at, end_reason=row.end_reason, ended_by=row.ended_by, product=row.product,
    )
