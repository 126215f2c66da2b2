"""The App Home tab: what each person sees of the tool, from their powers in the policy, and
when it is published again.

- **Opening** the tab (Slack's `app_home_opened`) records the person (`home_tabs`, with
  whether their Home shows security's view) and owes their Home a publish through the
  outbox, in one transaction: the event is answered at once, the publish follows.
- **Changes**: every outbox row that changes what a Home shows (outbox.HOME_SOURCES) owes,
  in its own transaction, a publish of the Homes it concerns — a DM's recipient's, and for a
  row to the security channel every Home showing security's view. At most one publish per
  person per second (outbox pacing); rows waiting meanwhile merge into the next, which
  renders the state as it is then. Nobody's Home is published unless they opened it once.
- **What it shows** (`home_view`, read at delivery): to agents their live sessions, pending
  requests and last requests; to approvers the requests waiting for them; to security the
  live sessions across accounts, the alerts of the last day and the last checkpoint; to log
  readers an account search; to flag holders the flag form. Powers are read at that moment,
  so a person who lost one no longer sees what it showed at the next publish. Every button
  carries an id only and is decided again when clicked.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from bot.db.engine import reading
from bot.db.models import Alert, AuditEvent, HomeTab, ImpersonationRequest, ImpersonationSession, RequestState
from bot.domain import anomalies, asks, checkpoint_job, outbox
from bot.domain.anomalies import AlertView
from bot.domain.approvals import ApprovalAsk
from bot.domain.checkpoints import Checkpoint
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.once import insert_once
from bot.domain.policy import Powers, powers_of
from bot.domain.views import RequestView, SessionView

#: how much of each list a Home shows (a Home view holds at most 100 blocks)
LIVE_SHOWN = 5
PENDING_SHOWN = 5
RECENT_SHOWN = 10
QUEUE_SHOWN = 10
SECURITY_LIVE_SHOWN = 10
ALERTS_SHOWN = 10
#: alerts raised this recently are shown as open (alerts have no state of their own)
OPEN_ALERT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class AgentHome:
    live: tuple[SessionView, ...]
    pending: tuple[RequestView, ...]
    #: their last requests, newest first, with how each ended up (request state)
    recent: tuple[RequestView, ...]
    can_request_extension: bool


@dataclass(frozen=True)
class SecurityHome:
    live: tuple[SessionView, ...]
    live_total: int
    alerts: tuple[AlertView, ...]
    checkpoint: Checkpoint | None


@dataclass(frozen=True)
class HomeView:
    slack_id: str
    tz: str | None
    now: datetime
    powers: Powers | None
    agent: AgentHome | None = None
    queue: tuple[ApprovalAsk, ...] | None = None
    security: SecurityHome | None = None

    @property
    def can_view_log(self) -> bool:
        return bool(self.powers and self.powers.can_view_log)

    @property
    def can_flag_accounts(self) -> bool:
        return bool(self.powers and self.powers.can_flag_accounts)


def sees_security(powers: Powers | None) -> bool:
    """Whose Home shows security's view: the holders of `can_revoke`."""
    return bool(powers and powers.can_revoke)


def opened(ctx: DomainContext, slack_id: str, *, now: datetime | None = None) -> str:
    """The person opened their Home tab: remember them (and whether their Home shows
    security's view, from their powers now) and owe their Home a publish. Returns the outbox
    target, for an immediate delivery after the event is answered."""
    now = now or utcnow()
    security = sees_security(powers_of(ctx.policy, slack_id, ctx.groups))
    with ctx.sessions() as db, db.begin():
        values = {"slack_id": slack_id, "opened_at": now, "sees_security": security}
        if not insert_once(db, HomeTab, values):
            db.execute(update(HomeTab).where(HomeTab.slack_id == slack_id).values(opened_at=now, sees_security=security))
        return outbox.enqueue_home(db, slack_id, now=now)


def may_view_log(ctx: DomainContext, slack_id: str) -> bool:
    """Whether the Home's account search may offer accounts (the answer is decided again)."""
    powers = powers_of(ctx.policy, slack_id, ctx.groups)
    return bool(powers and powers.can_view_log)


def home_view(ctx: DomainContext, slack_id: str, *, now: datetime | None = None) -> HomeView:
    """What this person's Home shows now, and nothing their powers do not allow."""
    now = now or utcnow()
    powers = powers_of(ctx.policy, slack_id, ctx.groups)
    tz = ctx.people.person(slack_id).tz
    with reading(ctx.sessions) as db:
        agent = _agent_home(db, slack_id, powers, now) if powers and powers.can_impersonate else None
        queue = tuple(asks.waiting_for(db, slack_id, now=now, limit=QUEUE_SHOWN)) if powers and powers.can_approve else None
        found = _security_home(db, now) if sees_security(powers) else None
    security = None
    if found is not None:
        alerts = tuple(anomalies.alert_views(ctx, found.alert_ids, now=now)) if found.alert_ids else ()
        checkpoint = checkpoint_job.checkpoint_for(ctx, str(found.checkpoint_seq)) if found.checkpoint_seq is not None else None
        security = SecurityHome(found.live, found.live_total, alerts, checkpoint)
    return HomeView(slack_id, tz, now, powers, agent, queue, security)


def _live_sessions(db, now: datetime, *, agent: str | None, limit: int) -> tuple[list[SessionView], int]:
    live = (
        select(ImpersonationSession)
        .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
        .where(ImpersonationRequest.state == RequestState.ACTIVE.value, ImpersonationSession.expires_at > now)
    )
    if agent is not None:
        live = live.where(ImpersonationSession.agent_slack_id == agent)
    total = db.execute(select(func.count()).select_from(live.subquery())).scalar_one()
    rows = db.execute(live.order_by(ImpersonationSession.expires_at).limit(limit)).unique().scalars()
    return [SessionView.of(s) for s in rows], total


def _agent_home(db, slack_id: str, powers: Powers, now: datetime) -> AgentHome:
    live, _ = _live_sessions(db, now, agent=slack_id, limit=LIVE_SHOWN)
    mine = select(ImpersonationRequest).where(ImpersonationRequest.agent_slack_id == slack_id)
    pending = db.execute(
        mine.where(ImpersonationRequest.state == RequestState.PENDING.value).order_by(ImpersonationRequest.created_at.desc()).limit(PENDING_SHOWN)
    ).unique().scalars()
    recent = db.execute(mine.order_by(ImpersonationRequest.created_at.desc()).limit(RECENT_SHOWN)).unique().scalars()
    return AgentHome(tuple(live), tuple(RequestView.of(r) for r in pending), tuple(RequestView.of(r) for r in recent), powers.can_request_extension)


@dataclass(frozen=True)
class _SecurityFound:
    live: tuple[SessionView, ...]
    live_total: int
    alert_ids: tuple[str, ...]
    #: the newest `audit.checkpoint` event (made only over a chain that verified)
    checkpoint_seq: int | None


def _security_home(db, now: datetime) -> _SecurityFound:
    live, total = _live_sessions(db, now, agent=None, limit=SECURITY_LIVE_SHOWN)
    alerts = db.execute(
        select(Alert.id).where(Alert.raised_at > now - OPEN_ALERT_WINDOW).order_by(Alert.raised_at.desc()).limit(ALERTS_SHOWN)
    ).scalars()
    checkpoint = db.execute(select(func.max(AuditEvent.seq)).where(AuditEvent.type == checkpoint_job.EVENT)).scalar_one_or_none()
    return _SecurityFound(tuple(live), total, tuple(alerts), checkpoint)
