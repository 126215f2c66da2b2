"""Block Kit for `/impersonation-log`: pure functions from the domain's lookup results to
`(text, blocks)`, shown to the viewer alone (ephemeral), and the texts around an export.

The buttons carry the query's token (account id, agent id, two times, a page number) and
nothing else; each click is re-authorised by the domain.
"""
from __future__ import annotations

from datetime import datetime

from bot.domain.log_query import LogPage, LogRefused, LookupResult, QueryError, SessionEntry, UnknownAccount
from bot.reports.exports import ExportFile
from bot.slack import limits
from bot.slack.blocks.kit import Block, Message, button, context, fields, header, message, scope_label, section
from bot.slack.command_text import LOG_USAGE
from bot.slack.ids import ActionId, BlockId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_date_time, format_local_time, mention, zone

# Budgets for user text in one session's section (SECTION_TEXT_MAX = 3000 in all).
_REASON_BUDGET = 900
_TICKET_BUDGET = 200
_NAME_BUDGET = 200
_EMAIL_BUDGET = 200
_ACCOUNT_BUDGET = 300

#: approvers named per session; more are counted ("and 2 others")
_APPROVERS_SHOWN = 5
#: sessions on one page (log_query.look_up's `page_size`): each is one section block, and with
#: the six blocks around them (header, context, summary, divider, page counter, actions) a page
#: stays well under Slack's 50 blocks per message (limits.MESSAGE_BLOCKS_MAX)
PAGE_SIZE = 10

OUTCOME_WORDS = {
    "live": "still open",
    "ended": "ended by the agent",
    "expired": "expired",
    "revoked": "revoked",
}
EXPORT_FAILED = "The export could not be delivered to your DMs. Try again in a minute; the attempt was recorded."


def log_answer(result: LookupResult) -> Message:
    """What the viewer sees for any outcome of a lookup or a page click."""
    if isinstance(result, LogPage):
        return log_page(result)
    if isinstance(result, LogRefused):
        return message(escape(result.message), [section(escape(result.message))])
    if isinstance(result, UnknownAccount):
        text = f"No account `{escape_truncated(result.account, _ACCOUNT_BUDGET)}` in the directory."
        return message(text, [section(text)])
    return usage_message(result)


def usage_message(error: QueryError) -> Message:
    text = f"{escape(error.problem)}\n{escape(LOG_USAGE)}"
    return message(text, [section(f"*{escape(error.problem)}*\n`{escape(LOG_USAGE)}`")])


def log_page(page: LogPage) -> Message:
    query, summary = page.query, page.summary
    account = f"{escape_truncated(page.account_name, _ACCOUNT_BUDGET)} ({escape_truncated(query.account, _ACCOUNT_BUDGET)})"
    scope = f"{escape(query.period)}" + (f", sessions by {mention(query.agent)}" if query.agent else "")
    blocks: list[Block] = [
        header(f"Impersonation log: {page.account_name}"),
        context(f"{account} · {scope} · times on your clock"),
        fields(
            [
                ("Sessions", str(summary.sessions)),
                ("Agents", str(summary.agents)),
                ("Approved by people", f"{summary.approved_sessions} (by {_count(summary.approvers, 'approver')})"),
                ("Break-glass", str(summary.break_glass)),
                ("Write actions recorded", str(summary.write_actions)),
                (
                    "Outcomes",
                    f"{summary.ended} ended · {summary.expired} expired · {summary.revoked} revoked · {summary.live} still open",
                ),
            ]
        ),
        {"type": "divider"},
    ]
    if not page.entries:
        blocks.append(section("No sessions in this period."))
    blocks += [_entry_section(entry, page.viewer_tz) for entry in page.entries]
    if page.pages > 1:
        first = page.page * PAGE_SIZE + 1
        blocks.append(context(f"Page {page.page + 1} of {page.pages} · sessions {first}–{first + len(page.entries) - 1}, newest first"))
    blocks.append(_actions(page))
    text = f"Impersonation log for {account}: {_count(summary.sessions, 'session')} in {scope}."
    return message(text, blocks)


def _entry_section(entry: SessionEntry, tz_name: str | None) -> Block:
    start = format_local_date_time(entry.started_at, tz_name)
    end = _end_text(entry, tz_name)
    actions = _count(entry.write_actions, "write action")
    lines = [
        f"*{escape(start)} → {escape(end)}* · {OUTCOME_WORDS.get(entry.outcome, escape(entry.outcome))} · {actions}",
        f"{mention(entry.agent_slack_id)} as *{escape_truncated(entry.customer_user_name, _NAME_BUDGET)}* "
        f"({escape_truncated(entry.customer_user_email, _EMAIL_BUDGET)}) · {escape(scope_label(entry.scope))}",
        f"*Reason:* {escape_truncated(entry.reason, _REASON_BUDGET)}",
        f"*Ticket:* {escape_truncated(entry.ticket, _TICKET_BUDGET) if entry.ticket else 'none'} · {_granted_text(entry)}",
    ]
    return section("\n".join(lines))


def _end_text(entry: SessionEntry, tz_name: str | None) -> str:
    if entry.ended_at is None:
        return "now"
    if _same_local_day(entry.started_at, entry.ended_at, tz_name):
        return format_local_time(entry.ended_at, tz_name)
    return format_local_date_time(entry.ended_at, tz_name)


def _same_local_day(a: datetime, b: datetime, tz_name: str | None) -> bool:
    return a.astimezone(zone(tz_name)).date() == b.astimezone(zone(tz_name)).date()


def _granted_text(entry: SessionEntry) -> str:
    if entry.break_glass:
        return "*break-glass* (no approval)"
    if entry.granted_by == "policy":
        return "granted by policy"
    if not entry.approvers:
        return "approval needed, none recorded"
    shown = [mention(a.slack_id) for a in entry.approvers[:_APPROVERS_SHOWN]]
    rest = len(entry.approvers) - len(shown)
    return "approved by " + ", ".join(shown) + (f" and {_count(rest, 'other')}" if rest > 0 else "")


def _actions(page: LogPage) -> Block:
    elements: list[Block] = []
    if page.has_previous:
        elements.append(button(ActionId.LOG_PREVIOUS_PAGE, "Previous", page.query.token(page.page - 1)))
    if page.has_next:
        elements.append(button(ActionId.LOG_NEXT_PAGE, "Next", page.query.token(page.page + 1)))
    token = page.query.token(page.page)
    elements.append(button(ActionId.LOG_EXPORT_CSV, "Export CSV to my DMs", token))
    elements.append(button(ActionId.LOG_EXPORT_JSON, "Export JSON to my DMs", token))
    return {"type": "actions", "block_id": BlockId.LOG_ACTIONS.value, "elements": elements}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


#: the file's title as Slack shows it (a file title is plain text, not mrkdwn)
FILE_TITLE_MAX = 250


def file_title(export: ExportFile) -> str:
    return export.title if len(export.title) <= FILE_TITLE_MAX else export.title[: FILE_TITLE_MAX - 1] + "…"


def export_comment(export: ExportFile) -> str:
    """The message that introduces the file in the requester's DM (mrkdwn: escaped)."""
    return escape_truncated(f"{export.title}. This export was recorded in the audit log.", limits.SECTION_TEXT_MAX)


def export_sent_text(export: ExportFile) -> str:
    return f"Sent `{escape(export.filename)}` to your DMs with me."
