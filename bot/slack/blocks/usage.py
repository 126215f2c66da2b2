"""The answer to `/impersonate help` (and to an unknown sub-command): what this person may
do, from their powers in the policy (bot.domain.policy.Powers), and nothing they cannot.
"""
from __future__ import annotations

from bot.domain.policy import Powers
from bot.slack.blocks.kit import Block, Message, context, message, section
from bot.slack.mrkdwn import escape

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
    blocks: list[Block] = [section(f"{opening}\n{body}")]
    if powers is not None:
        blocks.append(context(escape(f"Your role: {powers.role}")))
    return message(f"{opening} " + "; ".join(lines), blocks)
