"""An access review (bot.domain.digests.DigestReport) as a file: Markdown and HTML from the
report templates, or CSV, one row per figure."""
from __future__ import annotations

import csv
import io
from typing import Any

from bot.domain.digests import DigestReport
from bot.reports.templates import ENVIRONMENT, csv_cell, readable_utc

FORMATS = ("md", "html", "csv")
MEDIA_TYPES = {"md": "text/markdown", "html": "text/html", "csv": "text/csv"}


def render(report: DigestReport, fmt: str) -> str:
    if fmt == "md":
        return ENVIRONMENT.get_template("digest.md.j2").render(report=report)
    if fmt == "html":
        return ENVIRONMENT.get_template("digest.html.j2").render(report=report)
    if fmt == "csv":
        return render_csv(report)
    raise ValueError(f"unknown digest format {fmt!r}")


def render_csv(report: DigestReport) -> str:
    """One row per figure: section, key, value(s). Cells a spreadsheet would read as a formula
    are defused (templates.csv_cell, OWASP "CSV Injection")."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def row(*values: Any) -> None:
        writer.writerow([csv_cell(v) for v in values])

    row("section", "key", "value", "detail")
    row("period", report.period.key, readable_utc(report.period.start), readable_utc(report.period.end))
    totals = (
        ("requests", report.requests), ("granted", report.granted), ("sessions", report.sessions),
        ("blocked", report.blocked), ("break_glass", report.break_glass), ("reinitiations", report.reinitiations),
    )
    for key, value in totals:
        row("totals", key, value, "")
    for outcome, n in report.by_outcome:
        row("requests_by_outcome", outcome, n, "")
    for agent in report.by_agent:
        row("sessions_by_agent", agent.agent, agent.sessions, f"{agent.accounts} accounts")
    for account in report.by_account:
        row("sessions_by_account", account.account, account.sessions, f"{account.agents} agents")
    for d in report.deciders:
        row("approvals_by_decider", d.approver, d.approved, f"{d.denied} denied")
    row("approvals", "median_seconds_to_decide", "" if report.median_seconds_to_decide is None else report.median_seconds_to_decide, f"{report.decisions} decisions")
    for sensitive in report.sensitive:
        row("sensitive_accounts", sensitive.account, sensitive.sessions, ",".join(sensitive.flags))
    for rule, n in report.alerts:
        row("alerts", rule, n, "")
    row("no_ticket", "sessions_without_ticket", report.no_ticket, "")
    for t in report.no_ticket_listed:
        row("no_ticket", t.request_id, t.agent, t.account)
    for state, n in report.extensions:
        row("extensions", state, n, "")
    for c in report.concentration:
        row("concentration", c.account, c.percent, f"{c.agent_sessions} of {c.sessions} by {c.agent}")
    if report.chain is not None:
        row("chain", "intact" if report.chain.ok else "broken", report.chain.events, report.chain.problem or "")
    return buffer.getvalue()


def filename(report: DigestReport, fmt: str) -> str:
    return f"access-review-{report.period.key}.{fmt}"
