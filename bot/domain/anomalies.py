"""Anomaly rules and alerts.

Each rule is a pure function from facts (the result of a few aggregate queries) and the
policy's thresholds to findings, so the rules are tested with a table
(tests/domain/test_anomalies.py) and the queries separately. Rules are checked when a request
is made (scoped to its agent and account) and by the scheduler's sweep (everything recent).

A finding becomes an alert at most once per rule and subject within the rule's window: the
`alert_marks` row for (rule, subject) is inserted once, or moved forward by a conditional
UPDATE only when its window has passed, so two sweeps at once raise it once. An alert is
stored, audited (`alert.raised`) and owed to the security channel through the outbox, all in
one transaction; a storm of them is coalesced into summaries there (bot/domain/outbox.py).

A "grant" below is a request that was granted: it has exactly one link row, created at the
grant, so grants are counted through `links`.
"""
from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import distinct, func, select, update
from sqlalchemy.orm import Session

from bot.db.base import affected_rows
from bot.db.engine import reading
from bot.db.models import (
    Account,
    AccountFlagSetting,
    Alert,
    AlertMark,
    AuditEvent,
    ImpersonationRequest,
    ImpersonationSession,
    Link,
    RequestState,
)
from bot.domain import audit, outbox
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.once import insert_once
from bot.domain.policy import WEEKDAYS, AlertsConfig, BusinessHoursConfig, clock_minutes
from bot.domain.timezones import local

log = logging.getLogger(__name__)

DAY = timedelta(hours=24)
#: per-request rules alert once per request: a window longer than any request lives
ONCE = timedelta(days=366)
#: raised at every occurrence (an account opting out is told each time it happens)
EVERY_TIME = timedelta(0)


class Rule(str, enum.Enum):
    ACCOUNT_BURST = "account_burst"
    AGENT_SPREAD = "agent_spread"
    OFF_HOURS = "off_hours"
    FLAGGED_ACCOUNT = "flagged_account"
    REPEATED_REFUSALS = "repeated_refusals"
    LINK_REPLAY = "link_replay"
    OPTED_OUT_ATTEMPT = "opted_out_attempt"
    CONCENTRATION = "concentration"
    #: someone other than the agent signed in with Slack to use the agent's link
    LINK_IDENTITY_MISMATCH = "link_identity_mismatch"
    #: not an anomaly but a notice security must see: an account opted out of impersonation
    #: by contract (raised by bot/domain/account_flags.py, each time it is set)
    ACCOUNT_OPTED_OUT = "account_opted_out"


def window_of(rule: Rule, config: AlertsConfig) -> timedelta:
    """How long an alert about one subject silences the same rule for that subject."""
    if rule is Rule.CONCENTRATION:
        return timedelta(days=config.concentration_days)
    if rule is Rule.ACCOUNT_OPTED_OUT:
        return EVERY_TIME
    if rule in (Rule.OFF_HOURS, Rule.FLAGGED_ACCOUNT, Rule.LINK_REPLAY, Rule.LINK_IDENTITY_MISMATCH):
        return ONCE
    return DAY


@dataclass(frozen=True)
class Finding:
    rule: Rule
    #: the deduplication subject: an account, an agent, a request, or agent+account
    subject: str
    facts: Mapping[str, Any]
    account: str | None = None
    agent: str | None = None
    request_id: str | None = None
    session_id: str | None = None


# ---------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class GrantFact:
    """One recent grant (and its session, once redeemed)."""

    request_id: str
    agent: str
    agent_tz: str | None
    account: str
    account_flags: frozenset[str]
    granted_at: datetime
    session_id: str | None = None
    started_at: datetime | None = None


@dataclass(frozen=True)
class ReplayFact:
    request_id: str
    agent: str
    account: str
    attempts: int


@dataclass(frozen=True)
class OptedOutFact:
    agent: str
    account: str
    attempts: int


