"""What an approver sees: the ask in their DM (and its reminder), the outcome it is edited
into, the deny modal, and the private answer to a click that decided nothing.

Times are shown in the approver's own time zone; the Approve / Deny buttons carry the request
id (the extension id for more time) only, and bot.domain.approvals re-checks every click.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.approvals import DENY_REASON_MAX_LENGTH, DENY_REASON_MIN_LENGTH, AlreadyCounted, AlreadyDecided, ApprovalAsk, Counted, Decided, ExtensionView, PastSession, Refused
from bot.domain.views import RequestView
from bot.slack import limits
from bot.slack.blocks.kit import Block, Message, button, context, duration_label, fields, header, input_block, message, plain, section, text_input
from bot.slack.blocks.parts import REASON_BUDGET, TICKET_BUDGET, account_text, approvals_needed, fallback_subject, reason_section, user_text, who_and_what
from bot.slack.blocks.state import id_or_none, typed_value
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_date_time, format_local_time, mention, truncate_plain

_PAST_REASON_BUDGET = 200

#: recent sessions listed for an approver
_RECENT_SHOWN = 5


def _past_session_line(past: PastSession, tz_name: str | None) -> str:
    started = format_local_date_time(past.started_at, tz_name)
    if past.ended_at is not None:
        minutes = max(0, int((past.ended_at - past.started_at).total_seconds() // 60))
        how = f"{duration_label(minutes)}, {escape(past.end_reason or 'ended')}"
    else:
        how = "still open"
    return f"• {escape(started)} ({how}): {escape_truncated(past.reason, _PAST_REASON_BUDGET)}"


def _recent_section(recent: Sequence[PastSession], tz_name: str | None) -> Block:
    lines = [_past_session_line(p, tz_name) for p in recent[:_RECENT_SHOWN]]
    body = "\n".join(lines) if lines else "None: this is their first session on this account."
    return section(f"*Their recent sessions on this account*\n{body}")


def _approver_fields(request: RequestView, *, approvals: int, extension: ExtensionView | None, decide_by: str | None) -> Block:
    pairs = [
        *who_and_what(request),
        ("Session length", duration_label(request.duration_minutes)),
    ]
    if extension is not None:
        pairs.append(("More time", duration_label(extension.minutes)))
    if request.ticket:
        pairs.append(("Ticket", escape_truncated(request.ticket, TICKET_BUDGET)))
    pairs.append(("Approvals needed", approvals_needed(approvals)))
    if decide_by is not None:
        pairs.append(("Decide by", escape(decide_by)))
    return fields(pairs)


def _ask_summary(request: RequestView, extension: ExtensionView | None, *, tz_name: str | None, past: bool = False) -> str:
    agent, verb = mention(request.agent_slack_id), "asked" if past else "asks"
    if extension is not None:
        ends = format_local_time(extension.session.expires_at, tz_name)
        return (
            f"{agent} {verb} for {duration_label(extension.minutes)} more on their live session as "
            f"{user_text(request)} in {account_text(request)}, which ends at {escape(ends)}."
        )
    return f"{agent} {verb} to impersonate {user_text(request)} in {account_text(request)}.{_follow_up(request)}"


def reinitiation_text(request: RequestView) -> str | None:
    """"re-initiation #2 within 12 min": the request's place in a chain of re-initiations and
    how soon after the previous session with this customer user ended it came; None for a
    fresh request. Our own words and numbers only."""
    minutes = request.minutes_after_previous
    if not request.reinitiation_ordinal or minutes is None:
        return None
    return f"re-initiation #{request.reinitiation_ordinal} within {minutes} min"


def _follow_up(request: RequestView) -> str:
    reinitiation = reinitiation_text(request)
    if reinitiation is not None:
        return f" *{escape(reinitiation.capitalize())}* of their previous session with this user ending."
    # linked before re-initiations were numbered
    return " It follows an earlier session of theirs." if request.previous_session_id else ""


def _ask_reasons(request: RequestView, extension: ExtensionView | None) -> list[Block]:
    if extension is None:
        return [reason_section(request)]
    return [
        section(f"*Reason for more time*\n{escape_truncated(extension.reason, REASON_BUDGET)}"),
        section(f"*Original reason*\n{escape_truncated(request.reason, REASON_BUDGET)}"),
    ]


def approval_request_message(ask: ApprovalAsk, *, tz_name: str | None) -> Message:
    """One approver's DM: who asks, for which account (and its flags),
    customer user, reason, ticket, duration, scope, the agent's recent sessions on the
    account, and Approve / Deny buttons whose value is the request id (the extension id for
    more time) only. Times are shown in the approver's own time zone (`tz_name`)."""
    request, extension = ask.request, ask.extension
    subject_id = extension.id if extension is not None else request.id
    approvals = extension.approvals_required if extension is not None else request.approvals_required
    expires = extension.pending_expires_at if extension is not None else request.pending_expires_at
    decide_by = format_local_time(expires, tz_name) if expires is not None else None
    approve, deny = (
        (ActionId.APPROVE_EXTENSION, ActionId.DENY_EXTENSION) if extension is not None else (ActionId.APPROVE_REQUEST, ActionId.DENY_REQUEST)
    )
    effect = "The session is extended at once." if extension is not None else "The agent gets a one-time link at once."
    blocks = [
        header("Approval needed: more time" if extension is not None else "Approval needed: impersonation"),
        section(_ask_summary(request, extension, tz_name=tz_name)),
        _approver_fields(request, approvals=approvals, extension=extension, decide_by=decide_by),
        *_ask_reasons(request, extension),
        _recent_section(ask.recent, tz_name),
        {
            "type": "actions",
            "block_id": BlockId.APPROVAL_ACTIONS.value,
            "elements": [
                button(approve, "Approve", subject_id, style="primary", confirm=("Approve?", effect, "Approve", "Not yet")),
                button(deny, "Deny", subject_id, style="danger"),
            ],
        },
        context("You cannot decide your own request. Every decision is recorded in the audit log."),
    ]
    what = "more time on a session as" if extension is not None else "to impersonate"
    text = f"Approval needed: {mention(request.agent_slack_id)} asks {what} {fallback_subject(request)}."
    return message(text, blocks)


