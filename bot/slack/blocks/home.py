"""A person's App Home tab (views.publish): only the parts their powers allow, each button
carrying an id only (decided again when clicked), within Slack's 100 blocks per Home view
(limits.HOME_BLOCKS_MAX).
"""
from __future__ import annotations

from typing import Any

from bot.domain.approvals import ApprovalAsk
from bot.domain.home import HomeView
from bot.domain.views import RequestView, SessionView
from bot.slack import limits
from bot.slack.blocks.kit import Block, button, context, external_select, header, notice_view, scope_label, section
from bot.slack.blocks.parts import account_text, user_text
from bot.slack.blocks.usage import NO_ROLE_LINE
from bot.slack.blocks.watch import rule_title
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_date_time, format_local_time, mention

#: how a request ended up, as its agent reads it on their Home
_STATE_WORDS = {
    "pending": "waiting for approval",
    "granted": "granted (link not opened yet)",
    "active": "live",
    "ended": "ended",
    "expired": "expired",
    "revoked": "revoked",
    "lapsed": "link not used in time",
    "denied": "denied",
    "cancelled": "cancelled",
}

#: a checkpoint's head hash, shortened for reading (the whole one is in the audit event)
_HASH_SHOWN = 16


def _minutes_left(session: SessionView, now) -> str:
    left = max(int((session.expires_at - now).total_seconds() // 60), 0)
    return f"{left} min left"


def _session_line(session: SessionView, view: HomeView, *, agent: bool) -> str:
    request = session.request
    who = f"{mention(request.agent_slack_id)} in " if agent else ""
    until = format_local_time(session.expires_at, view.tz)
    return (
        f"{who}*{account_text(request)}* as {user_text(request)} · {escape(scope_label(request.scope))}"
        f" · until {escape(until)} ({_minutes_left(session, view.now)})"
    )


def _actions(*buttons: Block, block_id: BlockId | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(buttons)}
    if block_id is not None:
        block["block_id"] = block_id.value
    return block


def _agent_blocks(view: HomeView) -> list[Block]:
    agent = view.agent
    assert agent is not None
    blocks: list[Block] = [header("Your live sessions")]
    for session in agent.live:
        buttons = [button(ActionId.END_SESSION, "End session", session.id, style="danger")]
        if agent.can_request_extension:
            buttons.append(button(ActionId.REQUEST_EXTENSION, "Ask for more time", session.id))
        blocks += [section(_session_line(session, view, agent=False)), _actions(*buttons)]
    if not agent.live:
        blocks.append(context("No live session."))
    blocks.append(header("Your pending requests"))
    for request in agent.pending:
        asked = format_local_date_time(request.created_at, view.tz)
        blocks += [
            section(f"*{account_text(request)}* as {user_text(request)} · asked {escape(asked)}"),
            _actions(button(ActionId.CANCEL_REQUEST, "Cancel request", request.id)),
        ]
    if not agent.pending:
        blocks.append(context("No request waiting for approval."))
    blocks.append(header("Your last requests"))
    blocks.append(section("\n".join(_recent_line(r, view) for r in agent.recent)) if agent.recent else context("No request yet."))
    return blocks


def _recent_line(request: RequestView, view: HomeView) -> str:
    when = format_local_date_time(request.created_at, view.tz)
    outcome = _STATE_WORDS.get(request.state, request.state)
    return f"• {escape(when)} · {account_text(request)} · {escape_truncated(request.customer_user_name, 200)} · *{escape(outcome)}*"


def _ask_blocks(ask: ApprovalAsk, view: HomeView) -> list[Block]:
    request = ask.request
    if ask.extension is not None:
        text = (
            f"{mention(request.agent_slack_id)} asks for *{ask.extension.minutes} more minutes* in *{account_text(request)}*"
            f" as {user_text(request)}: {escape_truncated(ask.extension.reason, 500)}"
        )
        approve, deny, subject = ActionId.APPROVE_EXTENSION, ActionId.DENY_EXTENSION, ask.extension.id
    else:
        text = (
            f"{mention(request.agent_slack_id)} asks to impersonate {user_text(request)} in *{account_text(request)}*"
            f" · {escape(scope_label(request.scope))} · {request.duration_minutes} min: {escape_truncated(request.reason, 500)}"
        )
        approve, deny, subject = ActionId.APPROVE_REQUEST, ActionId.DENY_REQUEST, request.id
    return [section(text), _actions(button(approve, "Approve", subject, style="primary"), button(deny, "Deny", subject, style="danger"))]


def _security_blocks(view: HomeView) -> list[Block]:
    security = view.security
    assert security is not None
    blocks: list[Block] = [header(f"Live sessions across accounts ({security.live_total})")]
    for session in security.live:
        revoke = button(
            ActionId.REVOKE_SESSION, "Revoke", session.id, style="danger",
            confirm=("Revoke this session?", "The agent is thrown out of the customer's account at once and told.", "Revoke", "Keep it"),
        )
        blocks += [section(_session_line(session, view, agent=True)), _actions(revoke)]
    if security.live_total > len(security.live):
        blocks.append(context(f"{security.live_total - len(security.live)} more live; the security channel's feed lists every one."))
    if not security.live:
        blocks.append(context("No live session."))
    blocks.append(header("Alerts of the last 24 hours"))
    if security.alerts:
        lines = [
            f"• {escape(format_local_date_time(a.raised_at, view.tz))} · *{escape(rule_title(a.rule))}*"
            + (f" · {escape_truncated(a.account_name or a.account, 200)}" if a.account else "")
            + (f" · {mention(a.agent)}" if a.agent else "")
            + (f" · {a.live_total} live" if a.live_total else "")
            for a in security.alerts
        ]
        blocks.append(section("\n".join(lines)))
    else:
        blocks.append(context("No alert."))
    blocks.append(header("Audit chain"))
    checkpoint = security.checkpoint
    if checkpoint is not None:
        blocks.append(section(
            f"Last verified checkpoint: event #{checkpoint.seq} at {escape(checkpoint.time)}, head `{escape(checkpoint.hash[:_HASH_SHOWN])}…`"
        ))
    else:
        blocks.append(context("No checkpoint yet."))
    return blocks


def _log_blocks() -> list[Block]:
    search = external_select(ActionId.HOME_LOG_ACCOUNT_SELECT, "Look up an account")
    return [
        header("Impersonation log"),
        _actions(search, block_id=BlockId.HOME_LOG_SEARCH),
        context("The `/impersonation-log` answer for the account comes to your DM with the app."),
    ]


def home_notice_modal(text: str) -> dict[str, Any]:
    """The answer to a click in the Home tab (`text`: our own mrkdwn, escaped)."""
    return notice_view(CallbackId.HOME_NOTICE, "Impersonation", text)


def home_tab(view: HomeView) -> dict[str, Any]:
    """A person's Home tab (views.publish): only the parts their powers allow, each button
    carrying an id (decided again when clicked). At most limits.HOME_BLOCKS_MAX blocks."""
    blocks: list[Block] = [header("Impersonation")]
    powers = view.powers
    blocks.append(context(escape(f"Your role: {powers.role}") if powers else NO_ROLE_LINE))
    tools = []
    if powers and powers.can_impersonate:
        tools.append(button(ActionId.HOME_REQUEST, "Request impersonation", "request", style="primary"))
    if view.can_flag_accounts:
        tools.append(button(ActionId.HOME_FLAG, "Change account flags", "flag"))
    if tools:
        blocks.append(_actions(*tools, block_id=BlockId.HOME_TOOLS))
    if view.agent is not None:
        blocks += _agent_blocks(view)
    if view.queue is not None:
        blocks.append(header("Waiting for your approval"))
        for ask in view.queue:
            blocks += _ask_blocks(ask, view)
        if not view.queue:
            blocks.append(context("Nothing is waiting for you."))
    if view.security is not None:
        blocks += _security_blocks(view)
    if view.can_view_log:
        blocks += _log_blocks()
    blocks.append(context(escape(f"Updated {format_local_date_time(view.now, view.tz)}. `/impersonate help` lists what you can do.")))
    return {"type": "home", "blocks": blocks[: limits.HOME_BLOCKS_MAX]}