@dataclass(frozen=True)
class ShareFact:
    """An account's sessions over the concentration window, and its busiest agent's share."""

    account: str
    total: int
    top_agent: str
    top_count: int


@dataclass(frozen=True)
class Facts:
    grants_per_account: Mapping[str, int] = field(default_factory=dict)
    accounts_per_agent: Mapping[str, int] = field(default_factory=dict)
    grants: Sequence[GrantFact] = ()
    refusals_per_agent: Mapping[str, int] = field(default_factory=dict)
    replays: Sequence[ReplayFact] = ()
    opted_out: Sequence[OptedOutFact] = ()
    shares: Sequence[ShareFact] = ()


# ---------------------------------------------------------------------------- the rules (pure)


def outside_business_hours(moment: datetime, tz_name: str | None, hours: BusinessHoursConfig) -> bool:
    """Whether `moment` falls outside working hours on the agent's own clock (their Slack time
    zone; UTC when Slack gave none or an unknown one)."""
    here = local(moment, tz_name)
    minutes = here.hour * 60 + here.minute
    day = WEEKDAYS[here.weekday()]
    return day not in hours.days or not clock_minutes(hours.start) <= minutes < clock_minutes(hours.end)


def account_bursts(grants_per_account: Mapping[str, int], *, limit: int) -> list[Finding]:
    return [
        Finding(Rule.ACCOUNT_BURST, account, {"sessions_24h": count, "limit": limit}, account=account)
        for account, count in sorted(grants_per_account.items())
        if count > limit
    ]


def agent_spreads(accounts_per_agent: Mapping[str, int], *, limit: int) -> list[Finding]:
    return [
        Finding(Rule.AGENT_SPREAD, agent, {"accounts_24h": count, "limit": limit}, agent=agent)
        for agent, count in sorted(accounts_per_agent.items())
        if count > limit
    ]


def off_hours(grants: Iterable[GrantFact], hours: BusinessHoursConfig) -> list[Finding]:
    out = []
    for grant in grants:
        started = grant.started_at or grant.granted_at
        if outside_business_hours(started, grant.agent_tz, hours):
            out.append(
                Finding(
                    Rule.OFF_HOURS,
                    grant.request_id,
                    {"at": audit.format_time(started), "tz": grant.agent_tz or "UTC", "hours": f"{hours.start}-{hours.end}", "days": ",".join(hours.days)},
                    account=grant.account,
                    agent=grant.agent,
                    request_id=grant.request_id,
                    session_id=grant.session_id,
                )
            )
    return out


def flagged_accounts(grants: Iterable[GrantFact], flags: Iterable[str]) -> list[Finding]:
    watched = frozenset(flags)
    return [
        Finding(
            Rule.FLAGGED_ACCOUNT,
            grant.request_id,
            {"flags": sorted(grant.account_flags & watched)},
            account=grant.account,
            agent=grant.agent,
            request_id=grant.request_id,
            session_id=grant.session_id,
        )
        for grant in grants
        if grant.account_flags & watched
    ]


def repeated_refusals(refusals_per_agent: Mapping[str, int], *, limit: int) -> list[Finding]:
    return [
        Finding(Rule.REPEATED_REFUSALS, agent, {"refusals_24h": count, "limit": limit}, agent=agent)
        for agent, count in sorted(refusals_per_agent.items())
        if count >= limit
    ]


def link_identity_mismatch(*, request_id: str, agent: str, account: str, signed_in_user: str, signed_in_team: str | None) -> Finding:
    """A link reached someone else: they signed in with Slack to open it (links.require_slack_sign_in)
    and were refused. Raised when it happens, once per request."""
    facts = {"signed_in_user": signed_in_user, "signed_in_team": signed_in_team}
    return Finding(Rule.LINK_IDENTITY_MISMATCH, request_id, facts, account=account, agent=agent, request_id=request_id)