def approval_reminder_message(ask: ApprovalAsk, *, tz_name: str | None) -> Message:
    """A reminder to an approver who has not answered an ask still pending past its reminder
    point: posted as a new DM, so that Slack notifies them (an edit would not). It is the ask
    again — details and Approve / Deny buttons carrying the same id, re-checked on click like
    the first DM's — under a headline saying it still waits and until when."""
    text, shown = approval_request_message(ask, tz_name=tz_name)
    expires = ask.extension.pending_expires_at if ask.extension is not None else ask.request.pending_expires_at
    until = f" Without a decision by {escape(format_local_time(expires, tz_name))}, it expires." if expires is not None else ""
    what = "more time" if ask.extension is not None else "impersonation"
    blocks = [header(f"Reminder: approval needed: {what}"), section(f"This still waits for your decision.{until}"), *shown[1:]]
    return f"Reminder: {text}", blocks


_OUTCOME_HEADERS = {"approved": "Approved", "denied": "Denied", "expired": "Expired", "cancelled": "Cancelled"}


def _outcome_line(decided: Decided, *, tz_name: str | None) -> str:
    """"Approved by <@X> at HH:MM" / "Denied by <@Y> at HH:MM: reason" / "Expired at …" /
    "Cancelled by the agent at …": the line every approver's message ends up showing."""
    at = escape(format_local_time(decided.at, tz_name))
    by = f" by {mention(decided.by)}" if decided.by else ""
    if decided.outcome == "approved":
        line = f"*Approved*{by} at {at}."
        if decided.extension is not None and decided.session is not None:
            line += f" The session now ends at {escape(format_local_time(decided.session.expires_at, tz_name))}."
        return line
    if decided.outcome == "denied":
        return f"*Denied*{by} at {at}: {escape_truncated(decided.reason or '', REASON_BUDGET)}"
    if decided.outcome == "cancelled":
        return f"*Cancelled by the agent* at {at}."
    if decided.outcome == "expired":
        return f"*Expired* at {at}: no decision in the time allowed."
    return f"*{escape(decided.outcome.capitalize())}* at {at}."


