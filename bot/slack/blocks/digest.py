"""The access review's headline figures in the security channel; the full review (Markdown,
HTML, CSV) is uploaded in its thread by the courier (bot/slack/kinds.py registers both).
"""
from __future__ import annotations

from bot.domain.digests import DigestReport
from bot.reports.templates import duration_text
from bot.slack.blocks.kit import Block, Message, context, fields, header, message, section, slack_date
from bot.slack.mrkdwn import escape, escape_truncated, mention

#: a customer account's name in the concentration lines
_NAME_BUDGET = 300


def digest_message(report: DigestReport) -> Message:
    """The review's headline figures in the security channel; the files follow in its thread."""
    period = report.period
    chain = report.chain
    if chain is None:
        integrity = "not verified"
    elif chain.ok:
        integrity = f":white_check_mark: intact ({chain.events} events)"
    else:
        integrity = f":x: *BROKEN* at event {chain.problem_seq}"
    pairs = [
        ("Sessions", f"{report.sessions} by {report.agents} agents on {report.accounts} accounts"),
        ("Requests", f"{report.requests} ({report.granted} granted, {report.blocked} refused by policy)"),
        ("Approval decisions", f"{report.decisions}, median {duration_text(report.median_seconds_to_decide)}"),
        ("Sensitive accounts accessed", str(len(report.sensitive))),
        ("Alerts", str(report.alerts_total)),
        ("Without a ticket", str(report.no_ticket)),
        ("Re-initiations / extensions", f"{report.reinitiations} / {report.extensions_total}"),
        ("Audit log", integrity),
    ]
    blocks: list[Block] = [
        header(f"Access review: {period.key}"),
        section(f"{escape(period.label)}: {slack_date(period.start)} to {slack_date(period.end)}."),
        fields(pairs),
    ]
    if report.concentration:
        lines = [
            f"• {c.percent} % of {escape_truncated(c.name, _NAME_BUDGET)}'s {c.sessions} sessions were by {mention(c.agent)}"
            for c in report.concentration[:10]
        ]
        blocks.append(section("*Concentration*\n" + "\n".join(lines)))
    blocks.append(context("The full review (Markdown, HTML, CSV) is in the thread. Generating it is audited as digest.generated."))
    return message(f"Access review {period.key}: {report.sessions} sessions, {report.alerts_total} alerts.", blocks)
