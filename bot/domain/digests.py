"""Access reviews for security and compliance: a weekly summary and a
quarterly review, posted to the security channel with a report file, and the same on demand
(`impersonation-bot digest --period 2026Q3|last-7d`).

Everything is counted in SQL, reading each table once: the period's requests grouped by
outcome, its sessions grouped per (account, agent) — every session table of the review is a sum
over those groups — and the median decision time by window functions. The time-range indexes
carry the columns counted (migration 0016), so the rows are read from the indexes alone; a
quarter of 100,000 sessions is reviewed in under a second (docs/benchmarks.md). The chain
verification walks the whole log and is reported, and timed, separately.

Periods are half-open, [start, end), in UTC. The scheduler posts the most recent weekly and
quarterly period once each (a one-time claim per period key); after downtime it posts the
latest period it missed, not every one (the CLI can produce any period on demand).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Row, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import (
    Account,
    AccountFlagSetting,
    Alert,
    Approval,
    Extension,
    ImpersonationRequest,
    ImpersonationSession,
    JobClaim,
    Link,
)
from bot.domain import audit, checkpoints, outbox
from bot.domain.anomalies import shares_of
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.once import claim_once, claimed
from bot.domain.policy import WEEKDAYS, PolicyConfig, clock_minutes

JOB = "digest"
#: rows listed per table in a report (the counts above each table are complete)
TOP = 25
#: sessions without a ticket listed by id
NO_TICKET_LISTED = 50
#: flags that make an account "sensitive" for the review
SENSITIVE_FLAGS = ("sensitive", "regulated", "flagged")
#: outcomes of a request, in the order a review reads them
OUTCOMES = ("active", "ended", "expired", "revoked", "granted", "lapsed", "pending", "denied", "cancelled")


class PeriodError(ValueError):
    """A period the CLI cannot read; the message says what is accepted."""


@dataclass(frozen=True)
class Period:
    #: "2026Q3", "week-2026-06-29", "last-7d"
    key: str
    label: str
    start: datetime
    end: datetime
    kind: str  # quarterly | weekly | adhoc


_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_LAST = re.compile(r"^last-(\d{1,3})d$")


def quarter(year: int, number: int) -> Period:
    start = datetime(year, 3 * (number - 1) + 1, 1, tzinfo=UTC)
    end = datetime(year + (number == 4), 1 if number == 4 else 3 * number + 1, 1, tzinfo=UTC)
    return Period(f"{year}Q{number}", f"{year} Q{number} (quarterly access review)", start, end, "quarterly")


def parse_period(text: str, *, now: datetime) -> Period:
    """`2026Q3` (a calendar quarter) or `last-7d` (the N days up to now, N ≤ 366)."""
    text = text.strip()
    if match := _QUARTER.match(text):
        return quarter(int(match.group(1)), int(match.group(2)))
    if (match := _LAST.match(text)) and 1 <= int(match.group(1)) <= 366:
        days = int(match.group(1))
        return Period(text, f"the {days} days to {now:%Y-%m-%d %H:%M} UTC", now - timedelta(days=days), now, "adhoc")
    raise PeriodError(f"--period {text!r}: give a quarter such as 2026Q3, or last-Nd such as last-7d")


def weekly_period(policy: PolicyConfig, now: datetime) -> Period:
    """The week that ended at the most recent weekly slot (`digests.weekly`, UTC) ≤ now."""
    day, clock = policy.digests.weekly.split()
    minutes = clock_minutes(clock)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    slot = today - timedelta(days=(now.weekday() - WEEKDAYS.index(day)) % 7) + timedelta(minutes=minutes)
    if slot > now:
        slot -= timedelta(days=7)
    start = slot - timedelta(days=7)
    return Period(f"week-{slot:%Y-%m-%d}", f"the week to {slot:%Y-%m-%d %H:%M} UTC (weekly summary)", start, slot, "weekly")


def quarterly_period(policy: PolicyConfig, now: datetime) -> Period:
    """The quarter before the most recent quarter start (at `digests.quarterly_time`) ≤ now."""
    minutes = clock_minutes(policy.digests.quarterly_time)
    number = (now.month - 1) // 3 + 1
    posted = quarter(now.year, number).start + timedelta(minutes=minutes)
    if posted > now:
        number -= 1
    year, number = (now.year, number - 1) if number > 1 else (now.year - 1, number + 3)
    return quarter(year, number)


#: after downtime, the scheduled reviews that fell due meanwhile are owed too, oldest first, at
#: most this many of each kind (older ones: `impersonation-bot digest --period …` on demand)
CATCH_UP_MAX = {"weekly": 8, "quarterly": 4}


def due_periods(policy: PolicyConfig, now: datetime) -> list[Period]:
    """The latest scheduled period of each kind (the week to the last weekly slot; the last
    quarter once its review time has passed)."""
    periods = [weekly_period(policy, now)]
    if policy.digests.quarterly:
        periods.append(quarterly_period(policy, now))
    return periods


def previous_period(policy: PolicyConfig, period: Period) -> Period:
    """The scheduled period just before `period`, of the same kind."""
    if period.kind == "weekly":
        return weekly_period(policy, period.end - timedelta(seconds=1))
    before = period.start - timedelta(days=1)
    return quarter(before.year, (before.month - 1) // 3 + 1)


def _owed_periods(db: Session, policy: PolicyConfig, latest: Period) -> list[Period]:
    """`latest` and, after downtime, every earlier period of its kind not yet owed — back to
    the newest one already claimed, at most CATCH_UP_MAX — oldest first. A scheduler that has
    never posted this kind starts with the latest period only (no backlog of history)."""
    pattern = "week-%" if latest.kind == "weekly" else "%Q%"
    if db.execute(select(JobClaim.key).where(JobClaim.job == JOB, JobClaim.key.like(pattern)).limit(1)).first() is None:
        return [latest]
    chain = [latest]
    while len(chain) < CATCH_UP_MAX[latest.kind] and not claimed(db, JOB, chain[-1].key):
        chain.append(previous_period(policy, chain[-1]))
    return [period for period in reversed(chain) if not claimed(db, JOB, period.key)]


def run_due(ctx: DomainContext, *, now: datetime | None = None, as_of: datetime | None = None) -> list[str]:
    """Owe the security channel each weekly (and quarterly) review once per period across
    every scheduler, catching up what fell due while no scheduler ran; the outbox builds and
    posts it (bot/slack/kinds.py, bot/slack/courier.py). `as_of`: the moment whose due periods are owed, when
    it is not `now` — the local workspace owes the week to the next weekly slot at once (a
    visitor sees the review of what they just did); the rows are due at `now`."""
    now = now or utcnow()
    if not ctx.policy.alerts.security_channel:
        return []
    queued = []
    for latest in due_periods(ctx.policy, as_of or now):
        with reading(ctx.sessions) as db:
            owed = _owed_periods(db, ctx.policy, latest)
        for period in owed:
            with ctx.sessions() as db, db.begin():
                if claim_once(db, JOB, period.key, now=now):
                    outbox.enqueue(db, outbox.Kind.DIGEST, period.key, now=now)
                    queued.append(period.key)
    return queued


def period_of_key(policy: PolicyConfig, key: str) -> Period:
    """The period a scheduled digest's key names (the outbox row carries only the key)."""
    if key.startswith("week-"):
        slot_day = datetime.strptime(key[5:], "%Y-%m-%d").replace(tzinfo=UTC)
        _day, clock = policy.digests.weekly.split()
        slot = slot_day + timedelta(minutes=clock_minutes(clock))
        return Period(key, f"the week to {slot:%Y-%m-%d %H:%M} UTC (weekly summary)", slot - timedelta(days=7), slot, "weekly")
    if match := _QUARTER.match(key):
        return quarter(int(match.group(1)), int(match.group(2)))
    raise PeriodError(f"not a digest period key: {key!r}")


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class AgentRow:
    agent: str
    sessions: int
    accounts: int


