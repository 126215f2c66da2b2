"""Exports of the audit log: one account's sessions as CSV or JSON (from
Slack's Export buttons and the CLI), the customer-facing access report as HTML or Markdown,
and the raw hash-chained events as JSON Lines for auditors (CLI only).

Every export is audited (`log.exported`, with the query and the format) and committed before
the first byte is produced, so no export leaves unrecorded. The content is a generator of
byte chunks reading the database in keyset batches (bot.domain.log_query.iter_entries, and
batches of events by `seq`): memory stays flat however large the account's history is.

Escaping, per format:
- CSV: a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
  `'`, so a spreadsheet shows it as text instead of running it as a formula (OWASP "CSV
  Injection"); the csv module quotes separators, quotes and line breaks.
- HTML: Jinja2 with autoescape on; the page also carries a Content-Security-Policy that
  forbids scripts and remote content, in case it is opened from a mail or a shared drive.
- Markdown: every value is passed through `markdown_text` by the environment itself
  (`finalize`), so a template cannot forget it: line breaks become spaces (a value never
  starts a heading, list or table row), `&`, `<` and `>` become entities (no raw HTML,
  no autolinks), and Markdown punctuation is backslash-escaped (no links, images or
  emphasis, and `|` cannot split a table cell).
- JSON: the json module.
"""
from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import AuditEvent, AuditHead
from bot.domain import audit, directory, personal
from bot.domain.audit import Actor, EventDraft, canonical_json
from bot.domain.checkpoints import Checkpoint, LogVerification
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.log_query import (
    REFUSED_MESSAGE,
    LogQuery,
    LogRefused,
    LogSummary,
    QueryError,
    SessionEntry,
    UnknownAccount,
    authorise,
    iter_entries,
    parse_token,
    summarise,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
#: bytes gathered before a chunk is handed on (a Slack upload or a file write)
CHUNK_BYTES = 64 * 1024
#: events read per query for the JSON Lines export
EVENT_BATCH = 2000


class ExportFormat(str, enum.Enum):
    CSV = "csv"
    JSON = "json"
    HTML = "html"
    MARKDOWN = "md"
    #: the raw audit events, one canonical JSON object per line (docs/audit.md)
    JSONL = "jsonl"


MEDIA_TYPES: dict[ExportFormat, str] = {
    ExportFormat.CSV: "text/csv",
    ExportFormat.JSON: "application/json",
    ExportFormat.HTML: "text/html",
    ExportFormat.MARKDOWN: "text/markdown",
    ExportFormat.JSONL: "application/jsonl",
}
#: what the Export buttons in Slack offer (the access report is the CLI's)
SLACK_FORMATS = (ExportFormat.CSV, ExportFormat.JSON)

OUTCOME_WORDS = {
    "live": "still open",
    "ended": "ended by the staff member",
    "expired": "expired at its time limit",
    "revoked": "revoked by security",
}
GRANTED_WORDS = {
    "policy": "policy (no approval needed)",
    "approval": "approved by",
    "break_glass": "emergency access (break-glass), reviewed by security",
}


@dataclass(frozen=True)
class ExportFile:
    filename: str
    media_type: str
    #: a one-line description (the Slack file title)
    title: str
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class ChainStatement:
    """What the access report says about the log's integrity: the verification run just
    before the export, and a checkpoint of the head signed at that moment, which the customer
    can keep and check later against the public keys (docs/audit.md)."""

    verified_at: datetime
    verification: LogVerification
    checkpoint: Checkpoint | None
    jwks_url: str | None

    def as_dict(self) -> dict[str, Any]:
        problem = self.verification.problem
        return {
            "verified_at": _time(self.verified_at),
            "events": self.verification.events,
            "intact": problem is None,
            "first_bad_seq": problem.seq if problem else None,
            "problem": problem.reason if problem else None,
            "checkpoints_checked": self.verification.checkpoints,
            "signed_checkpoint": json.loads(self.checkpoint.to_json()) if self.checkpoint else None,
            "public_keys": self.jwks_url,
        }


# ------------------------------------------------------------------------------ entry points


def slack_export(
    ctx: DomainContext, requester_slack_id: str, token: object, fmt: ExportFormat, *, now: datetime | None = None
) -> ExportFile | LogRefused | QueryError | UnknownAccount:
    """An Export button: re-authorised at the click (`can_view_log` now), then exported."""
    now = now or utcnow()
    parsed = parse_token(token)
    attempt: dict[str, Any] = {"export": fmt.value}
    attempt.update({"query": parsed[0].details()} if parsed else {"text": str(token)[:300]})
    viewer = authorise(ctx, requester_slack_id, attempt=attempt, account=parsed[0].account if parsed else None, now=now)
    if not viewer.allowed:
        return LogRefused(REFUSED_MESSAGE)
    if parsed is None or fmt not in SLACK_FORMATS:
        return QueryError("that export no longer makes sense; run the command again")
    return access_export(ctx.sessions, parsed[0], fmt, actor=viewer.actor, via="slack", now=now)


def access_export(
    sessions: sessionmaker[Session],
    query: LogQuery,
    fmt: ExportFormat,
    *,
    actor: Actor,
    via: str,
    chain: ChainStatement | None = None,
    now: datetime | None = None,
) -> ExportFile | UnknownAccount:
    """One account's sessions in `query`'s period, in `fmt` (CSV, JSON, HTML or Markdown).
    `log.exported` is committed here; the returned chunks read the sessions lazily."""
    if fmt is ExportFormat.JSONL:
        raise ValueError("the JSON Lines export is of events: use events_export")
    now = now or utcnow()
    with sessions() as db, db.begin():
        account = directory.find_account(db, query.account)
        summary = summarise(db, account.id, query, now=now) if account is not None else None
        audit.append(
            db,
            EventDraft(
                type="log.exported",
                actor=actor,
                account=query.account,
                details={
                    "query": query.details(),
                    "format": fmt.value,
                    "via": via,
                    "sessions": summary.sessions if summary else 0,
                    "known_account": account is not None,
                },
            ),
            now=now,
        )
        account_id, account_name = (account.id, account.name) if account is not None else (0, "")
    if summary is None:
        return UnknownAccount(query.account)
    report = _Report(query, account_id, account_name, summary, now, chain)

    def entries() -> Iterator[SessionEntry]:
        with sessions() as db:
            yield from iter_entries(db, account_id, query, now=now)

    render = {
        ExportFormat.CSV: _csv,
        ExportFormat.JSON: _json,
        ExportFormat.HTML: _html,
        ExportFormat.MARKDOWN: _markdown,
    }[fmt]
    stem = f"impersonation-log_{query.account}_{query.since:%Y%m%d}-{query.until:%Y%m%d}"
    title = f"Impersonation log: {account_name} ({query.account}), {query.period}"
    return ExportFile(f"{stem}.{fmt.value}", MEDIA_TYPES[fmt], title, _buffered(render(report, entries())))


def events_export(
    sessions: sessionmaker[Session],
    *,
    actor: Actor,
    account: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> ExportFile:
    """The audit events themselves, one per line in `seq` order, each the exact object that is
    hashed plus its `hash` (docs/audit.md). Without filters this is the whole chain, which
    an auditor verifies with the public key alone; with `account` (and a period) each line
    still verifies on its own, but the links between lines skip other accounts' events.
    Reads up to the head as it was when the export began (this export's own event included)."""
    now = now or utcnow()
    with sessions() as db, db.begin():
        audit.append(
            db,
            EventDraft(
                type="log.exported",
                actor=actor,
                account=account,
                details={
                    "format": ExportFormat.JSONL.value,
                    "via": "cli",
                    "account": account,
                    "since": audit.format_time(since) if since else None,
                    "until": audit.format_time(until) if until else None,
                },
            ),
            now=now,
        )
    with sessions() as db:
        head = db.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one()

    def lines() -> Iterator[str]:
        columns = [c for c in AuditEvent.__table__.columns]
        after = 0
        while after < head:
            statement = select(*columns).where(AuditEvent.seq > after, AuditEvent.seq <= head)
            if account is not None:
                statement = statement.where(AuditEvent.account == account)
            if since is not None:
                statement = statement.where(AuditEvent.occurred_at >= since)
            if until is not None:
                statement = statement.where(AuditEvent.occurred_at < until)
            with sessions() as db:
                rows = db.execute(statement.order_by(AuditEvent.seq).limit(EVENT_BATCH)).all()
                values = personal.resolve(
                    db, (ref for row in rows for ref in personal.refs_in(row.customer_user, json.loads(row.details)))
                )
            if not rows:
                return
            for row in rows:
                yield event_line(row._mapping, values) + "\n"
            after = rows[-1].seq

    scope = account or "all"
    return ExportFile(f"audit-events_{scope}_{now:%Y%m%dT%H%M%SZ}.jsonl", MEDIA_TYPES[ExportFormat.JSONL], f"Audit events ({scope})", _buffered(lines()))


def event_line(row: Any, values: dict[str, str] | None = None) -> str:
    """One event as exported: the object that is hashed (bot.domain.audit.encode_event) with its
    `hash` added, as RFC 8785 JSON. Remove `hash`, encode the rest as the event was (RFC 8785
    when it has the member `"encoding":2`, else the legacy encoding), and SHA-256 of the bytes
    is `hash` again. An event holding references to personal values also gets `personal`, each
    reference's value (personal.ERASED once erased) from `values` (personal.resolve): remove
    it too before hashing (docs/audit.md, docs/privacy.md)."""
    document = json.loads(
        audit.encode_event(
            seq=row["seq"],
            occurred_at=audit.format_time(row["occurred_at"]),
            type=row["type"],
            actor_slack_id=row["actor_slack_id"],
            actor_email=row["actor_email"],
            actor_role=row["actor_role"],
            account=row["account"],
            customer_user=row["customer_user"],
            request_id=row["request_id"],
            session_id=row["session_id"],
            details=row["details"],
            prev_hash=row["prev_hash"],
            encoding=row["encoding"],
        )
    )
    refs = personal.refs_in(document["customer_user"], document["details"])
    if refs:
        document["personal"] = {ref: (values or {}).get(ref, personal.ERASED) for ref in refs}
    document["hash"] = row["hash"]
    return canonical_json(document)


# ------------------------------------------------------------------------------ rendering


@dataclass(frozen=True)
class _Report:
    query: LogQuery
    account_id: int
    account_name: str
    summary: LogSummary
    generated_at: datetime
    chain: ChainStatement | None

    @property
    def intro(self) -> str:
        """The sentence the customer reads first (Access Transparency's "who, when, why")."""
        s = self.summary
        period = self.query.period
        opening = f"In {period}" if period.startswith("the last") else period[0].upper() + period[1:]
        whose = f"{self.account_name}'s account"
        if s.sessions == 0:
            return f"{opening}, none of our staff accessed {whose}."
        staff = "1 member of our staff" if s.agents == 1 else f"{s.agents} of our staff"
        times = "1 occasion" if s.sessions == 1 else f"{s.sessions} occasions"
        return f"{opening}, {staff} accessed {whose} on {times}."


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def _readable_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def _staff(entry: SessionEntry) -> str:
    return entry.agent_email or entry.agent_slack_id


def _buffered(pieces: Iterable[str]) -> Iterator[bytes]:
    buffer: list[bytes] = []
    size = 0
    for piece in pieces:
        data = piece.encode("utf-8")
        buffer.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


# CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "session_id", "started_at", "ended_at", "outcome", "agent_slack_id", "agent_email",
    "customer_user", "customer_user_name", "customer_user_email", "reason", "justification", "ticket", "scope",
    "granted_by", "approvers", "write_actions",
)
#: OWASP "CSV Injection": cells that a spreadsheet would read as a formula
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv(report: _Report, entries: Iterable[SessionEntry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line breaks

    def row(values: Iterable[object]) -> str:
        writer.writerow([csv_cell(v) for v in values])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield row(CSV_COLUMNS)
    for e in entries:
        yield row(
            (
                e.session_id, _time(e.started_at), _time(e.ended_at), e.outcome, e.agent_slack_id, e.agent_email,
                e.customer_user, e.customer_user_name, e.customer_user_email, e.reason, e.justification, e.ticket, e.scope,
                e.granted_by, "; ".join(a.name for a in e.approvers), e.write_actions,
            )
        )


# JSON -----------------------------------------------------------------------------------------


def entry_dict(e: SessionEntry) -> dict[str, Any]:
    return {
        "session_id": e.session_id,
        "request_id": e.request_id,
        "agent": {"slack_id": e.agent_slack_id, "email": e.agent_email, "role": e.agent_role},
        "customer_user": {"id": e.customer_user, "name": e.customer_user_name, "email": e.customer_user_email},
        "reason": e.reason,
        "justification": e.justification,
        "ticket": e.ticket,
        "scope": e.scope,
        "started_at": _time(e.started_at),
        "ended_at": _time(e.ended_at) or None,
        "outcome": e.outcome,
        "granted_by": e.granted_by,
        "approvers": [{"slack_id": a.slack_id, "name": a.name} for a in e.approvers],
        "write_actions": e.write_actions,
    }


def _json(report: _Report, entries: Iterable[SessionEntry]) -> Iterator[str]:
    s = report.summary
    head = {
        "format": "impersonation-bot access export v1",
        "account": {"id": report.query.account, "name": report.account_name},
        "period": {
            "since": _time(report.query.since),
            "until": _time(report.query.until),
            "agent": report.query.agent,
            "label": report.query.period,
        },
        "generated_at": _time(report.generated_at),
        "summary": {
            "sessions": s.sessions,
            "agents": s.agents,
            "approved_sessions": s.approved_sessions,
            "approvers": s.approvers,
            "break_glass": s.break_glass,
            "write_actions": s.write_actions,
            "outcomes": s.outcomes,
        },
        "chain": report.chain.as_dict() if report.chain else None,
    }
    # The object is written by hand around the sessions array so that it streams: all of it
    # but "sessions" first, then one session at a time.
    opening = json.dumps(head, ensure_ascii=False, indent=1)
    yield opening[:-2] + ',\n "sessions": ['
    for index, entry in enumerate(entries):
        yield ("\n  " if index == 0 else ",\n  ") + json.dumps(entry_dict(entry), ensure_ascii=False)
    yield "\n ]\n}\n"


# HTML and Markdown ------------------------------------------------------------------------------


class RawMarkdown(str):
    """Text of ours that goes into Markdown as it is (e.g. a checkpoint in a code block)."""


_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]|!~#")


def markdown_text(value: object) -> str:
    """Any value as inert Markdown inline text (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, RawMarkdown):
        return str(value)
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + char if char in _MARKDOWN_PUNCTUATION else char for char in text)


def _environment(*, markdown: bool) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=not markdown,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=markdown_text if markdown else None,
    )
    environment.filters["utc"] = _readable_time
    environment.filters["staff"] = _staff
    environment.globals.update(outcome_words=OUTCOME_WORDS, granted_words=GRANTED_WORDS)
    return environment


_HTML = _environment(markdown=False)
_MARKDOWN = _environment(markdown=True)


def _context(report: _Report, entries: Iterable[SessionEntry]) -> dict[str, Any]:
    chain = report.chain
    return {
        "report": report,
        "query": report.query,
        "summary": report.summary,
        "sessions": entries,
        "chain": chain,
        "problem": chain.verification.problem if chain else None,
        "checkpoint_json": RawMarkdown(chain.checkpoint.to_json()) if chain and chain.checkpoint else None,
    }


def _html(report: _Report, entries: Iterable[SessionEntry]) -> Iterator[str]:
    return _HTML.get_template("access_report.html.j2").generate(**_context(report, entries))


def _markdown(report: _Report, entries: Iterable[SessionEntry]) -> Iterator[str]:
    return _MARKDOWN.get_template("access_report.md.j2").generate(**_context(report, entries))