def link_replays(replays: Iterable[ReplayFact]) -> list[Finding]:
    return [
        Finding(Rule.LINK_REPLAY, r.request_id, {"attempts": r.attempts}, account=r.account, agent=r.agent, request_id=r.request_id)
        for r in replays
        if r.attempts > 0
    ]


def opted_out_attempts(attempts: Iterable[OptedOutFact]) -> list[Finding]:
    return [
        Finding(Rule.OPTED_OUT_ATTEMPT, f"{a.agent}:{a.account}", {"attempts_24h": a.attempts}, account=a.account, agent=a.agent)
        for a in attempts
        if a.attempts > 0
    ]


def concentrations(shares: Iterable[ShareFact], *, percent: int, min_sessions: int, days: int) -> list[Finding]:
    out = []
    for share in shares:
        # integer arithmetic: share ≥ percent ⇔ 100·top ≥ percent·total
        if share.total >= min_sessions and 100 * share.top_count >= percent * share.total:
            out.append(
                Finding(
                    Rule.CONCENTRATION,
                    share.account,
                    {"percent": 100 * share.top_count // share.total, "sessions": share.total, "by_agent": share.top_count, "days": days},
                    account=share.account,
                    agent=share.top_agent,
                )
            )
    return out


def evaluate(facts: Facts, config: AlertsConfig) -> list[Finding]:
    """Every rule over one set of facts."""
    return [
        *account_bursts(facts.grants_per_account, limit=config.max_sessions_per_account_24h),
        *agent_spreads(facts.accounts_per_agent, limit=config.max_accounts_per_agent_24h),
        *off_hours(facts.grants, config.business_hours),
        *flagged_accounts(facts.grants, config.session_flags),
        *repeated_refusals(facts.refusals_per_agent, limit=config.denials_per_agent_24h),
        *link_replays(facts.replays),
        *opted_out_attempts(facts.opted_out),
        *concentrations(facts.shares, percent=config.concentration_percent, min_sessions=config.concentration_min_sessions, days=config.concentration_days),
    ]


# ---------------------------------------------------------------------------- the queries


#: canonical JSON (audit.canonical_json) writes this pair exactly so: no spaces, sorted keys
_OPTED_OUT_CAUSE = '%"cause":"opted_out"%'


def gather(db: Session, config: AlertsConfig, *, now: datetime, agent: str | None = None, account: str | None = None) -> Facts:
    """The facts for every rule; scoped to one agent and/or one account (external id) when
    given (the check made at each request)."""
    since = now - DAY
    account_row = None
    if account is not None:
        account_row = db.execute(select(Account).where(Account.external_id == account)).scalar_one_or_none()

    def scoped(statement, *, by_account=True, by_agent=True):
        if by_account and account is not None:
            statement = statement.where(ImpersonationRequest.account_id == (account_row.id if account_row else -1))
        if by_agent and agent is not None:
            statement = statement.where(ImpersonationRequest.agent_slack_id == agent)
        return statement

    grants_join = (ImpersonationRequest, ImpersonationRequest.id == Link.request_id)
    per_account = db.execute(
        scoped(
            select(Account.external_id, func.count())
            .select_from(Link)
            .join(*grants_join)
            .join(Account, Account.id == ImpersonationRequest.account_id)
            .where(Link.created_at >= since)
            .group_by(Account.external_id),
            by_agent=False,
        )
    ).all()
    per_agent = db.execute(
        scoped(
            select(ImpersonationRequest.agent_slack_id, func.count(distinct(ImpersonationRequest.account_id)))
            .select_from(Link)
            .join(*grants_join)
            .where(Link.created_at >= since)
            .group_by(ImpersonationRequest.agent_slack_id),
            by_account=False,
        )
    ).all()
    grant_rows = db.execute(
        scoped(
            select(
                ImpersonationRequest.id,
                ImpersonationRequest.agent_slack_id,
                ImpersonationRequest.agent_tz,
                Account.external_id,
                Account.id,
                Link.created_at,
                ImpersonationSession.id,
                ImpersonationSession.started_at,
            )
            .select_from(Link)
            .join(*grants_join)
            .join(Account, Account.id == ImpersonationRequest.account_id)
            .outerjoin(ImpersonationSession, ImpersonationSession.request_id == ImpersonationRequest.id)
            .where(Link.created_at >= since)
            .order_by(Link.created_at)
        )
    ).all()
    account_ids = {row[4] for row in grant_rows}
    flags: dict[int, set[str]] = {}
    if account_ids:
        for account_id, flag in db.execute(select(AccountFlagSetting.account_id, AccountFlagSetting.flag).where(AccountFlagSetting.account_id.in_(account_ids))):
            flags.setdefault(account_id, set()).add(flag)
    grants = [
        GrantFact(rid, who, tz, ext, frozenset(flags.get(aid, ())), granted, sid, started)
        for rid, who, tz, ext, aid, granted, sid, started in grant_rows
    ]

    # Refusals: blocked requests (the agent is the audit event's actor) and denials.
    blocked = select(AuditEvent.actor_slack_id, func.count()).where(
        AuditEvent.type == "request.blocked", AuditEvent.occurred_at >= since, AuditEvent.actor_slack_id.is_not(None)
    )
    if agent is not None:
        blocked = blocked.where(AuditEvent.actor_slack_id == agent)
    # the WHERE leaves NULL ids out; `is not None` says so to the type checker
    refusals: dict[str, int] = {who: n for who, n in db.execute(blocked.group_by(AuditEvent.actor_slack_id)) if who is not None}
    denied = scoped(
        select(ImpersonationRequest.agent_slack_id, func.count())
        .where(ImpersonationRequest.state == RequestState.DENIED.value, ImpersonationRequest.updated_at >= since)
        .group_by(ImpersonationRequest.agent_slack_id),
        by_account=False,
    )
    for who, count in db.execute(denied):
        refusals[who] = refusals.get(who, 0) + count

    replay_statement = (
        select(AuditEvent.request_id, func.count())
        .where(AuditEvent.type == "link.replay_refused", AuditEvent.occurred_at >= since, AuditEvent.request_id.is_not(None))
        .group_by(AuditEvent.request_id)
    )
    replay_counts = dict(db.execute(replay_statement).all())
    replays = []
    if replay_counts:
        for rid, who, ext in db.execute(
            scoped(
                select(ImpersonationRequest.id, ImpersonationRequest.agent_slack_id, Account.external_id)
                .join(Account, Account.id == ImpersonationRequest.account_id)
                .where(ImpersonationRequest.id.in_(list(replay_counts)))
            )
        ):
            replays.append(ReplayFact(rid, who, ext, replay_counts[rid]))

    opted = select(AuditEvent.actor_slack_id, AuditEvent.account, func.count()).where(
        AuditEvent.type == "request.blocked",
        AuditEvent.occurred_at >= since,
        AuditEvent.actor_slack_id.is_not(None),
        AuditEvent.account.is_not(None),
        AuditEvent.details.like(_OPTED_OUT_CAUSE),
    )
    if agent is not None:
        opted = opted.where(AuditEvent.actor_slack_id == agent)
    if account is not None:
        opted = opted.where(AuditEvent.account == account)
    opted_out = [
        OptedOutFact(who, acc, n)
        for who, acc, n in db.execute(opted.group_by(AuditEvent.actor_slack_id, AuditEvent.account))
        if who is not None and acc is not None  # as the WHERE says, for the type checker
    ]

    share_since = now - timedelta(days=config.concentration_days)
    share_rows = db.execute(
        scoped(
            select(Account.external_id, ImpersonationSession.agent_slack_id, func.count())
            .select_from(ImpersonationSession)
            .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
            .join(Account, Account.id == ImpersonationSession.account_id)
            .where(ImpersonationSession.started_at >= share_since)
            .group_by(Account.external_id, ImpersonationSession.agent_slack_id),
            by_agent=False,
        )
    ).all()
    return Facts(
        grants_per_account=dict(per_account),
        accounts_per_agent=dict(per_agent),
        grants=grants,
        refusals_per_agent=refusals,
        replays=replays,
        opted_out=opted_out,
        shares=shares_of(share_rows),
    )


def shares_of(rows: Iterable[tuple[str, str, int]]) -> list[ShareFact]:
    """(account, agent, sessions) rows → each account's total and busiest agent (ties: the
    agent id first in sort order, so the result never depends on row order)."""
    totals: dict[str, int] = {}
    top: dict[str, tuple[int, str]] = {}
    for account, agent, count in rows:
        totals[account] = totals.get(account, 0) + count
        best = top.get(account)
        if best is None or count > best[0] or (count == best[0] and agent < best[1]):
            top[account] = (count, agent)
    return [ShareFact(account, totals[account], top[account][1], top[account][0]) for account in sorted(totals)]


# ---------------------------------------------------------------------------- raising alerts


def raise_alert(db: Session, finding: Finding, *, window: timedelta, now: datetime) -> str | None:
    """Store, audit and owe one alert, unless the same rule alerted about the same subject
    within `window`. Returns the alert id, or None when deduplicated."""
    subject = finding.subject[:128]
    if not insert_once(db, AlertMark, {"rule": finding.rule.value, "subject": subject, "last_raised_at": now}):
        moved = affected_rows(
            db,
            update(AlertMark)
            .where(AlertMark.rule == finding.rule.value, AlertMark.subject == subject, AlertMark.last_raised_at <= now - window)
            .values(last_raised_at=now)
            .execution_options(synchronize_session=False)
        )
        if moved != 1:
            return None
    alert_id = str(uuid.uuid4())
    facts = dict(finding.facts)
    db.add(
        Alert(
            id=alert_id,
            rule=finding.rule.value,
            subject=subject,
            raised_at=now,
            account=finding.account,
            agent_slack_id=finding.agent,
            request_id=finding.request_id,
            session_id=finding.session_id,
            details=audit.canonical_json(facts),
        )
    )
    audit.append(
        db,
        EventDraft(
            type="alert.raised",
            actor=Actor.system("anomaly-rules"),
            account=finding.account,
            request_id=finding.request_id,
            session_id=finding.session_id,
            details={"alert_id": alert_id, "rule": finding.rule.value, "subject": subject, "agent": finding.agent, **facts},
        ),
        now=now,
    )
    outbox.enqueue(db, outbox.Kind.ALERT, alert_id, now=now)
    return alert_id


def _raise_all(ctx: DomainContext, findings: Iterable[Finding], *, now: datetime) -> list[str]:
    raised = []
    for finding in findings:
        # One transaction per alert: one that loses a race, or fails, never holds up others.
        with ctx.sessions() as db, db.begin():
            alert_id = raise_alert(db, finding, window=window_of(finding.rule, ctx.policy.alerts), now=now)
        if alert_id is not None:
            raised.append(alert_id)
    return raised


def sweep(ctx: DomainContext, *, now: datetime | None = None) -> list[str]:
    """The scheduler's anomaly sweep: every rule over recent activity."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        facts = gather(db, ctx.policy.alerts, now=now)
    return _raise_all(ctx, evaluate(facts, ctx.policy.alerts), now=now)


def check_request(ctx: DomainContext, *, agent: str, account: str | None, now: datetime | None = None) -> list[str]:
    """The check made when a request is made (granted, pending or refused), scoped to its
    agent and account. Never raises: a failure here must not undo or hide the request,
    which has already committed; the next sweep looks again."""
    now = now or utcnow()
    try:
        with reading(ctx.sessions) as db:
            facts = gather(db, ctx.policy.alerts, now=now, agent=agent, account=account)
        return _raise_all(ctx, evaluate(facts, ctx.policy.alerts), now=now)
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("anomaly check after a request by %s failed; the next sweep will look again", agent)
        return []


# ---------------------------------------------------------------------------- views for rendering


@dataclass(frozen=True)
class LiveSession:
    id: str
    agent: str
    account: str
    customer_user_name: str
    expires_at: datetime


@dataclass(frozen=True)
class AlertView:
    id: str
    rule: Rule
    subject: str
    raised_at: datetime
    account: str | None
    account_name: str | None
    agent: str | None
    request_id: str | None
    session_id: str | None
    facts: Mapping[str, Any]
    #: sessions that can still be revoked: the alert's own, else the agent's / account's
    #: (the newest LIVE_SHOWN of them)
    live_sessions: tuple[LiveSession, ...] = ()
    #: how many related sessions are live in all (live_sessions shows at most LIVE_SHOWN)
    live_total: int = 0


#: live sessions offered for revocation on one alert
LIVE_SHOWN = 3


def alert_views(ctx: DomainContext, alert_ids: Sequence[str], *, now: datetime | None = None) -> list[AlertView]:
    """The alerts, in the order given (unknown ids are left out)."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        alerts = {a.id: a for a in db.execute(select(Alert).where(Alert.id.in_(list(alert_ids)))).scalars()}
        names = dict(db.execute(select(Account.external_id, Account.name).where(Account.external_id.in_({a.account for a in alerts.values() if a.account}))).all())
        out = []
        for alert_id in alert_ids:
            alert = alerts.get(alert_id)
            if alert is None:
                continue
            out.append(
                AlertView(
                    id=alert.id,
                    rule=Rule(alert.rule),
                    subject=alert.subject,
                    raised_at=alert.raised_at,
                    account=alert.account,
                    account_name=names.get(alert.account) if alert.account else None,
                    agent=alert.agent_slack_id,
                    request_id=alert.request_id,
                    session_id=alert.session_id,
                    facts=json.loads(alert.details),
                    live_sessions=tuple(_live_sessions(db, alert, now)),
                    live_total=_live_count(db, alert, now),
                )
            )
        return out


def related_live_sessions(alert: Alert, now: datetime):
    """The SELECT of the sessions an alert is about that are live at `now`: the alert's own
    request's, else its agent's and/or account's; None when it names none of them. Also what
    revoking them all from the alert reloads (bot.domain.revocation.revoke_alert_sessions)."""
    statement = (
        select(ImpersonationSession)
        .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
        .where(
            ImpersonationRequest.state == RequestState.ACTIVE.value,
            ImpersonationSession.ended_at.is_(None),
            ImpersonationSession.expires_at > now,
        )
    )
    if alert.request_id is not None:
        return statement.where(ImpersonationSession.request_id == alert.request_id)
    if alert.agent_slack_id is None and alert.account is None:
        return None
    if alert.agent_slack_id is not None:
        statement = statement.where(ImpersonationSession.agent_slack_id == alert.agent_slack_id)
    if alert.account is not None:
        statement = statement.join(Account, Account.id == ImpersonationSession.account_id).where(Account.external_id == alert.account)
    return statement


def _live_sessions(db: Session, alert: Alert, now: datetime) -> list[LiveSession]:
    statement = related_live_sessions(alert, now)
    if statement is None:
        return []
    rows = db.execute(statement.order_by(ImpersonationSession.started_at.desc()).limit(LIVE_SHOWN)).unique().scalars()
    return [LiveSession(s.id, s.agent_slack_id, s.request.account.external_id, s.request.customer_user.name, s.expires_at) for s in rows]


def _live_count(db: Session, alert: Alert, now: datetime) -> int:
    statement = related_live_sessions(alert, now)
    if statement is None:
        return 0
    return db.execute(select(func.count()).select_from(statement.with_only_columns(ImpersonationSession.id).subquery())).scalar_one()
