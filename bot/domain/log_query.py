"""`/impersonation-log`: who impersonated users of an account, when and why.

Only roles with `can_view_log` may look; anyone else is refused and the attempt is audited
(`log.refused`). Every lookup, each page included, is itself an audit event (`log.viewed`,
with the query), appended in the same transaction as the reads: no answer leaves without its
audit event committed.

A lookup is asked as LogOptions: an account id, optionally an agent's Slack user id, and
`since` / `until`, each a number of days before now (`90d`) or a UTC date (`2026-01-01`; an
`until` date includes that whole day). The faces turn what people typed into options (the
slash command's text: bot.slack.command_text.parse_log_command; the CLI's flags); this module
checks every value and resolves the times once, so paging through a query later shows the
same sessions however much time has passed. A session belongs to the period it started in.
How many sessions a page holds is the face's to say (`page_size`): it is a question of how
much fits in one of its messages.

The aggregates and the page are SQL over the `sessions` table's (account_id, started_at)
index, joined by keys; write actions are counted through `audit_events.session_id`. How the
statements are shaped, and why, is measured on a generated history of a million sessions
(bench/audit_bench.py) and said at `summarise` and `_sessions`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, String, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from bot.db.models import (
    Approval,
    ApprovalDecision,
    AuditEvent,
    CustomerUser,
    ImpersonationRequest,
    ImpersonationSession,
    RequestState,
)
from bot.domain import audit, directory, personal
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.policy import SLACK_USER_ID, powers_of

DEFAULT_DAYS = 90
#: the longest look-back accepted, in days (ten years: any older log is an archive question)
MAX_DAYS = 3660
#: raw command text kept in a `log.refused` event, at most
REFUSED_TEXT_MAX = 300

_DAYS = re.compile(r"^([0-9]{1,5})d$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
#: `action.recorded`, rendered into the SQL as a literal, not a bound parameter: only then can
#: either database prove that the partial index ix_audit_events_actions (migration 0006)
#: holds every row asked for, also in a plan PostgreSQL makes without the parameters' values
_WRITE_ACTION = literal("action.recorded", String, literal_execute=True)
_TOKEN_VERSION = "l1"
_TOKEN_TIME = "%Y%m%dT%H%M%S%fZ"


# ------------------------------------------------------------------------------ the query


@dataclass(frozen=True)
class LogQuery:
    """One lookup, resolved: the account's id, an optional agent, and [since, until) in UTC."""

    account: str
    since: datetime
    until: datetime
    agent: str | None = None
    #: how the period reads in prose ("the last 90 days"); dates when it was given as dates
    label: str = ""

    @property
    def period(self) -> str:
        """"the last 90 days", or "between 1 Jan 2026 and 31 Mar 2026" (UTC)."""
        if self.label:
            return self.label
        midnight = time.min.replace(tzinfo=UTC)
        if self.since.timetz() == midnight and self.until.timetz() == midnight:
            last_day = self.until - timedelta(days=1)
            return f"between {_day(self.since)} and {_day(last_day)}"
        return f"between {_day(self.since)} {self.since:%H:%M} and {_day(self.until)} {self.until:%H:%M} UTC"

    def details(self) -> dict[str, Any]:
        """The query as recorded in the audit log."""
        return {
            "account": self.account,
            "agent": self.agent,
            "since": audit.format_time(self.since),
            "until": audit.format_time(self.until),
        }

    def token(self, page: int = 0) -> str:
        """What a button carries: the query's ids and times and a page number, nothing else.
        Every click is re-authorised and re-audited (`look_up_page`), so a forged token is
        at most a query its sender could have typed."""
        return "|".join(
            (_TOKEN_VERSION, self.account, self.agent or "", f"{self.since:{_TOKEN_TIME}}", f"{self.until:{_TOKEN_TIME}}", str(page))
        )


@dataclass(frozen=True)
class QueryError:
    """A query that cannot be answered: what is wrong with it, for the person who asked."""

    problem: str


