"""Exports: CSV, JSON, the customer-facing access report in HTML and
Markdown, and the raw events as JSON Lines; each audited before its first byte, each escaped
for its format, each streamed."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import event

from bot.domain import exports, personal
from bot.domain.audit import Actor
from bot.domain.checkpoints import ChainProblem, LogVerification, make_checkpoint
from bot.domain.exports import ChainStatement, ExportFormat, access_export, csv_cell, events_export, markdown_text, slack_export
from bot.domain.log_query import LogRefused, QueryError, UnknownAccount, parse_query
from tests.fakes.log_history import NOW, build_history, open_session
from tests.slack.conftest import audit_events

CLI = Actor(email="auditor@corp.example", role="cli")
HOSTILE_REASON = '=HYPERLINK("http://evil.example") <script>alert(1)</script> [click](javascript:alert(1)) | *bold*\n# heading'
HOSTILE_TICKET = "@SUM(A1:A9)"


def content(export) -> bytes:
    return b"".join(export.chunks)


def export_of(ctx, fmt, text="account:acme", **kwargs):
    query = parse_query(text, now=NOW)
    return access_export(ctx.sessions, query, fmt, actor=CLI, via="cli", now=NOW, **kwargs)


@pytest.fixture
def history(ctx, tmp_path):
    return build_history(ctx, tmp_path)


@pytest.fixture
def hostile(ctx, history):
    """A session whose reason and ticket try formula, HTML and Markdown injection."""
    return open_session(ctx, "UAGENT1", at=NOW - timedelta(days=4), reason=HOSTILE_REASON, ticket=HOSTILE_TICKET)


# --- CSV -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=b", "a=b"), (None, ""), (3, "3")],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(value, cell):
    assert csv_cell(value) == cell


def test_csv_has_one_row_per_session_newest_first(ctx, history, hostile):
    export = export_of(ctx, ExportFormat.CSV)
    assert export.filename == "impersonation-log_acme_20251210-20260310.csv" and export.media_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(content(export).decode("utf-8"))))
    assert [r["session_id"] for r in rows] == [history.break_glass_live, history.revoked, history.approved_expired, history.ended, hostile]
    assert rows[3]["outcome"] == "ended" and rows[3]["write_actions"] == "2" and rows[3]["granted_by"] == "policy"
    assert rows[2]["approvers"] == "manager1@corp.example" and rows[2]["granted_by"] == "approval"
    assert rows[0]["ended_at"] == "" and rows[0]["granted_by"] == "break_glass"
    assert rows[4]["reason"] == "'" + HOSTILE_REASON and rows[4]["ticket"] == "'" + HOSTILE_TICKET


# --- JSON ------------------------------------------------------------------------------------------


def test_json_is_one_document_with_summary_and_sessions(ctx, history):
    document = json.loads(content(export_of(ctx, ExportFormat.JSON)))
    assert document["account"] == {"id": "acme", "name": "ACME Corp"}
    assert document["period"] == {"since": "2025-12-10T12:00:00Z", "until": "2026-03-10T12:00:00Z", "agent": None, "label": "the last 90 days"}
    assert document["summary"]["sessions"] == 4 and document["summary"]["outcomes"]["revoked"] == 1
    assert document["chain"] is None
    ended = document["sessions"][3]
    assert ended["session_id"] == history.ended and ended["customer_user"]["email"] == "bob@acme.example"
    assert ended["agent"] == {"slack_id": "UAGENT1", "email": "agent1@corp.example", "role": "support"}


def test_json_with_no_sessions_is_still_valid(ctx, history):
    document = json.loads(content(export_of(ctx, ExportFormat.JSON, "account:initech")))
    assert document["sessions"] == [] and document["summary"]["sessions"] == 0


# --- the access report -----------------------------------------------------------------------------


def test_the_report_opens_with_the_customers_sentence(ctx, history):
    markdown = content(export_of(ctx, ExportFormat.MARKDOWN)).decode()
    assert "In the last 90 days, 2 of our staff accessed ACME Corp's account on 4 occasions." in markdown
    html = content(export_of(ctx, ExportFormat.HTML)).decode()
    assert "In the last 90 days, 2 of our staff accessed ACME Corp&#39;s account on 4 occasions." in html
    single = content(export_of(ctx, ExportFormat.MARKDOWN, "account:acme since:2026-03-07 until:2026-03-07")).decode()
    assert "Between 7 Mar 2026 and 7 Mar 2026, 1 member of our staff accessed ACME Corp's account on 1 occasion." in single
    none = content(export_of(ctx, ExportFormat.MARKDOWN, "account:initech")).decode()
    assert "In the last 90 days, none of our staff accessed Initech's account." in none


def test_the_report_lists_reasons_approvers_and_outcomes(ctx, history):
    markdown = content(export_of(ctx, ExportFormat.MARKDOWN)).decode()
    assert "approved by manager1@corp.example" in markdown and "approved by UMANAGER2" in markdown
    assert "emergency access (break-glass)" in markdown and "revoked by security" in markdown
    assert "Customer cannot see the invoice page" in markdown and "agent1@corp.example" in markdown


def test_html_escapes_user_text_and_forbids_scripts(ctx, hostile):
    html = content(export_of(ctx, ExportFormat.HTML)).decode()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "default-src 'none'" in html


def test_markdown_keeps_user_text_inert(ctx, hostile):
    markdown = content(export_of(ctx, ExportFormat.MARKDOWN)).decode()
    row = next(line for line in markdown.splitlines() if "HYPERLINK" in line)
    assert "<script>" not in row and "&lt;script&gt;" in row
    assert "\\[click\\](javascript:alert(1))" in row  # not a link
    assert "\\*bold\\*" in row and "\\| " in row  # no emphasis; the pipe does not split the cell
    assert "\\# heading" in row  # the line break became a space: no heading
    assert row.count(" | ") == 8  # nine cells, as in the header


@pytest.mark.parametrize(
    ("value", "inert"),
    [("a|b", "a\\|b"), ("<@U1>", "&lt;@U1&gt;"), ("x\n- y", "x - y"), ("![i](http://x)", "\\!\\[i\\](http://x)"), ("`code`", "\\`code\\`"), (None, "")],
)
def test_markdown_text(value, inert):
    assert markdown_text(value) == inert


def test_the_report_states_the_chain_verification_and_carries_a_signed_checkpoint(ctx, history, signing_key):
    with ctx.sessions() as db:
        checkpoint = make_checkpoint(db, signing_key, now=NOW)
    chain = ChainStatement(NOW, LogVerification(42, 3, checkpoint, None), checkpoint, "http://bot.test/.well-known/jwks.json")
    markdown = content(export_of(ctx, ExportFormat.MARKDOWN, chain=chain)).decode()
    assert "the whole chain was verified: 42 events, intact, and all 3 earlier signed checkpoints still match it" in markdown
    assert "```json\n" + checkpoint.to_json() + "\n```" in markdown  # raw: copy-paste verifies
    document = json.loads(content(export_of(ctx, ExportFormat.JSON, chain=chain)))
    assert document["chain"]["intact"] is True and document["chain"]["signed_checkpoint"] == json.loads(checkpoint.to_json())


def test_a_failed_verification_is_stated_plainly(ctx, history):
    chain = ChainStatement(NOW, LogVerification(6, 0, None, ChainProblem(7, "hash does not match the event's contents")), None, None)
    html = content(export_of(ctx, ExportFormat.HTML, chain=chain)).decode()
    assert "FAILED verification at event 7" in html
    markdown = content(export_of(ctx, ExportFormat.MARKDOWN, chain=chain)).decode()
    assert "FAILED verification at event 7: hash does not match the event's contents" in markdown


# --- auditing and streaming ------------------------------------------------------------------------


def test_the_export_is_audited_before_its_first_byte(ctx, session_factory, history):
    export = export_of(ctx, ExportFormat.CSV)
    (exported,) = audit_events(session_factory, "log.exported")  # nothing read yet
    assert (exported.actor_email, exported.actor_role, exported.account) == ("auditor@corp.example", "cli", "acme")
    details = json.loads(exported.details)
    assert (details["format"], details["via"], details["sessions"]) == ("csv", "cli", 4)
    assert details["query"]["since"] == "2025-12-10T12:00:00.000000Z"
    assert content(export)


def test_an_unknown_account_exports_nothing_but_the_attempt_is_audited(ctx, session_factory, history):
    assert export_of(ctx, ExportFormat.CSV, "account:nowhere") == UnknownAccount("nowhere")
    (exported,) = audit_events(session_factory, "log.exported")
    assert json.loads(exported.details)["known_account"] is False


def test_exports_stream_in_batches(ctx, engine, history, monkeypatch):
    """However many sessions, each query reads at most one batch, and the output comes in
    chunks: nothing holds the whole export."""
    for n in range(7):
        open_session(ctx, "UAGENT1", at=NOW - timedelta(days=10 + n))
    monkeypatch.setattr(exports, "CHUNK_BYTES", 200)
    whole_batches = exports.iter_entries
    monkeypatch.setattr(exports, "iter_entries", lambda db, account_id, query, now: whole_batches(db, account_id, query, now=now, batch=3))
    pages: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "FROM sessions JOIN requests" in statement and "LIMIT" in statement:
            pages.append(statement)

    export = export_of(ctx, ExportFormat.CSV)
    event.listen(engine, "before_cursor_execute", record)
    try:
        chunks = list(export.chunks)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(pages) == 4  # 11 sessions in batches of 3
    assert len(chunks) > 1
    assert len(list(csv.reader(io.StringIO(b"".join(chunks).decode())))) == 12


# --- from Slack --------------------------------------------------------------------------------------


def test_a_slack_export_is_reauthorised_at_the_click(ctx, session_factory, history):
    token = parse_query("account:acme", now=NOW).token()
    assert isinstance(slack_export(ctx, "UAGENT1", token, ExportFormat.CSV, now=NOW), LogRefused)
    (refused,) = audit_events(session_factory, "log.refused")
    assert json.loads(refused.details)["export"] == "csv"
    export = slack_export(ctx, "USECURITY1", token, ExportFormat.JSON, now=NOW)
    assert export.filename.endswith(".json") and json.loads(content(export))["summary"]["sessions"] == 4
    (exported,) = audit_events(session_factory, "log.exported")
    assert (exported.actor_slack_id, json.loads(exported.details)["via"]) == ("USECURITY1", "slack")
    assert isinstance(slack_export(ctx, "USECURITY1", "forged", ExportFormat.CSV, now=NOW), QueryError)
    assert isinstance(slack_export(ctx, "USECURITY1", token, ExportFormat.HTML, now=NOW), QueryError)


# --- the events, for auditors --------------------------------------------------------------------------


def test_each_exported_event_rehashes_to_its_hash_and_the_lines_form_the_chain(ctx, session_factory, history):
    lines = content(events_export(session_factory, actor=CLI, now=NOW)).decode().splitlines()
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
    lines = content(events_export(session_factory, actor=CLI, account="globex", now=NOW)).decode().splitlines()
    assert lines and {json.loads(line)["account"] for line in lines} == {"globex"}
