"""Exports of the audit log: each audited before its first byte, each streamed in batches,
re-authorised at a Slack click; the raw events as JSON Lines, each rehashing to its hash."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import event

from bot.domain import exports, personal
from bot.domain.exports import AccessExport, ExportFormat, events_export, slack_export
from bot.domain.log_query import LogOptions, LogRefused, QueryError, UnknownAccount, resolve
from bot.reports import exports as export_files
from tests.fakes.log_history import CLI, NOW, access_export_of, build_history, file_bytes, open_session
from tests.slack.conftest import audit_events


@pytest.fixture
def history(ctx, tmp_path):
    return build_history(ctx, tmp_path)


# --- auditing and streaming ------------------------------------------------------------------------


def test_the_export_is_audited_before_its_first_byte(ctx, session_factory, history):
    export = access_export_of(ctx, ExportFormat.CSV)
    (exported,) = audit_events(session_factory, "log.exported")  # nothing read yet
    assert (exported.actor_email, exported.actor_role, exported.account) == ("auditor@corp.example", "cli", "acme")
    details = json.loads(exported.details)
    assert (details["format"], details["via"], details["sessions"]) == ("csv", "cli", 4)
    assert details["query"]["since"] == "2025-12-10T12:00:00.000000Z"
    assert file_bytes(export)


def test_an_unknown_account_exports_nothing_but_the_attempt_is_audited(ctx, session_factory, history):
    assert access_export_of(ctx, ExportFormat.CSV, LogOptions("nowhere")) == UnknownAccount("nowhere")
    (exported,) = audit_events(session_factory, "log.exported")
    assert json.loads(exported.details)["known_account"] is False


def test_exports_stream_in_batches(ctx, engine, history, monkeypatch):
    """However many sessions, each query reads at most one batch, and the output comes in
    chunks: nothing holds the whole export."""
    for n in range(7):
        open_session(ctx, "UAGENT1", at=NOW - timedelta(days=10 + n))
    monkeypatch.setattr(export_files, "CHUNK_BYTES", 200)
    whole_batches = exports.iter_entries
    monkeypatch.setattr(exports, "iter_entries", lambda db, account_id, query, now: whole_batches(db, account_id, query, now=now, batch=3))
    pages: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "FROM sessions JOIN requests" in statement and "LIMIT" in statement:
            pages.append(statement)

    export = access_export_of(ctx, ExportFormat.CSV)
    event.listen(engine, "before_cursor_execute", record)
    try:
        chunks = list(export_files.access_file(export).chunks)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(pages) == 4  # 11 sessions in batches of 3
    assert len(chunks) > 1
    assert len(list(csv.reader(io.StringIO(b"".join(chunks).decode())))) == 12


# --- from Slack --------------------------------------------------------------------------------------


def test_a_slack_export_is_reauthorised_at_the_click(ctx, session_factory, history):
    token = resolve(LogOptions("acme"), now=NOW).token()
    assert isinstance(slack_export(ctx, "UAGENT1", token, ExportFormat.CSV, now=NOW), LogRefused)
    (refused,) = audit_events(session_factory, "log.refused")
    assert json.loads(refused.details)["export"] == "csv"
    export = slack_export(ctx, "USECURITY1", token, ExportFormat.JSON, now=NOW)
    assert isinstance(export, AccessExport) and json.loads(file_bytes(export))["summary"]["sessions"] == 4
    (exported,) = audit_events(session_factory, "log.exported")
    assert (exported.actor_slack_id, json.loads(exported.details)["via"]) == ("USECURITY1", "slack")
    assert isinstance(slack_export(ctx, "USECURITY1", "forged", ExportFormat.CSV, now=NOW), QueryError)
    assert isinstance(slack_export(ctx, "USECURITY1", token, ExportFormat.HTML, now=NOW), QueryError)


# --- the events, for auditors --------------------------------------------------------------------------


def test_each_exported_event_rehashes_to_its_hash_and_the_lines_form_the_chain(ctx, session_factory, history):
    lines = "".join(events_export(session_factory, actor=CLI, now=NOW).lines).splitlines()
    previous = "0" * 64
    for number, line in enumerate(lines, start=1):
        document = json.loads(line)
        claimed = document.pop("hash")
        shown = document.pop("personal", {})
        # every reference the event holds is given with its value (none is erased here)
        assert set(shown) == {v for v in (document["customer_user"], *document["details"].values()) if personal.is_ref(v)}
        assert personal.ERASED not in shown.values()
        encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert hashlib.sha256(encoded).hexdigest() == claimed
        assert (document["seq"], document["prev_hash"]) == (number, previous)
        previous = claimed
    assert json.loads(lines[-1])["type"] == "log.exported"  # the export's own event is in it
    assert len(audit_events(session_factory)) == len(lines)


def test_an_account_events_export_holds_only_that_account(ctx, session_factory, history):
    lines = "".join(events_export(session_factory, actor=CLI, account="globex", now=NOW).lines).splitlines()
    assert lines and {json.loads(line)["account"] for line in lines} == {"globex"}