def approver_outcome_message(decided: Decided, *, tz_name: str | None) -> Message:
    """An approver's DM edited in place once the request (or extension) is decided: what
    was asked, the outcome, and no buttons left to click."""
    request, extension = decided.request, decided.extension
    headline = _OUTCOME_HEADERS.get(decided.outcome, "Decided")
    blocks = [
        header(f"{headline}: {'more time' if extension is not None else 'impersonation'}"),
        section(_outcome_line(decided, tz_name=tz_name)),
        section(_ask_summary(request, extension, tz_name=tz_name, past=True)),
        _approver_fields(
            request,
            approvals=extension.approvals_required if extension is not None else request.approvals_required,
            extension=extension,
            decide_by=None,
        ),
        *_ask_reasons(request, extension),
    ]
    text = f"{headline}: {mention(request.agent_slack_id)}'s request about {fallback_subject(request)}."
    return message(text, blocks)


def deny_modal(subject_id: str, *, extension: bool = False) -> dict[str, Any]:
    """Asks an approver why they deny a request (or an extension). `private_metadata` holds
    the subject's id only; the submission is decided by bot.domain.approvals, which re-checks
    everything at that moment."""
    callback = CallbackId.DENY_EXTENSION if extension else CallbackId.DENY_REQUEST
    subject = "this request for more time" if extension else "this impersonation request"
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback.value,
        "title": plain("Deny more time" if extension else "Deny request", limits.MODAL_TITLE_MAX),
        "submit": plain("Deny", limits.MODAL_SUBMIT_MAX),
        "close": plain("Back", limits.MODAL_CLOSE_MAX),
        "blocks": [
            section(f"Why do you deny {subject}? The agent reads your reason and it is kept in the audit log."),
            input_block(
                BlockId.DENY_REASON,
                "Reason",
                text_input(ActionId.DENY_REASON_INPUT, multiline=True, min_length=DENY_REASON_MIN_LENGTH, max_length=DENY_REASON_MAX_LENGTH),
            ),
        ],
    }
    if id_or_none(subject_id) is not None:
        view["private_metadata"] = subject_id
    return view


def deny_reason_from_state(values: Mapping[str, Any]) -> str:
    return typed_value(values, BlockId.DENY_REASON, ActionId.DENY_REASON_INPUT) or ""


def deny_reason_errors(message: str) -> dict[str, str]:
    """`response_action: errors` for the deny modal: every refusal shows under the reason."""
    return {BlockId.DENY_REASON.value: truncate_plain(message, limits.FIELD_ERROR_MAX)}


def notice_modal(text: str, *, extension: bool = False) -> dict[str, Any]:
    """What the deny modal turns into when the decision was no longer the clicker's to make
    (already decided, already counted): `text` is our own mrkdwn, nothing to submit."""
    callback = CallbackId.DENY_EXTENSION if extension else CallbackId.DENY_REQUEST
    return {
        "type": "modal",
        "callback_id": callback.value,
        "title": plain("Nothing changed", limits.MODAL_TITLE_MAX),
        "close": plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [section(text)],
    }


def counted_text(counted: Counted) -> str:
    left = counted.required - counted.approvals
    more = "one more approver" if left == 1 else f"{left} more approvers"
    return f"Your approval is recorded: {counted.approvals} of {counted.required}. It waits for {more}."


def already_counted_text() -> str:
    return "Your decision on this request was already counted. Nothing changed."


_OUTCOME_WORDS = {"approved": "approved", "denied": "denied", "expired": "expired", "cancelled": "cancelled"}


def already_decided_text(result: AlreadyDecided, *, tz_name: str | None, extension: bool = False) -> str:
    """A losing or late click: "already approved by <@X> at HH:MM", in the
    clicker's time zone."""
    subject = "This request for more time" if extension else "This request"
    word = _OUTCOME_WORDS.get(result.outcome, "decided")
    by = f" by {mention(result.by)}" if result.by else ""
    return f"{subject} was already {word}{by} at {escape(format_local_time(result.at, tz_name))}. Your click changed nothing."


def click_answer_text(result: Counted | AlreadyCounted | AlreadyDecided | Refused, *, tz_name: str | None, extension: bool = False) -> str:
    """What the clicker alone is told when their click decided nothing (an ephemeral
    message, or the deny modal's last view): counted so far, counted already, decided
    already, or refused with the domain's reason."""
    if isinstance(result, Counted):
        return counted_text(result)
    if isinstance(result, AlreadyCounted):
        return already_counted_text()
    if isinstance(result, AlreadyDecided):
        return already_decided_text(result, tz_name=tz_name, extension=extension)
    return escape(result.message)