@dataclass(frozen=True)
class AccountRow:
    account: str
    name: str
    sessions: int
    agents: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeciderRow:
    approver: str
    approved: int
    denied: int


@dataclass(frozen=True)
class NoTicketRow:
    request_id: str
    agent: str
    account: str
    created_at: datetime


@dataclass(frozen=True)
class ConcentrationRow:
    account: str
    name: str
    agent: str
    agent_sessions: int
    sessions: int

    @property
    def percent(self) -> int:
        return 100 * self.agent_sessions // self.sessions


@dataclass(frozen=True)
class ChainResult:
    ok: bool
    events: int
    checkpoints: int
    problem_seq: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class DigestReport:
    period: Period
    generated_at: datetime
    requests: int
    granted: int
    sessions: int
    blocked: int
    by_outcome: tuple[tuple[str, int], ...]
    by_agent: tuple[AgentRow, ...]
    agents: int
    by_account: tuple[AccountRow, ...]
    accounts: int
    decisions: int
    deciders: tuple[DeciderRow, ...]
    median_seconds_to_decide: int | None
    sensitive: tuple[AccountRow, ...]
    alerts: tuple[tuple[str, int], ...]
    no_ticket: int
    no_ticket_listed: tuple[NoTicketRow, ...]
    reinitiations: int
    extensions: tuple[tuple[str, int], ...]
    break_glass: int
    concentration: tuple[ConcentrationRow, ...]
    chain: ChainResult | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def alerts_total(self) -> int:
        return sum(n for _, n in self.alerts)

    @property
    def extensions_total(self) -> int:
        return sum(n for _, n in self.extensions)


