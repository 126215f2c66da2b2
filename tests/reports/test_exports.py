"""The audit log's exports as files: CSV, JSON and the customer-facing access report in HTML
and Markdown, each escaped for its format."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from bot.domain.checkpoints import ChainProblem, LogVerification, make_checkpoint
from bot.domain.exports import ChainStatement, ExportFormat
from bot.domain.log_query import LogOptions
from bot.reports.exports import access_file
from tests.fakes.log_history import NOW, access_export_of, build_history, file_bytes, open_session

HOSTILE_REASON = '=HYPERLINK("http://evil.example") <script>alert(1)</script> [click](javascript:alert(1)) | *bold*\n# heading'
HOSTILE_TICKET = "@SUM(A1:A9)"


@pytest.fixture
def history(ctx, tmp_path):
    return build_history(ctx, tmp_path)


@pytest.fixture
def hostile(ctx, history):
    """A session whose reason and ticket try formula, HTML and Markdown injection."""
    return open_session(ctx, "UAGENT1", at=NOW - timedelta(days=4), reason=HOSTILE_REASON, ticket=HOSTILE_TICKET)


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_has_one_row_per_session_newest_first(ctx, history, hostile):
    export = access_file(access_export_of(ctx, ExportFormat.CSV))
    assert export.filename == "impersonation-log_acme_20251210-20260310.csv" and export.media_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(export.chunks).decode("utf-8"))))
    assert [r["session_id"] for r in rows] == [history.break_glass_live, history.revoked, history.approved_expired, history.ended, hostile]
    assert rows[3]["outcome"] == "ended" and rows[3]["write_actions"] == "2" and rows[3]["granted_by"] == "policy"
    assert rows[2]["approvers"] == "manager1@corp.example" and rows[2]["granted_by"] == "approval"
    assert rows[0]["ended_at"] == "" and rows[0]["granted_by"] == "break_glass"
    assert rows[4]["reason"] == "'" + HOSTILE_REASON and rows[4]["ticket"] == "'" + HOSTILE_TICKET


# --- JSON ------------------------------------------------------------------------------------------


def test_json_is_one_document_with_summary_and_sessions(ctx, history):
    document = json.loads(file_bytes(access_export_of(ctx, ExportFormat.JSON)))
    assert document["account"] == {"id": "acme", "name": "ACME Corp"}
    assert document["period"] == {"since": "2025-12-10T12:00:00Z", "until": "2026-03-10T12:00:00Z", "agent": None, "label": "the last 90 days"}
    assert document["summary"]["sessions"] == 4 and document["summary"]["outcomes"]["revoked"] == 1
    assert document["chain"] is None
    ended = document["sessions"][3]
    assert ended["session_id"] == history.ended and ended["customer_user"]["email"] == "bob@acme.example"
    assert ended["agent"] == {"slack_id": "UAGENT1", "email": "agent1@corp.example", "role": "support"}


def test_json_with_no_sessions_is_still_valid(ctx, history):
    document = json.loads(file_bytes(access_export_of(ctx, ExportFormat.JSON, LogOptions("initech"))))
    assert document["sessions"] == [] and document["summary"]["sessions"] == 0


# --- the access report -----------------------------------------------------------------------------


def test_the_report_opens_with_the_customers_sentence(ctx, history):
    markdown = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN)).decode()
    assert "In the last 90 days, 2 of our staff accessed ACME Corp's account on 4 occasions." in markdown
    html = file_bytes(access_export_of(ctx, ExportFormat.HTML)).decode()
    assert "In the last 90 days, 2 of our staff accessed ACME Corp&#39;s account on 4 occasions." in html
    single = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN, LogOptions("acme", since="2026-03-07", until="2026-03-07"))).decode()
    assert "Between 7 Mar 2026 and 7 Mar 2026, 1 member of our staff accessed ACME Corp's account on 1 occasion." in single
    none = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN, LogOptions("initech"))).decode()
    assert "In the last 90 days, none of our staff accessed Initech's account." in none


def test_the_report_lists_reasons_approvers_and_outcomes(ctx, history):
    markdown = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN)).decode()
    assert "approved by manager1@corp.example" in markdown and "approved by UMANAGER2" in markdown
    assert "emergency access (break-glass)" in markdown and "revoked by security" in markdown
    assert "Customer cannot see the invoice page" in markdown and "agent1@corp.example" in markdown


def test_html_escapes_user_text_and_forbids_scripts(ctx, hostile):
    html = file_bytes(access_export_of(ctx, ExportFormat.HTML)).decode()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "default-src 'none'" in html


def test_markdown_keeps_user_text_inert(ctx, hostile):
    markdown = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN)).decode()
    row = next(line for line in markdown.splitlines() if "HYPERLINK" in line)
    assert "<script>" not in row and "&lt;script&gt;" in row
    assert "\\[click\\](javascript:alert(1))" in row  # not a link
    assert "\\*bold\\*" in row and "\\| " in row  # no emphasis; the pipe does not split the cell
    assert "\\# heading" in row  # the line break became a space: no heading
    assert row.count(" | ") == 8  # nine cells, as in the header


def test_the_report_states_the_chain_verification_and_carries_a_signed_checkpoint(ctx, history, signing_key):
    with ctx.sessions() as db:
        checkpoint = make_checkpoint(db, signing_key, now=NOW)
    chain = ChainStatement(NOW, LogVerification(42, 3, checkpoint, None), checkpoint, "http://bot.test/.well-known/jwks.json")
    markdown = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN, chain=chain)).decode()
    assert "the whole chain was verified: 42 events, intact, and all 3 earlier signed checkpoints still match it" in markdown
    assert "```json\n" + checkpoint.to_json() + "\n```" in markdown  # raw: copy-paste verifies
    document = json.loads(file_bytes(access_export_of(ctx, ExportFormat.JSON, chain=chain)))
    assert document["chain"]["intact"] is True and document["chain"]["signed_checkpoint"] == json.loads(checkpoint.to_json())


def test_a_failed_verification_is_stated_plainly(ctx, history):
    chain = ChainStatement(NOW, LogVerification(6, 0, None, ChainProblem(7, "hash does not match the event's contents")), None, None)
    html = file_bytes(access_export_of(ctx, ExportFormat.HTML, chain=chain)).decode()
    assert "FAILED verification at event 7" in html
    markdown = file_bytes(access_export_of(ctx, ExportFormat.MARKDOWN, chain=chain)).decode()
    assert "FAILED verification at event 7: hash does not match the event's contents" in markdown