@dataclass(frozen=True)
class LogOptions:
    """A lookup as asked, before any check: the values as given (None: not given)."""

    account: str | None
    #: a Slack user id (U… or W…)
    agent: str | None = None
    #: `90d` (days before now) or `2026-01-01` (a UTC date); `since` defaults to DEFAULT_DAYS
    since: str | None = None
    until: str | None = None


def resolve(options: LogOptions, *, now: datetime) -> LogQuery | QueryError:
    """Check each value and turn relative times into absolute ones, once."""
    if options.account is None:
        return QueryError("say which account: account:ACCOUNT")
    if not directory.ACCOUNT_ID.match(options.account):
        return QueryError(f"`{_shorten(options.account)}` is not an account id")
    if options.agent is not None and not is_user_id(options.agent):
        return QueryError("agent: must mention a person, e.g. agent:@jane")
    since = parse_moment(options.since or f"{DEFAULT_DAYS}d", now=now, end_of_day=False)
    if since is None:
        return QueryError(f"since: takes a number of days (90d) or a date (2026-01-01), at most {MAX_DAYS} days back")
    until = now
    if options.until is not None:
        until_given = parse_moment(options.until, now=now, end_of_day=True)
        if until_given is None:
            return QueryError(f"until: takes a number of days (7d) or a date (2026-03-31), at most {MAX_DAYS} days back")
        # Never past now: the answer must not change as later sessions start (stable paging).
        until = min(until_given, now)
    if since >= until:
        return QueryError("since: must be before until:")
    return LogQuery(account=options.account, since=since, until=until, agent=options.agent, label=_label(options))


def is_user_id(value: str) -> bool:
    """A Slack user id as the policy names people (U… or W…)."""
    return bool(SLACK_USER_ID.fullmatch(value)) and len(value) <= 32


def parse_moment(value: str, *, now: datetime, end_of_day: bool) -> datetime | None:
    """`90d` (days before now) or `2026-01-01` (UTC midnight; with `end_of_day`, the next
    midnight, so that an `until` date includes its day). None when malformed or out of range."""
    days = _DAYS.match(value.lower())
    if days:
        count = int(days.group(1))
        return now - timedelta(days=count) if count <= MAX_DAYS else None
    if not _DATE.match(value):
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    moment = datetime.combine(day, time.min, tzinfo=UTC) + (timedelta(days=1) if end_of_day else timedelta())
    if moment < now - timedelta(days=MAX_DAYS + 1):
        return None
    return moment