def _seconds_between(db: Session, later, earlier):
    """later − earlier in seconds, in the database's own arithmetic."""
    if db.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def build_report(db: Session, period: Period, policy: PolicyConfig, *, now: datetime, chain: ChainResult | None = None) -> DigestReport:
    start, end = period.start, period.end
    requests_in = and_(ImpersonationRequest.created_at >= start, ImpersonationRequest.created_at < end)
    sessions_in = and_(ImpersonationSession.started_at >= start, ImpersonationSession.started_at < end)

    # The period's requests in one pass, counted by outcome: how many, how many were
    # granted (a request was granted when it has its one link), granted without a ticket,
    # re-initiated and break-glass.
    has_link = Link.id.is_not(None)
    request_counts = db.execute(
        select(
            ImpersonationRequest.state,
            func.count(),
            func.count(Link.id),
            func.count(case((and_(has_link, ImpersonationRequest.ticket.is_(None)), 1))),
            func.count(ImpersonationRequest.previous_session_id),
            func.count(case((ImpersonationRequest.break_glass.is_(True), 1))),
        )
        .select_from(ImpersonationRequest)
        .outerjoin(Link, Link.request_id == ImpersonationRequest.id)
        .where(requests_in)
        .group_by(ImpersonationRequest.state)
    ).all()
    by_outcome = {state: n for state, n, *_ in request_counts}
    counts = [row[1:] for row in request_counts]
    requests_total, granted, no_ticket, reinitiations, break_glass = (sum(c[i] for c in counts) for i in range(5))
    blocked = db.execute(
        select(func.count()).select_from(audit.AuditEvent).where(
            audit.AuditEvent.type == "request.blocked", audit.AuditEvent.occurred_at >= start, audit.AuditEvent.occurred_at < end
        )
    ).scalar_one()

    # The period's sessions in one pass, counted per (account, agent): every session figure
    # (totals, by agent, by account, sensitive accounts, concentration) is a sum over these
    # groups, so the sessions are read once whatever the number of tables.
    pairs = _account_agent_counts(db, sessions_in)
    per_agent: dict[str, list[int]] = {}
    per_account: dict[int, list[int]] = {}
    names: dict[int, tuple[str, str]] = {}
    for account_id, account, name, agent, n in pairs:
        agent_totals = per_agent.setdefault(agent, [0, 0])
        agent_totals[0] += n
        agent_totals[1] += 1
        account_totals = per_account.get(account_id)
        if account_totals is None:
            account_totals = per_account[account_id] = [0, 0]
            names[account_id] = (account, name)
        account_totals[0] += n
        account_totals[1] += 1
    sessions_total = sum(n for n, _ in per_account.values())
    agents, accounts = len(per_agent), len(per_account)
    by_agent = [
        AgentRow(agent, n, spread)
        for agent, (n, spread) in sorted(per_agent.items(), key=lambda item: (-item[1][0], item[0]))[:TOP]
    ]

    def account_rows(account_ids: Iterable[int], flags: dict[int, list[str]] | None = None) -> tuple[AccountRow, ...]:
        ranked = sorted(account_ids, key=lambda a: (-per_account[a][0], names[a][0]))[:TOP]
        return tuple(
            AccountRow(*names[a], per_account[a][0], per_account[a][1], tuple(sorted((flags or {}).get(a, ())))) for a in ranked
        )

    by_account = account_rows(per_account)

    # Approvals: every vote cast in the period, by who cast it …
    decider_rows = db.execute(
        select(Approval.approver_slack_id, Approval.decision, func.count())
        .join(ImpersonationRequest, ImpersonationRequest.id == Approval.subject_id)
        .where(Approval.decided_at >= start, Approval.decided_at < end)
        .group_by(Approval.approver_slack_id, Approval.decision)
    ).all()
    votes: dict[str, list[int]] = {}
    for approver, decision, n in decider_rows:
        votes.setdefault(approver, [0, 0])[0 if decision == "approve" else 1] += n
    deciders = tuple(
        DeciderRow(a, v[0], v[1]) for a, v in sorted(votes.items(), key=lambda item: (-(item[1][0] + item[1][1]), item[0]))[:TOP]
    )
    # … and the time from request to decision (the deciding vote) for requests decided by
    # people: approved ones (they have a link) and denied ones.
    decided_at = func.max(Approval.decided_at)
    durations = (
        select(_seconds_between(db, decided_at, ImpersonationRequest.created_at).label("seconds"))
        .select_from(ImpersonationRequest)
        .join(Approval, Approval.subject_id == ImpersonationRequest.id)
        .where(
            requests_in,
            ImpersonationRequest.approvals_required > 0,
            or_(ImpersonationRequest.state == "denied", exists().where(Link.request_id == ImpersonationRequest.id)),
        )
        .group_by(ImpersonationRequest.id, ImpersonationRequest.created_at)
        .subquery()
    )
    # The median in one pass: each duration's rank and the count, by window functions
    # (PostgreSQL; SQLite since 3.25), keeping only the middle one or two.
    ranked = select(
        durations.c.seconds,
        func.row_number().over(order_by=durations.c.seconds).label("rank"),
        func.count().over().label("total"),
    ).subquery()
    middle = db.execute(
        select(ranked.c.seconds, ranked.c.total).where(
            ranked.c.rank.in_([(ranked.c.total + 1) // 2, (ranked.c.total + 2) // 2])
        )
    ).all()
    decisions = middle[0].total if middle else 0
    median = int(round(sum(float(m.seconds) for m in middle) / len(middle))) if middle else None

    flags: dict[int, list[str]] = {}
    for account_id, flag in db.execute(
        select(AccountFlagSetting.account_id, AccountFlagSetting.flag).where(AccountFlagSetting.flag.in_(SENSITIVE_FLAGS))
    ):
        if account_id in per_account:
            flags.setdefault(account_id, []).append(flag)
    sensitive = account_rows(flags, flags)

    alerts = tuple(
        db.execute(
            select(Alert.rule, func.count()).where(Alert.raised_at >= start, Alert.raised_at < end).group_by(Alert.rule).order_by(Alert.rule)
        ).all()
    )

    granted_without_ticket = and_(requests_in, ImpersonationRequest.ticket.is_(None), exists().where(Link.request_id == ImpersonationRequest.id))
    no_ticket_listed = tuple(
        NoTicketRow(rid, agent, ext, created)
        for rid, agent, ext, created in (
            db.execute(
                select(ImpersonationRequest.id, ImpersonationRequest.agent_slack_id, Account.external_id, ImpersonationRequest.created_at)
                .join(Account, Account.id == ImpersonationRequest.account_id)
                .where(granted_without_ticket)
                .order_by(ImpersonationRequest.created_at)
                .limit(NO_TICKET_LISTED)
            )
            if no_ticket
            else ()
        )
    )
    extensions = tuple(
        db.execute(
            select(Extension.state, func.count()).where(Extension.created_at >= start, Extension.created_at < end).group_by(Extension.state).order_by(Extension.state)
        ).all()
    )

    config = policy.alerts
    concentration = _concentration(pairs, percent=config.concentration_percent, min_sessions=config.concentration_min_sessions)

    return DigestReport(
        period=period,
        generated_at=now,
        requests=requests_total,
        granted=granted,
        sessions=sessions_total,
        blocked=blocked,
        by_outcome=tuple((o, by_outcome[o]) for o in OUTCOMES if by_outcome.get(o)),
        by_agent=tuple(by_agent),
        agents=agents,
        by_account=tuple(by_account),
        accounts=accounts,
        decisions=decisions,
        deciders=deciders,
        median_seconds_to_decide=median,
        sensitive=sensitive,
        alerts=alerts,
        no_ticket=no_ticket,
        no_ticket_listed=no_ticket_listed,
        reinitiations=reinitiations,
        extensions=extensions,
        break_glass=int(break_glass or 0),
        concentration=concentration,
        chain=chain,
    )


def _account_agent_counts(db: Session, sessions_in) -> Sequence[Row[int, str, str, str, int]]:
    """The period's sessions counted per (account, agent), grouped before the accounts are
    joined (one lookup per group, not per session): (account id, account, its name, agent,
    sessions)."""
    grouped = (
        select(ImpersonationSession.account_id, ImpersonationSession.agent_slack_id, func.count().label("n"))
        .where(sessions_in)
        .group_by(ImpersonationSession.account_id, ImpersonationSession.agent_slack_id)
        .subquery()
    )
    return db.execute(
        select(grouped.c.account_id, Account.external_id, Account.name, grouped.c.agent_slack_id, grouped.c.n).join(
            Account, Account.id == grouped.c.account_id
        )
    ).all()


def _concentration(pairs: Sequence[Row[int, str, str, str, int]], *, percent: int, min_sessions: int) -> tuple[ConcentrationRow, ...]:
    """Accounts where one agent held at least `percent` % of the period's sessions (with at
    least `min_sessions` sessions): the top share of each account's (account, agent) groups."""
    shares = [
        s
        for s in shares_of((account, agent, n) for _, account, _, agent, n in pairs)
        if s.total >= min_sessions and 100 * s.top_count >= percent * s.total
    ]
    names = {account: name for _, account, name, _, _ in pairs}
    ordered = sorted(shares, key=lambda s: (-(100 * s.top_count // s.total), -s.total, s.account))[:TOP]
    return tuple(ConcentrationRow(s.account, names[s.account], s.top_agent, s.top_count, s.total) for s in ordered)


def verify_chain(ctx: DomainContext) -> ChainResult:
    """The chain walked from the genesis hash, and the checkpoints of AUDIT_CHECKPOINT_FILE
    (when configured) checked against it with this deployment's public key."""
    found = []
    if ctx.checkpoint_file is not None and ctx.checkpoint_file.exists():
        found = checkpoints.read_file(ctx.checkpoint_file)
    with reading(ctx.sessions) as db:
        result = checkpoints.verify_log(db, found, {ctx.signing_key.kid: ctx.signing_key.public_key})
    problem = result.problem
    return ChainResult(problem is None, result.events, result.checkpoints, problem.seq if problem else None, problem.reason if problem else None)


def make_report(ctx: DomainContext, period: Period, *, by: Actor, now: datetime | None = None, verify: bool = True) -> DigestReport:
    """The review for `period`, audited as `digest.generated` (reading the log is itself an
    audit event, DESIGN.md "The audit log")."""
    now = now or utcnow()
    chain = verify_chain(ctx) if verify else None
    with reading(ctx.sessions) as db:
        report = build_report(db, period, ctx.policy, now=now, chain=chain)
    with ctx.sessions() as db, db.begin():
        audit.append(
            db,
            EventDraft(
                type="digest.generated",
                actor=by,
                details={
                    "period": period.key,
                    "start": audit.format_time(period.start),
                    "end": audit.format_time(period.end),
                    "sessions": report.sessions,
                    "chain_ok": chain.ok if chain else None,
                },
            ),
            now=now,
        )
    return report
