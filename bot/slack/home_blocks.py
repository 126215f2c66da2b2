"""Block Kit builders for what a person can do: the usage answer of `/impersonate help` (and
of an unknown sub-command), the account-flag modal, and the App Home tab.

Pure functions from domain views to Slack JSON, with the conventions of bot.slack.blocks:
ids from bot.slack.ids, sizes from bot.slack.limits, user text escaped, buttons carrying ids
only. What each person is shown follows their powers in the policy (bot.domain.policy.Powers);
the buttons are conveniences, every click is decided again by the domain.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.db.models import AccountFlag
from bot.domain.account_flags import (
    FLAG_REASON_MAX_LENGTH,
    FLAG_REASON_MIN_LENGTH,
    REFERENCE_MAX_LENGTH,
    FlagChanged,
    FlagField,
    FlagForm,
    FlagFormView,
)
from bot.domain.approvals import ApprovalAsk
from bot.domain.home import HomeView
from bot.domain.policy import Powers
from bot.domain.views import RequestView, SessionView
from bot.slack import limits
from bot.slack.blocks import (
    Block,
    Message,
    _account_text,
    _button,
    _context,
    _header,
    _message,
    _option,
    _options,
    _plain,
    _section,
    _selected,
    _typed,
    _user_text,
    scope_label,
)
from bot.slack.command_text import TicketHint
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_date_time, format_local_time, mention
from bot.slack.watch_blocks import rule_title

#: what a person with no role reads, wherever they are refused for lack of one
NO_ROLE_LINE = "You hold no role in the impersonation policy. Ask your manager or security to add you to one."


def usage_lines(powers: Powers | None) -> list[str]:
    """One line per thing this person may do, from their powers (mrkdwn, ours only)."""
    if powers is None:
        return [NO_ROLE_LINE]
    lines = []
    if powers.can_impersonate:
        lines.append("`/impersonate [account]` opens the request form (also the *Request impersonation* shortcut, "
                     "from the shortcuts menu or on a ticket's message, which fills in the ticket)")
    if powers.can_approve:
        lines.append("Approve or deny requests from the DM each one sends you, or from the app's Home tab")
    if powers.can_revoke:
        lines.append("`/impersonate revoke <session id>` revokes a live session (also from the security channel and the Home tab)")
    if powers.can_flag_accounts:
        lines.append("`/impersonate flag <account>` sets or clears an account's opted-out, sensitive, regulated or flagged mark")
    if powers.can_view_log:
        lines.append("`/impersonation-log account:X [agent:@user] [since:90d]` shows who impersonated users of an account")
    if not lines:
        lines.append(NO_ROLE_LINE)
    lines.append("The app's *Home* tab shows what concerns you now; `/impersonate help` shows this list")
    return lines


def usage_message(powers: Powers | None, *, unknown: str | None = None) -> Message:
    """The answer to `/impersonate help`, or to a sub-command that does not exist (`unknown`:
    the person's own word, escaped): what this person can do, and nothing they cannot."""
    lines = usage_lines(powers)
    opening = (
        f"`{escape(unknown)}` is not an `/impersonate` command. What you can do:"
        if unknown is not None
        else "What you can do with Impersonation Bot:"
    )
    body = "\n".join(f"• {line}" for line in lines)
    blocks: list[Block] = [_section(f"{opening}\n{body}")]
    if powers is not None:
        blocks.append(_context(escape(f"Your role: {powers.role}")))
    return _message(f"{opening} " + "; ".join(lines), blocks)


def ticket_note(hint: TicketHint) -> str:
    """The line above the request form opened from a message: what was found in it (the
    message's own text, escaped; the link is shown as text, not made a link of ours)."""
    found = [f"ticket `{escape(hint.reference)}`"] if hint.reference else []
    if hint.link:
        found.append(escape_truncated(hint.link, 300))
    if not found:
        return "No ticket found in that message: fill in the ticket yourself."
    return "From the message: " + " · ".join(found)


# ---------------------------------------------------------------------------- account flags

#: the four flags as the modal offers them (DESIGN.md "Who uses it")
FLAG_LABELS: dict[AccountFlag, str] = {
    AccountFlag.OPTED_OUT: "Opted out: no impersonation at all",
    AccountFlag.SENSITIVE: "Sensitive: approval needed",
    AccountFlag.REGULATED: "Regulated: approval needed",
    AccountFlag.FLAGGED: "Flagged: approval needed",
}
FLAG_ON, FLAG_OFF = "set", "clear"

FLAG_FIELD_BLOCKS: dict[FlagField, BlockId] = {
    FlagField.ACCOUNT: BlockId.FLAG_ACCOUNT,
    FlagField.FLAG: BlockId.FLAG_WHICH,
    FlagField.REFERENCE: BlockId.FLAG_REFERENCE,
    FlagField.REASON: BlockId.FLAG_REASON,
}


def flag_modal(form: FlagFormView) -> dict[str, Any]:
    """Set or clear one flag on one account, with the contract or ticket reference and the
    reason the audit log keeps. Opened for an account (`/impersonate flag acme`) it starts on
    that account and says which flags it carries now."""
    account_select: dict[str, Any] = {
        "type": "external_select",
        "action_id": ActionId.FLAG_ACCOUNT_SELECT.value,
        "placeholder": _plain("Search accounts by name or id", limits.PLACEHOLDER_MAX),
        "min_query_length": 0,
    }
    blocks: list[Block] = []
    if form.account is not None:
        initial = _option(form.account[0], f"{form.account[1]} ({form.account[0]})")
        if initial is not None:
            account_select["initial_option"] = initial
        now = ", ".join(sorted(form.current)) or "none"
        blocks.append(_section(f"*{escape_truncated(form.account[1], 300)}* carries these flags now: {escape(now)}"))
    flags = _options((flag.value, label) for flag, label in FLAG_LABELS.items())
    values = _options([(FLAG_ON, "Set the flag"), (FLAG_OFF, "Clear the flag")])
    blocks += [
        {"type": "input", "block_id": BlockId.FLAG_ACCOUNT.value, "label": _plain("Account", limits.INPUT_LABEL_MAX), "element": account_select},
        {
            "type": "input",
            "block_id": BlockId.FLAG_WHICH.value,
            "label": _plain("Flag", limits.INPUT_LABEL_MAX),
            "element": {"type": "static_select", "action_id": ActionId.FLAG_WHICH_SELECT.value, "options": flags,
                        "placeholder": _plain("Which flag", limits.PLACEHOLDER_MAX)},
        },
        {
            "type": "input",
            "block_id": BlockId.FLAG_VALUE.value,
            "label": _plain("Change", limits.INPUT_LABEL_MAX),
            "hint": _plain("Setting opted-out ends every live session on the account at once.", limits.INPUT_HINT_MAX),
            "element": {"type": "radio_buttons", "action_id": ActionId.FLAG_VALUE_CHOICE.value, "options": values, "initial_option": values[0]},
        },
        {
            "type": "input",
            "block_id": BlockId.FLAG_REFERENCE.value,
            "label": _plain("Contract or ticket reference", limits.INPUT_LABEL_MAX),
            "element": {
                "type": "plain_text_input",
                "action_id": ActionId.FLAG_REFERENCE_INPUT.value,
                "max_length": min(REFERENCE_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX),
                "placeholder": _plain("CONTRACT-2041 §7, or a link to the ticket", limits.PLACEHOLDER_MAX),
            },
        },
        {
            "type": "input",
            "block_id": BlockId.FLAG_REASON.value,
            "label": _plain("Reason", limits.INPUT_LABEL_MAX),
            "hint": _plain("Kept in the audit log with your name and the reference.", limits.INPUT_HINT_MAX),
            "element": {
                "type": "plain_text_input",
                "action_id": ActionId.FLAG_REASON_INPUT.value,
                "multiline": True,
                "min_length": FLAG_REASON_MIN_LENGTH,
                "max_length": min(FLAG_REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX),
            },
        },
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.FLAG_ACCOUNT.value,
        "title": _plain("Account flags", limits.MODAL_TITLE_MAX),
        "submit": _plain("Save", limits.MODAL_SUBMIT_MAX),
        "close": _plain("Cancel", limits.MODAL_CLOSE_MAX),
        "blocks": blocks[: limits.MODAL_BLOCKS_MAX],
    }


def flag_form_from_state(values: Mapping[str, Any]) -> FlagForm:
    """The flag modal's answers, read as it lays them out; nothing here decides anything."""
    value = _selected(values, BlockId.FLAG_VALUE, ActionId.FLAG_VALUE_CHOICE)
    return FlagForm(
        account=_selected(values, BlockId.FLAG_ACCOUNT, ActionId.FLAG_ACCOUNT_SELECT),
        flag=_selected(values, BlockId.FLAG_WHICH, ActionId.FLAG_WHICH_SELECT),
        on=True if value == FLAG_ON else False if value == FLAG_OFF else None,
        reference=_typed(values, BlockId.FLAG_REFERENCE, ActionId.FLAG_REFERENCE_INPUT) or "",
        reason=_typed(values, BlockId.FLAG_REASON, ActionId.FLAG_REASON_INPUT) or "",
    )


def flag_errors(message: str, field: FlagField | None) -> dict[str, str]:
    """`response_action: errors` for a refused flag change: the message under its field."""
    block = FLAG_FIELD_BLOCKS[field or FlagField.ACCOUNT]
    return {block.value: escape_truncated(message, limits.FIELD_ERROR_MAX)}


def flag_changed_text(changed: FlagChanged) -> str:
    """What the person who changed a flag reads (mrkdwn, escaped)."""
    account = f"*{escape_truncated(changed.account_name, 300)}* ({escape(changed.account)})"
    if not changed.change.changed:
        state = "was already set" if changed.on else "was not set"
        return f"`{changed.flag.value}` {state} on {account}; nothing changed."
    done = "set on" if changed.on else "cleared from"
    text = f"`{changed.flag.value}` {done} {account}. Audited as account.flag_changed."
    if changed.on and changed.flag is AccountFlag.OPTED_OUT:
        text += " The security channel is told."
    revoked = len(changed.change.revoked)
    if revoked:
        text += f" {revoked} live session{'s' if revoked != 1 else ''} on it ended at once; their agents are told."
    return text


def _notice(callback: CallbackId, title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (`text`: our own mrkdwn, escaped): nothing to submit."""
    return {
        "type": "modal",
        "callback_id": callback.value,
        "title": _plain(title, limits.MODAL_TITLE_MAX),
        "close": _plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [_section(text)],
    }


def flag_done_modal(text: str) -> dict[str, Any]:
    """What the flag modal turns into after a change: what happened."""
    return _notice(CallbackId.FLAG_ACCOUNT_DONE, "Account flags", text)


# ---------------------------------------------------------------------------- the Home tab

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
        f"{who}*{_account_text(request)}* as {_user_text(request)} · {escape(scope_label(request.scope))}"
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
    blocks: list[Block] = [_header("Your live sessions")]
    for session in agent.live:
        buttons = [_button(ActionId.END_SESSION, "End session", session.id, style="danger")]
        if agent.can_request_extension:
            buttons.append(_button(ActionId.REQUEST_EXTENSION, "Ask for more time", session.id))
        blocks += [_section(_session_line(session, view, agent=False)), _actions(*buttons)]
    if not agent.live:
        blocks.append(_context("No live session."))
    blocks.append(_header("Your pending requests"))
    for request in agent.pending:
        asked = format_local_date_time(request.created_at, view.tz)
        blocks += [
            _section(f"*{_account_text(request)}* as {_user_text(request)} · asked {escape(asked)}"),
            _actions(_button(ActionId.CANCEL_REQUEST, "Cancel request", request.id)),
        ]
    if not agent.pending:
        blocks.append(_context("No request waiting for approval."))
    blocks.append(_header("Your last requests"))
    blocks.append(_section("\n".join(_recent_line(r, view) for r in agent.recent)) if agent.recent else _context("No request yet."))
    return blocks


def _recent_line(request: RequestView, view: HomeView) -> str:
    when = format_local_date_time(request.created_at, view.tz)
    outcome = _STATE_WORDS.get(request.state, request.state)
    return f"• {escape(when)} · {_account_text(request)} · {escape_truncated(request.customer_user_name, 200)} · *{escape(outcome)}*"


def _ask_blocks(ask: ApprovalAsk, view: HomeView) -> list[Block]:
    request = ask.request
    if ask.extension is not None:
        text = (
            f"{mention(request.agent_slack_id)} asks for *{ask.extension.minutes} more minutes* in *{_account_text(request)}*"
            f" as {_user_text(request)}: {escape_truncated(ask.extension.reason, 500)}"
        )
        approve, deny, subject = ActionId.APPROVE_EXTENSION, ActionId.DENY_EXTENSION, ask.extension.id
    else:
        text = (
            f"{mention(request.agent_slack_id)} asks to impersonate {_user_text(request)} in *{_account_text(request)}*"
            f" · {escape(scope_label(request.scope))} · {request.duration_minutes} min: {escape_truncated(request.reason, 500)}"
        )
        approve, deny, subject = ActionId.APPROVE_REQUEST, ActionId.DENY_REQUEST, request.id
    return [_section(text), _actions(_button(approve, "Approve", subject, style="primary"), _button(deny, "Deny", subject, style="danger"))]


def _security_blocks(view: HomeView) -> list[Block]:
    security = view.security
    assert security is not None
    blocks: list[Block] = [_header(f"Live sessions across accounts ({security.live_total})")]
    for session in security.live:
        revoke = _button(
            ActionId.REVOKE_SESSION, "Revoke", session.id, style="danger",
            confirm=("Revoke this session?", "The agent is thrown out of the customer's account at once and told.", "Revoke", "Keep it"),
        )
        blocks += [_section(_session_line(session, view, agent=True)), _actions(revoke)]
    if security.live_total > len(security.live):
        blocks.append(_context(f"{security.live_total - len(security.live)} more live; the security channel's feed lists every one."))
    if not security.live:
        blocks.append(_context("No live session."))
    blocks.append(_header("Alerts of the last 24 hours"))
    if security.alerts:
        lines = [
            f"• {escape(format_local_date_time(a.raised_at, view.tz))} · *{escape(rule_title(a.rule))}*"
            + (f" · {escape_truncated(a.account_name or a.account, 200)}" if a.account else "")
            + (f" · {mention(a.agent)}" if a.agent else "")
            + (f" · {a.live_total} live" if a.live_total else "")
            for a in security.alerts
        ]
        blocks.append(_section("\n".join(lines)))
    else:
        blocks.append(_context("No alert."))
    blocks.append(_header("Audit chain"))
    checkpoint = security.checkpoint
    if checkpoint is not None:
        blocks.append(_section(
            f"Last verified checkpoint: event #{checkpoint.seq} at {escape(checkpoint.time)}, head `{escape(checkpoint.hash[:_HASH_SHOWN])}…`"
        ))
    else:
        blocks.append(_context("No checkpoint yet."))
    return blocks


def _log_blocks() -> list[Block]:
    search = {
        "type": "external_select",
        "action_id": ActionId.HOME_LOG_ACCOUNT_SELECT.value,
        "placeholder": _plain("Look up an account", limits.PLACEHOLDER_MAX),
        "min_query_length": 0,
    }
    return [
        _header("Impersonation log"),
        _actions(search, block_id=BlockId.HOME_LOG_SEARCH),
        _context("The `/impersonation-log` answer for the account comes to your DM with the app."),
    ]


def home_notice_modal(text: str) -> dict[str, Any]:
    """The answer to a click in the Home tab (`text`: our own mrkdwn, escaped)."""
    return _notice(CallbackId.HOME_NOTICE, "Impersonation", text)


def home_tab(view: HomeView) -> dict[str, Any]:
    """A person's Home tab (views.publish): only the parts their powers allow, each button
    carrying an id (decided again when clicked). At most limits.HOME_BLOCKS_MAX blocks."""
    blocks: list[Block] = [_header("Impersonation")]
    powers = view.powers
    blocks.append(_context(escape(f"Your role: {powers.role}") if powers else NO_ROLE_LINE))
    tools = []
    if powers and powers.can_impersonate:
        tools.append(_button(ActionId.HOME_REQUEST, "Request impersonation", "request", style="primary"))
    if view.can_flag_accounts:
        tools.append(_button(ActionId.HOME_FLAG, "Change account flags", "flag"))
    if tools:
        blocks.append(_actions(*tools, block_id=BlockId.HOME_TOOLS))
    if view.agent is not None:
        blocks += _agent_blocks(view)
    if view.queue is not None:
        blocks.append(_header("Waiting for your approval"))
        for ask in view.queue:
            blocks += _ask_blocks(ask, view)
        if not view.queue:
            blocks.append(_context("Nothing is waiting for you."))
    if view.security is not None:
        blocks += _security_blocks(view)
    if view.can_view_log:
        blocks += _log_blocks()
    blocks.append(_context(escape(f"Updated {format_local_date_time(view.now, view.tz)}. `/impersonate help` lists what you can do.")))
    return {"type": "home", "blocks": blocks[: limits.HOME_BLOCKS_MAX]}
