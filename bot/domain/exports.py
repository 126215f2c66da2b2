"""Exports of the audit log: one account's sessions (from Slack's Export buttons and the CLI;
CSV, JSON, or the customer-facing access report as HTML or Markdown) and the raw
hash-chained events as JSON Lines for auditors (CLI only).

Every export is audited (`log.exported`, with the query and the format) and committed before
the first byte is produced, so no export leaves unrecorded. What is returned is data: the
sessions and the events are iterators reading the database in keyset batches
(bot.domain.log_query.iter_entries, and batches of events by `seq`), so memory stays flat
however large the account's history is. bot/reports renders them into files.
"""
from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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

#: events read per query for the JSON Lines export
EVENT_BATCH = 2000


class ExportFormat(str, enum.Enum):
    CSV = "csv"
    JSON = "json"
    HTML = "html"
    MARKDOWN = "md"
    #: the raw audit events, one canonical JSON object per line (docs/audit.md)
    JSONL = "jsonl"


#: what the Export buttons in Slack offer (the access report is the CLI's)
SLACK_FORMATS = (ExportFormat.CSV, ExportFormat.JSON)

@dataclass(frozen=True)
class ChainStatement:
    """What the access report says about the log's integrity: the verification run just
    before the export, and a checkpoint of the head signed at that moment, which the customer
    can keep and check later against the public keys (docs/audit.md)."""

    verified_at: datetime
    verification: LogVerification
    checkpoint: Checkpoint | None
    jwks_url: str | None


@dataclass(frozen=True)
class AccessExport:
    """One account's sessions in a period, as exported: what the file says about them, and
    the sessions themselves, read lazily in keyset batches each time `entries()` is called."""

    query: LogQuery
    format: ExportFormat
    account_name: str
    summary: LogSummary
    generated_at: datetime
    chain: ChainStatement | None
    entries: Callable[[], Iterator[SessionEntry]]


@dataclass(frozen=True)
class EventsExport:
    """The audit events themselves, as exported: one line (`event_line`) per event, read
    lazily in batches by `seq`."""

    #: the account exported, or "all"
    scope: str
    generated_at: datetime
    lines: Iterator[str]


# ------------------------------------------------------------------------------ entry points


def slack_export(
    ctx: DomainContext, requester_slack_id: str, token: object, fmt: ExportFormat, *, now: datetime | None = None
) -> AccessExport | LogRefused | QueryError | UnknownAccount:
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
) -> AccessExport | UnknownAccount:
    """One account's sessions in `query`'s period, to be rendered in `fmt` (CSV, JSON, HTML or
    Markdown). `log.exported` is committed here; the returned entries read the sessions lazily."""
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

    def entries() -> Iterator[SessionEntry]:
        with sessions() as db:
            yield from iter_entries(db, account_id, query, now=now)

    return AccessExport(query, fmt, account_name, summary, now, chain, entries)


def events_export(
    sessions: sessionmaker[Session],
    *,
    actor: Actor,
    account: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> EventsExport:
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

    return EventsExport(account or "all", now, lines())


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
