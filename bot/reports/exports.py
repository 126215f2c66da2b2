"""The audit log's exports as files (bot.domain.exports gathers and audits them): one
account's sessions as CSV or JSON, the customer-facing access report as HTML or Markdown,
and the events as JSON Lines. The content is a generator of byte chunks, produced as the
sessions are read, so memory stays flat however large the export is."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.domain.exports import AccessExport, ChainStatement, EventsExport, ExportFormat
from bot.domain.log_query import SessionEntry
from bot.reports.templates import ENVIRONMENT, RawMarkdown, csv_cell

#: bytes gathered before a chunk is handed on (a Slack upload or a file write)
CHUNK_BYTES = 64 * 1024

MEDIA_TYPES: dict[ExportFormat, str] = {
    ExportFormat.CSV: "text/csv",
    ExportFormat.JSON: "application/json",
    ExportFormat.HTML: "text/html",
    ExportFormat.MARKDOWN: "text/markdown",
    ExportFormat.JSONL: "application/jsonl",
}


@dataclass(frozen=True)
class ExportFile:
    filename: str
    media_type: str
    #: a one-line description (the Slack file title)
    title: str
    chunks: Iterator[bytes]


def access_file(export: AccessExport) -> ExportFile:
    """One account's sessions in the format the export was asked (and audited) in."""
    render = {
        ExportFormat.CSV: _csv,
        ExportFormat.JSON: _json,
        ExportFormat.HTML: _html,
        ExportFormat.MARKDOWN: _markdown,
    }[export.format]
    query = export.query
    stem = f"impersonation-log_{query.account}_{query.since:%Y%m%d}-{query.until:%Y%m%d}"
    title = f"Impersonation log: {export.account_name} ({query.account}), {query.period}"
    return ExportFile(f"{stem}.{export.format.value}", MEDIA_TYPES[export.format], title, _buffered(render(export, export.entries())))


def events_file(export: EventsExport) -> ExportFile:
    filename = f"audit-events_{export.scope}_{export.generated_at:%Y%m%dT%H%M%SZ}.jsonl"
    return ExportFile(filename, MEDIA_TYPES[ExportFormat.JSONL], f"Audit events ({export.scope})", _buffered(export.lines))


def intro(export: AccessExport) -> str:
    """The sentence the customer reads first (Access Transparency's "who, when, why")."""
    s = export.summary
    period = export.query.period
    opening = f"In {period}" if period.startswith("the last") else period[0].upper() + period[1:]
    whose = f"{export.account_name}'s account"
    if s.sessions == 0:
        return f"{opening}, none of our staff accessed {whose}."
    staff = "1 member of our staff" if s.agents == 1 else f"{s.agents} of our staff"
    times = "1 occasion" if s.sessions == 1 else f"{s.sessions} occasions"
    return f"{opening}, {staff} accessed {whose} on {times}."


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


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


def _csv(export: AccessExport, entries: Iterable[SessionEntry]) -> Iterator[str]:
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


def chain_dict(chain: ChainStatement) -> dict[str, Any]:
    problem = chain.verification.problem
    return {
        "verified_at": _time(chain.verified_at),
        "events": chain.verification.events,
        "intact": problem is None,
        "first_bad_seq": problem.seq if problem else None,
        "problem": problem.reason if problem else None,
        "checkpoints_checked": chain.verification.checkpoints,
        "signed_checkpoint": json.loads(chain.checkpoint.to_json()) if chain.checkpoint else None,
        "public_keys": chain.jwks_url,
    }


def _json(export: AccessExport, entries: Iterable[SessionEntry]) -> Iterator[str]:
    s = export.summary
    head = {
        "format": "impersonation-bot access export v1",
        "account": {"id": export.query.account, "name": export.account_name},
        "period": {
            "since": _time(export.query.since),
            "until": _time(export.query.until),
            "agent": export.query.agent,
            "label": export.query.period,
        },
        "generated_at": _time(export.generated_at),
        "summary": {
            "sessions": s.sessions,
            "agents": s.agents,
            "approved_sessions": s.approved_sessions,
            "approvers": s.approvers,
            "break_glass": s.break_glass,
            "write_actions": s.write_actions,
            "outcomes": s.outcomes,
        },
        "chain": chain_dict(export.chain) if export.chain else None,
    }
    # The object is written by hand around the sessions array so that it streams: all of it
    # but "sessions" first, then one session at a time.
    opening = json.dumps(head, ensure_ascii=False, indent=1)
    yield opening[:-2] + ',\n "sessions": ['
    for index, entry in enumerate(entries):
        yield ("\n  " if index == 0 else ",\n  ") + json.dumps(entry_dict(entry), ensure_ascii=False)
    yield "\n ]\n}\n"


# HTML and Markdown ------------------------------------------------------------------------------


def _context(export: AccessExport, entries: Iterable[SessionEntry]) -> dict[str, Any]:
    chain = export.chain
    return {
        "report": export,
        "intro": intro(export),
        "query": export.query,
        "summary": export.summary,
        "sessions": entries,
        "chain": chain,
        "problem": chain.verification.problem if chain else None,
        "checkpoint_json": RawMarkdown(chain.checkpoint.to_json()) if chain and chain.checkpoint else None,
    }


def _html(export: AccessExport, entries: Iterable[SessionEntry]) -> Iterator[str]:
    return ENVIRONMENT.get_template("access_report.html.j2").generate(**_context(export, entries))


def _markdown(export: AccessExport, entries: Iterable[SessionEntry]) -> Iterator[str]:
    return ENVIRONMENT.get_template("access_report.md.j2").generate(**_context(export, entries))