def parse_token(value: object) -> tuple[LogQuery, int] | None:
    """A button's token back to (query, page); None for anything we did not make."""
    if not isinstance(value, str) or len(value) > 400:
        return None
    parts = value.split("|")
    if len(parts) != 6 or parts[0] != _TOKEN_VERSION:
        return None
    _, account, agent, since_text, until_text, page_text = parts
    if not directory.ACCOUNT_ID.match(account) or (agent and not is_user_id(agent)):
        return None
    if not (page_text.isascii() and page_text.isdigit()) or len(page_text) > 6:
        return None
    try:
        since = datetime.strptime(since_text, _TOKEN_TIME).replace(tzinfo=UTC)
        until = datetime.strptime(until_text, _TOKEN_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None
    if since >= until:
        return None
    return LogQuery(account=account, since=since, until=until, agent=agent or None), int(page_text)


def _label(options: LogOptions) -> str:
    since, until = options.since or f"{DEFAULT_DAYS}d", options.until
    days = _DAYS.match(since.lower())
    if days and until is None:
        count = int(days.group(1))
        return "the last day" if count == 1 else f"the last {count} days"
    return ""


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------ the answer


@dataclass(frozen=True)
class Approver:
    slack_id: str
    #: e-mail when known, else the Slack id (as recorded when they approved)
    name: str


@dataclass(frozen=True)
class SessionEntry:
    session_id: str
    request_id: str
    agent_slack_id: str
    agent_email: str | None
    agent_role: str
    customer_user: str
    customer_user_name: str
    customer_user_email: str
    reason: str
    ticket: str | None
    scope: str
    started_at: datetime
    #: when it ended, expired or was revoked; None while live
    ended_at: datetime | None
    #: live | ended | expired | revoked
    outcome: str
    approvers: tuple[Approver, ...]
    approvals_required: int
    break_glass: bool
    #: `action.recorded` events the product reported for this session
    write_actions: int
    #: the justification code chosen with the request (None before the policy listed any)
    justification: str | None = None

    @property
    def granted_by(self) -> str:
        """How access was granted: break-glass, by approvers, or by policy alone."""
        if self.break_glass:
            return "break_glass"
        return "approval" if self.approvals_required > 0 else "policy"


@dataclass(frozen=True)
class LogSummary:
    sessions: int
    agents: int
    #: sessions that needed and got approval, and the distinct people who approved them
    approved_sessions: int
    approvers: int
    break_glass: int
    write_actions: int
    live: int
    ended: int
    expired: int
    revoked: int

    @property
    def outcomes(self) -> dict[str, int]:
        return {"ended": self.ended, "expired": self.expired, "revoked": self.revoked, "live": self.live}


@dataclass(frozen=True)
class LogPage:
    query: LogQuery
    account_name: str
    summary: LogSummary
    entries: tuple[SessionEntry, ...]
    #: 0-based
    page: int
    pages: int
    #: the viewer's Slack time zone, to show times on their clock
    viewer_tz: str | None = None

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages


@dataclass(frozen=True)
class LogRefused:
    message: str


@dataclass(frozen=True)
class UnknownAccount:
    account: str


LookupResult = LogPage | LogRefused | QueryError | UnknownAccount

REFUSED_MESSAGE = (
    "Only security and compliance roles can read the impersonation log. This attempt was recorded. "
    "Ask them for what you need; your own requests are on your Home tab, and `/impersonate help` lists what you can do."
)
EXPIRED_TOKEN = QueryError("that page no longer makes sense; run the command again")


@dataclass(frozen=True)
class Viewer:
    """Who asks, as the audit log records them, and whether the policy lets them read it."""

    actor: Actor
    tz: str | None
    allowed: bool


def authorise(ctx: DomainContext, viewer_slack_id: str, *, attempt: dict[str, Any], account: str | None, now: datetime) -> Viewer:
    """Check `can_view_log` now (the policy in force, group membership as Slack reports it).
    A refusal is audited here (`log.refused`, with what was asked) and committed on its own."""
    powers = powers_of(ctx.policy, viewer_slack_id, ctx.groups)
    person = ctx.people.person(viewer_slack_id)
    actor = Actor(slack_id=viewer_slack_id, email=person.email, role=powers.role if powers else None)
    viewer = Viewer(actor, person.tz, bool(powers and powers.can_view_log))
    if not viewer.allowed:
        with ctx.sessions() as db, db.begin():
            audit.append(
                db,
                EventDraft(type="log.refused", actor=actor, account=account, details={"cause": "no_log_power", **attempt}),
                now=now,
            )
    return viewer


def look_up(
    ctx: DomainContext, viewer_slack_id: str, asked: LogOptions | QueryError, *, text: str, page_size: int, now: datetime | None = None
) -> LookupResult:
    """The slash command: authorise, resolve, then read the first page (audited). `asked`: the
    options the face read from `text` (what the person typed, recorded when the query cannot
    be resolved), or what was wrong with it; `page_size`: sessions per page."""
    now = now or utcnow()
    parsed = resolve(asked, now=now) if isinstance(asked, LogOptions) else asked
    attempt = {"query": parsed.details()} if isinstance(parsed, LogQuery) else {"text": text[:REFUSED_TEXT_MAX]}
    account = parsed.account if isinstance(parsed, LogQuery) else None
    viewer = authorise(ctx, viewer_slack_id, attempt=attempt, account=account, now=now)
    if not viewer.allowed:
        return LogRefused(REFUSED_MESSAGE)
    if isinstance(parsed, QueryError):
        return parsed
    return _read_page(ctx, viewer, parsed, 0, page_size=page_size, now=now)


def look_up_account(ctx: DomainContext, viewer_slack_id: str, account: str, *, page_size: int, now: datetime | None = None) -> LookupResult:
    """The Home tab's account search: the answer `/impersonation-log account:<account>` gives,
    with the same checks."""
    return look_up(ctx, viewer_slack_id, LogOptions(account=account), text=f"account:{account}", page_size=page_size, now=now)


def look_up_page(ctx: DomainContext, viewer_slack_id: str, token: object, *, page_size: int, now: datetime | None = None) -> LookupResult:
    """A Next / Previous click: the same checks as the command, at the moment of the click."""
    now = now or utcnow()
    parsed = parse_token(token)
    attempt = {"query": parsed[0].details(), "page": parsed[1] + 1} if parsed else {"text": str(token)[:REFUSED_TEXT_MAX]}
    viewer = authorise(ctx, viewer_slack_id, attempt=attempt, account=parsed[0].account if parsed else None, now=now)
    if not viewer.allowed:
        return LogRefused(REFUSED_MESSAGE)
    if parsed is None:
        return EXPIRED_TOKEN
    return _read_page(ctx, viewer, parsed[0], parsed[1], page_size=page_size, now=now)


def _read_page(ctx: DomainContext, viewer: Viewer, query: LogQuery, page: int, *, page_size: int, now: datetime) -> LogPage | UnknownAccount:
    """Read the summary and one page, and append `log.viewed`, in one transaction: the answer
    is returned only once its audit event is committed (a failed append returns nothing).
    The reads come first so that the audit chain's head lock is held only for the append."""
    with ctx.sessions() as db, db.begin():
        account = directory.find_account(db, query.account)
        summary = summarise(db, account.id, query, now=now) if account is not None else None
        total = summary.sessions if summary is not None else 0
        pages = max(1, -(-total // page_size))
        page = min(max(page, 0), pages - 1)
        entries: tuple[SessionEntry, ...] = ()
        if account is not None:
            rows = db.execute(_sessions(account.id, query, offset=page * page_size, limit=page_size)).all()
            entries = tuple(_entries(db, rows, now=now))
        name = account.name if account is not None else ""
        audit.append(
            db,
            EventDraft(
                type="log.viewed",
                actor=viewer.actor,
                account=query.account,
                details={"query": query.details(), "page": page + 1, "sessions": total, "known_account": account is not None},
            ),
            now=now,
        )
    if summary is None:
        return UnknownAccount(query.account)
    return LogPage(query, name, summary, entries, page, pages, viewer_tz=viewer.tz)


# ------------------------------------------------------------------------------ SQL


def _in_period(account_id: int, query: LogQuery) -> list[Any]:
    conditions = [
        ImpersonationSession.account_id == account_id,
        ImpersonationSession.started_at >= query.since,
        ImpersonationSession.started_at < query.until,
    ]
    if query.agent:
        conditions.append(ImpersonationSession.agent_slack_id == query.agent)
    return conditions


def _outcome(state: Any, expires_at: Any, now: datetime) -> Any:
    """The session's outcome as bot.domain.sessions.status_at decides it, in SQL: an active
    session past its end has expired whether or not the scheduler has tidied it yet."""
    active = state == RequestState.ACTIVE.value
    return case(
        (and_(active, expires_at > now), "live"),
        (active, "expired"),
        else_=state,
    )


def summarise(db: Session, account_id: int, query: LogQuery, *, now: datetime) -> LogSummary:
    """The period's totals, computed by the database in one statement.

    Its shape fixes the plan on both databases, for a busy account (thousands of sessions in
    the period) as for a quiet one, and whether PostgreSQL plans it for these values or
    generically (psycopg prepares a statement run often; the plan cache may then reuse a plan
    made without the account's statistics). Measured on the generated history
    (bench/audit_bench.py), the earlier form of three joins let PostgreSQL scan every
    account's sessions of the period through `ix_sessions_started_at` with parallel workers,
    or hash-join all approvals (for the busiest account: 25,000 buffer reads and 160,000
    approval rows scanned; this form, 15,500 buffer reads):

    1. `period`: the period's sessions from `ix_sessions_account_period` alone (it covers
       every column read here), materialised so that no other index can be chosen for it;
    2. `period_requests`: each joined to what the totals read of its request, from
       `ix_requests_id_outcome` alone; also materialised: the totals, approvers and write
       actions below all read it;
    3. per session, index probes: approvals through `ix_approvals_subject_decision`, write
       actions through the partial `ix_audit_events_actions` (migration 0006).

    Approvers are looked up only for requests that needed approval (`approvals_required > 0`,
    a sixth of them in the generated history): a vote is recorded only on a pending request
    (bot.domain.approvals), and a request is pending only when created with
    `approvals_required` ≥ 1 (bot.domain.requests), so no approval of the others is missed.
    Extensions' approvals have the extension's id as subject and never matched a request."""
    period = (
        select(
            ImpersonationSession.id,
            ImpersonationSession.request_id,
            ImpersonationSession.agent_slack_id,
            ImpersonationSession.expires_at,
        )
        .where(*_in_period(account_id, query))
        .cte("period")
        .prefix_with("MATERIALIZED")
    )
    sessions = (
        select(
            period.c.id,
            period.c.request_id,
            period.c.agent_slack_id,
            period.c.expires_at,
            ImpersonationRequest.state,
            ImpersonationRequest.break_glass,
            ImpersonationRequest.approvals_required,
        )
        .join_from(period, ImpersonationRequest, ImpersonationRequest.id == period.c.request_id)
        .cte("period_requests")
        .prefix_with("MATERIALIZED")
    )
    # correlate(None): each subquery reads `period_requests` itself; the outer query's FROM
    # holds it too, and auto-correlation would otherwise drop it from the subquery's.
    # `IN`, not a join: SQLite then probes the index once per listed request, where a join
    # from the materialised rows made it build a Bloom filter by reading every approval.
    gated = select(sessions.c.request_id).where(sessions.c.approvals_required > 0).correlate(None)
    approvers = (
        select(func.count(func.distinct(Approval.approver_identity)))
        .where(Approval.subject_id.in_(gated), Approval.decision == ApprovalDecision.APPROVE.value)
        .scalar_subquery()
    )
    actions = (
        select(func.count())
        .select_from(sessions)
        .join(AuditEvent, AuditEvent.session_id == sessions.c.id)
        .where(AuditEvent.type == _WRITE_ACTION)
        .correlate(None)
        .scalar_subquery()
    )
    outcome = _outcome(sessions.c.state, sessions.c.expires_at, now)

    def count_of(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    totals = db.execute(
        select(
            func.count(),
            func.count(func.distinct(sessions.c.agent_slack_id)),
            count_of(sessions.c.break_glass.is_(True)),
            count_of(and_(sessions.c.approvals_required > 0, sessions.c.break_glass.is_not(True))),
            count_of(outcome == "live"),
            count_of(outcome == "ended"),
            count_of(outcome == "expired"),
            count_of(outcome == "revoked"),
            approvers,
            actions,
        ).select_from(sessions)
    ).one()
    total, agents, break_glass, approved, live, ended, expired, revoked, approver_count, action_count = (int(v) for v in totals)
    return LogSummary(total, agents, approved, approver_count, break_glass, action_count, live, ended, expired, revoked)


def _sessions(account_id: int, query: LogQuery, *, limit: int, offset: int = 0, after: tuple[datetime, str] | None = None) -> Select[*tuple[Any, ...]]:
    """`limit` of the period's sessions, newest first (ties broken by id, so pages never
    overlap), from `offset` or after the keyset `after` (started_at, id). Plain columns, not
    entities: no relationship loading rides along.

    The page's session ids are chosen first from `ix_sessions_account_period` alone, and only
    those are joined to their rows, requests and customer users. Joined first and sorted
    after (the earlier form), a busy account's page read every session of the period with
    its request and customer user whenever PostgreSQL used a generic plan."""
    keys = select(ImpersonationSession.id).where(*_in_period(account_id, query))
    if after is not None:
        started, session_id = after
        keys = keys.where(
            or_(
                ImpersonationSession.started_at < started,
                and_(ImpersonationSession.started_at == started, ImpersonationSession.id < session_id),
            )
        )
    page = keys.order_by(ImpersonationSession.started_at.desc(), ImpersonationSession.id.desc()).offset(offset).limit(limit)
    return (
        select(
            ImpersonationSession.id.label("session_id"),
            ImpersonationSession.started_at,
            ImpersonationSession.expires_at,
            ImpersonationSession.ended_at,
            ImpersonationSession.agent_slack_id,
            ImpersonationRequest.id.label("request_id"),
            ImpersonationRequest.state,
            ImpersonationRequest.agent_email,
            ImpersonationRequest.agent_role,
            ImpersonationRequest.reason,
            ImpersonationRequest.justification,
            ImpersonationRequest.ticket,
            ImpersonationRequest.scope,
            ImpersonationRequest.approvals_required,
            ImpersonationRequest.break_glass,
            CustomerUser.external_id.label("customer_user"),
            CustomerUser.name.label("customer_user_name"),
            CustomerUser.email.label("customer_user_email"),
            CustomerUser.erased_at.label("customer_user_erased_at"),
        )
        .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
        .join(CustomerUser, CustomerUser.id == ImpersonationRequest.customer_user_id)
        .where(ImpersonationSession.id.in_(page))
        .order_by(ImpersonationSession.started_at.desc(), ImpersonationSession.id.desc())
    )


def _entries(db: Session, rows: Sequence[Any], *, now: datetime) -> Iterator[SessionEntry]:
    """Rows of `_sessions` with their approvers and write-action counts: two queries per batch."""
    if not rows:
        return
    request_ids = [row.request_id for row in rows]
    session_ids = [row.session_id for row in rows]
    approvers: dict[str, list[Approver]] = {}
    for subject_id, slack_id, identity in db.execute(
        select(Approval.subject_id, Approval.approver_slack_id, Approval.approver_identity)
        .where(Approval.subject_id.in_(request_ids), Approval.decision == ApprovalDecision.APPROVE.value)
        .order_by(Approval.decided_at, Approval.id)
    ):
        # approver_identity is "email:…", "grid:…" or "slack:…" (bot.domain.identity.Identity.key)
        name = identity.removeprefix("email:") if identity.startswith("email:") else slack_id
        approvers.setdefault(subject_id, []).append(Approver(slack_id, name))
    actions = dict(
        db.execute(
            select(AuditEvent.session_id, func.count())
            .where(AuditEvent.session_id.in_(session_ids), AuditEvent.type == _WRITE_ACTION)
            .group_by(AuditEvent.session_id)
        ).all()
    )
    for row in rows:
        outcome = _outcome_of(row.state, row.expires_at, now)
        yield SessionEntry(
            session_id=row.session_id,
            request_id=row.request_id,
            agent_slack_id=row.agent_slack_id,
            agent_email=row.agent_email,
            agent_role=row.agent_role,
            # an erased person's row keeps a stand-in id; name, e-mail and reasons hold ERASED
            customer_user=personal.ERASED if row.customer_user_erased_at else row.customer_user,
            customer_user_name=row.customer_user_name,
            customer_user_email=row.customer_user_email,
            reason=row.reason,
            justification=row.justification,
            ticket=row.ticket,
            scope=row.scope,
            started_at=row.started_at,
            ended_at=row.ended_at or (row.expires_at if outcome == "expired" else None),
            outcome=outcome,
            approvers=tuple(approvers.get(row.request_id, ())),
            approvals_required=row.approvals_required or 0,
            break_glass=bool(row.break_glass),
            write_actions=int(actions.get(row.session_id, 0)),
        )


def _outcome_of(state: str, expires_at: datetime, now: datetime) -> str:
    if state == RequestState.ACTIVE.value:
        return "live" if now < expires_at else "expired"
    return state


def iter_entries(db: Session, account_id: int, query: LogQuery, *, now: datetime, batch: int = 500) -> Iterator[SessionEntry]:
    """Every session of the period, newest first, read in keyset batches of `batch`: an
    export of any size holds one batch in memory at a time, and no cursor stays open
    between batches."""
    last: tuple[datetime, str] | None = None
    while True:
        rows = db.execute(_sessions(account_id, query, limit=batch, after=last)).all()
        if not rows:
            return
        yield from _entries(db, rows, now=now)
        if len(rows) < batch:
            return
        last = (rows[-1].started_at, rows[-1].session_id)
