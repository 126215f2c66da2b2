"""How a request is described in every message about it (the agent's, the approvers', the
security channel's): account, customer user, fields, reason, the people asked.

Budgets for user text inside one mrkdwn field are chosen so that a field made of several
pieces stays under its Slack limit (SECTION_TEXT_MAX, SECTION_FIELD_TEXT_MAX) however long,
and however escape-heavy, each piece is.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.domain.approvals import ApprovalAsk
from bot.domain.views import RequestView
from bot.slack import limits
from bot.slack.blocks.kit import Block, fields, scope_label, section
from bot.slack.mrkdwn import escape, escape_truncated, format_local_time, mention

NAME_BUDGET = 300
ID_BUDGET = 200
EMAIL_BUDGET = 400
TICKET_BUDGET = 600
REASON_BUDGET = limits.SECTION_TEXT_MAX - 100

#: a justification code (policy.JUSTIFICATION_CODE: at most 64 characters), inside the 100 the reason leaves
_CODE_BUDGET = 64
_FALLBACK_NAME_BUDGET = 200

#: mentions listed in one message ("asked: <@U1>, <@U2> and 3 others"); a mention is never cut
_MENTIONS_SHOWN = 20


def account_text(request: RequestView) -> str:
    return f"{escape_truncated(request.account_name, NAME_BUDGET)} ({escape_truncated(request.account, ID_BUDGET)})"


def user_text(request: RequestView) -> str:
    return (
        f"{escape_truncated(request.customer_user_name, NAME_BUDGET)} "
        f"({escape_truncated(request.customer_user_email, EMAIL_BUDGET)})"
    )


def request_fields(request: RequestView, *, session_length: str) -> Block:
    pairs = [
        ("Account", account_text(request)),
        ("Customer user", user_text(request)),
        ("Access", escape(scope_label(request.scope))),
        ("Session length", session_length),
    ]
    if request.ticket:
        pairs.append(("Ticket", escape_truncated(request.ticket, TICKET_BUDGET)))
    return fields(pairs)


def who_and_what(request: RequestView) -> list[tuple[str, str]]:
    """The first fields an approver or the security channel reads about a request: who asks,
    on which account (and its flags), as which customer user, with what access."""
    return [
        ("Agent", mention(request.agent_slack_id)),
        ("Account", account_text(request)),
        ("Account flags", flags_text(request.account_flags)),
        ("Customer user", user_text(request)),
        ("Access", escape(scope_label(request.scope))),
    ]


def reason_section(request: RequestView) -> Block:
    justification = f" · justification: {escape_truncated(request.justification, _CODE_BUDGET)}" if request.justification else ""
    return section(f"*Reason*{justification}\n{escape_truncated(request.reason, REASON_BUDGET)}")


def fallback_subject(request: RequestView) -> str:
    return (
        f"{escape_truncated(request.customer_user_name, _FALLBACK_NAME_BUDGET)} in "
        f"{escape_truncated(request.account_name, _FALLBACK_NAME_BUDGET)}"
    )


def approvals_needed(count: int) -> str:
    return "one approver" if count <= 1 else f"{count} different approvers"


def mentions(user_ids: Sequence[str]) -> str:
    """`<@U1>, <@U2> and 3 others`: at most _MENTIONS_SHOWN mentions, so that a long list is
    shortened by whole mentions and never cut inside one."""
    shown = [mention(u) for u in user_ids[:_MENTIONS_SHOWN]]
    rest = len(user_ids) - len(shown)
    if rest > 0:
        return ", ".join(shown) + f" and {rest} other" + ("" if rest == 1 else "s")
    if len(shown) > 1:
        return ", ".join(shown[:-1]) + " and " + shown[-1]
    return shown[0] if shown else ""


def flags_text(flags: Iterable[str]) -> str:
    names = sorted(flags)
    return escape(", ".join(names)) if names else "none"


def first_asked(ask: ApprovalAsk) -> tuple[str, ...]:
    """The approvers asked first (before any escalation)."""
    return tuple(a for a in ask.approvers if a not in ask.escalated_to)


def nudged_text(ask: ApprovalAsk, tz_name: str | None) -> str:
    """" Reminded at HH:MM. Escalated to <@…> at HH:MM.": what the scheduler did about an
    ask nobody answered, for the agent's DM (empty before it did anything)."""
    text = ""
    if ask.reminded_at is not None:
        text += f" Approvers who had not answered were reminded at {escape(format_local_time(ask.reminded_at, tz_name))}."
    if ask.escalated_at is not None:
        at = escape(format_local_time(ask.escalated_at, tz_name))
        if ask.escalated_to:
            text += f" Still undecided at {at}, it was also sent to {mentions(ask.escalated_to)}."
        else:
            text += f" Still undecided at {at}, it was escalated, but no one in the escalation group can approve it."
    return text
