"""The agent's DMs about their access once it is granted: the one-time link, the live
session (End, more time or a new request), the extension modal, the expiry warning, the
revocation notice, the lapsed link and the end of the session.

Buttons carry the session id only; the domain re-checks each click. A notice that must
notify (warning, revocation) is a new DM; a change of state edits the DM in place.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.approvals import ApprovalAsk, Decided
from bot.domain.policy import REASON_MAX_LENGTH
from bot.domain.requests import Granted
from bot.domain.views import RequestState, RequestView, SessionView
from bot.slack import limits
from bot.slack.blocks.kit import Block, Message, button, context, duration_label, header, input_block, message, options, plain, section, text_input
from bot.slack.blocks.parts import ID_BUDGET, REASON_BUDGET, account_text, fallback_subject, first_asked, mentions, nudged_text, reason_section, request_fields, user_text
from bot.slack.blocks.state import id_or_none, minutes_value, selected_value, typed_value
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_time, link, mention, truncate_plain


def grant_message(granted: Granted, *, approved_by: str | None = None) -> Message:
    """The agent's DM with the one-time link. The link sits in its own section, built from
    the issued URL and our own label, never inside escaped user text; the fallback text
    (shown in notifications, possibly on a lock screen) does not carry it. `approved_by`:
    the approver whose click granted a gated request (the link is otherwise
    issued exactly as for an ungated grant); by default the grant's own."""
    request = granted.request
    approved_by = approved_by or granted.approved_by
    until = format_local_time(granted.link.expires_at, request.agent_tz)
    window = duration_label(granted.redeem_window_minutes)
    length = duration_label(request.duration_minutes)
    blocks = [
        header("Your impersonation link is ready"),
        section(
            f"{link(granted.link.url, 'Open session')}\n"
            f"The link works once and is valid for {window}, until {until}. "
            "Opening it starts the session.",
            block_id=BlockId.GRANT_LINK,
        ),
        request_fields(request, session_length=f"{length}, from when you open the link"),
        reason_section(request),
    ]
    if approved_by:
        blocks.append(context(f"Approved by {mention(approved_by)}."))
    if granted.bypassed:
        blocks.append(context("Break glass: approval was skipped. The security channel has been told."))
    blocks.append(context("Only you can use this link: do not forward it. Every step is recorded in the audit log."))
    text = f"Your link to impersonate {fallback_subject(request)} is ready (valid for {window})."
    return message(text, blocks)


def link_lapsed_message(request: RequestView, *, lapsed_at: datetime | None = None) -> Message:
    """The link DM once its window passed unused: the dead link is taken out of it."""
    blocks = [
        header("Link expired unused"),
        section(
            f"Your one-time link to impersonate {user_text(request)} in {account_text(request)} was not opened in time"
            + (f" (it expired at {escape(format_local_time(lapsed_at, request.agent_tz))})" if lapsed_at else "")
            + ". Run /impersonate again if you still need access."
        ),
        request_fields(request, session_length=duration_label(request.duration_minutes)),
    ]
    text = f"Your link to impersonate {fallback_subject(request)} expired unused."
    return message(text, blocks)


def session_active_message(session: SessionView, *, can_request_extension: bool = False) -> Message:
    """The DM edited in place once the link is redeemed: until when, an End button, and
    either **Request more time** (roles with `can_request_extension`) or **Start a new
    request**. Every button's value is the session id only; each click is
    re-checked by the domain."""
    return _session_active(session, action=ActionId.REQUEST_EXTENSION if can_request_extension else ActionId.START_NEW_REQUEST)


def _end_button(session_id: str, label: str) -> Block:
    """Ends the agent's session (its value: the session id only; the click is re-checked),
    after a confirmation: the product closes the impersonation at once."""
    confirm = ("End this session?", "The product closes the impersonation at once.", "End session", "Keep it")
    return button(ActionId.END_SESSION, label, session_id, style="danger", confirm=confirm)


def _session_active(session: SessionView, *, action: ActionId | None, notice: str | None = None) -> Message:
    request = session.request
    until = format_local_time(session.expires_at, request.agent_tz)
    elements = [_end_button(session.id, "End session")]
    if action is ActionId.REQUEST_EXTENSION:
        elements.append(button(ActionId.REQUEST_EXTENSION, "Request more time", session.id))
    elif action is ActionId.START_NEW_REQUEST:
        elements.append(button(ActionId.START_NEW_REQUEST, "Start a new request", session.id))
    blocks = [header(f"Session active until {until}")]
    if notice is not None:
        blocks.append(section(notice))
    blocks += [
        request_fields(request, session_length=duration_label(request.duration_minutes)),
        {"type": "actions", "block_id": BlockId.SESSION_ACTIONS.value, "elements": elements},
    ]
    text = f"Your session as {fallback_subject(request)} is active until {escape(until)}."
    return message(text, blocks)


@dataclass(frozen=True)
class ExtensionAnswer:
    """What the agent typed into the extension modal; decided by extensions.request_extension."""

    minutes: int
    reason: str


def extension_modal(session_id: str, *, choices_minutes: Sequence[int], reason_min_length: int) -> dict[str, Any]:
    """The agent asks for more time on a live session, with a fresh reason.
    `private_metadata` holds the session id only."""
    minutes = options((str(m), duration_label(m)) for m in choices_minutes if m > 0)
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.EXTENSION_MINUTES_SELECT.value,
        "placeholder": plain("How much more", limits.PLACEHOLDER_MAX),
        "options": minutes,
    }
    if minutes:
        select["initial_option"] = minutes[0]
    reason_min = min(max(reason_min_length, 0), REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX)
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CallbackId.REQUEST_EXTENSION.value,
        "title": plain("Ask for more time", limits.MODAL_TITLE_MAX),
        "submit": plain("Ask", limits.MODAL_SUBMIT_MAX),
        "close": plain("Cancel", limits.MODAL_CLOSE_MAX),
        "blocks": [
            input_block(BlockId.EXTENSION_MINUTES, "More time", select, hint="An approver decides. The session never runs past your role's limit."),
            input_block(
                BlockId.EXTENSION_REASON,
                "Reason",
                text_input(ActionId.EXTENSION_REASON_INPUT, multiline=True, min_length=reason_min, max_length=REASON_MAX_LENGTH),
                hint=f"A fresh reason, at least {reason_min} characters: what is left to do?",
            ),
        ],
    }
    if id_or_none(session_id) is not None:
        view["private_metadata"] = session_id
    return view


def extension_answer_from_state(values: Mapping[str, Any]) -> ExtensionAnswer:
    """Minutes (0 when missing or malformed: the domain refuses it) and the fresh reason."""
    minutes = minutes_value(selected_value(values, BlockId.EXTENSION_MINUTES, ActionId.EXTENSION_MINUTES_SELECT))
    return ExtensionAnswer(minutes or 0, typed_value(values, BlockId.EXTENSION_REASON, ActionId.EXTENSION_REASON_INPUT) or "")


def extension_errors(message: str) -> dict[str, str]:
    """`response_action: errors` for the extension modal: a refusal shows under the reason."""
    return {BlockId.EXTENSION_REASON.value: truncate_plain(message, limits.FIELD_ERROR_MAX)}


def extension_pending_message(ask: ApprovalAsk) -> Message:
    """The live session's DM while more time waits for approval: who was asked; no second ask."""
    extension = ask.extension
    if extension is None:
        raise ValueError("extension_pending_message needs the ask for an extension")
    first = first_asked(ask)
    who = f"Waiting for {mentions(first)}." if first else "No one in the policy can approve it."
    return _session_active(
        extension.session,
        action=None,
        notice=f"You asked for {duration_label(extension.minutes)} more. {who}{nudged_text(ask, extension.session.request.agent_tz)}",
    )


def extension_outcome_message(decided: Decided, *, can_request_extension: bool) -> Message | None:
    """The live session's DM once more time was decided: approved (the header shows the new
    end), denied with the reason, or expired. None when the session is over: its DM then
    shows that, and must not be turned back into a live one."""
    session = decided.session
    if session is None or decided.extension is None:
        return None
    if session.state != RequestState.ACTIVE.value or session.ended_at is not None or session.expires_at <= decided.at:
        return None
    tz_name = session.request.agent_tz
    at = escape(format_local_time(decided.at, tz_name))
    by = mention(decided.by) if decided.by else "an approver"
    more = duration_label(decided.extension.minutes)
    if decided.outcome == "approved":
        notice = f"Your request for {more} more was approved by {by} at {at}."
    elif decided.outcome == "denied":
        notice = f"Your request for {more} more was denied by {by} at {at}: {escape_truncated(decided.reason or '', REASON_BUDGET)}"
    else:
        notice = f"Your request for {more} more expired without a decision."
    action = ActionId.REQUEST_EXTENSION if can_request_extension else ActionId.START_NEW_REQUEST
    return _session_active(session, action=action, notice=notice)


def expiry_warning_message(session: SessionView, *, now: datetime, can_request_extension: bool) -> Message:
    """The agent's warning before the end, a new DM so that it notifies:
    **End now**, and **Extend** where the role may ask for more time. Values are the session
    id only; the domain re-checks each click."""
    request = session.request
    until = format_local_time(session.expires_at, request.agent_tz)
    minutes = max(1, int((session.expires_at - now).total_seconds() + 59) // 60)
    elements = [_end_button(session.id, "End now")]
    if can_request_extension:
        elements.append(button(ActionId.REQUEST_EXTENSION, "Extend", session.id))
    blocks = [
        header(f"Your session ends in {duration_label(minutes)}"),
        section(f"Your session as {user_text(request)} in {account_text(request)} ends at {escape(until)}."),
        {"type": "actions", "block_id": BlockId.WARNING_ACTIONS.value, "elements": elements},
    ]
    if not can_request_extension:
        blocks.append(context("Need longer? Start a new request with a fresh reason once this one ends."))
    text = f"Your session as {fallback_subject(request)} ends at {escape(until)}."
    return message(text, blocks)


def revoked_notice_message(session: SessionView) -> Message:
    """A new DM (so it notifies) telling the agent security revoked their session."""
    request = session.request
    when = format_local_time(session.ended_at or session.expires_at, request.agent_tz)
    by = f"{mention(session.ended_by)} (security)" if session.ended_by else "Security"
    blocks = [
        header("Your session was revoked"),
        section(
            f"{by} revoked your session as {user_text(request)} in {account_text(request)} at {escape(when)}. "
            "The product has closed it. Start a new request if you still need access, or ask them why."
        ),
        context(f"session {escape_truncated(session.id, ID_BUDGET)}"),
    ]
    text = f"Your session as {fallback_subject(request)} was revoked at {escape(when)}."
    return message(text, blocks)


_OVER_WORDS = {
    RequestState.ENDED.value: "ended",
    RequestState.EXPIRED.value: "expired",
    RequestState.REVOKED.value: "was revoked",
}


def session_over_message(session: SessionView) -> Message:
    """The DM once the session is over: ended by the agent, expired, or revoked. An ended or
    expired session offers **Start a new request** (its value: the session id only; the click
    is re-checked by the domain): the agent asks again, with a fresh reason, and within the
    policy's window the new request is linked to this session as a re-initiation. A revoked
    session offers nothing: security took the access away (`/impersonate` still works, and is
    linked the same way)."""
    request = session.request
    kind = session.end_reason if session.end_reason in _OVER_WORDS else session.state
    # A session still marked active but passed here is over by the clock: it expired.
    verb = _OVER_WORDS.get(kind, "expired")
    when = format_local_time(session.ended_at or session.expires_at, request.agent_tz)
    who = ""
    if kind == RequestState.ENDED.value and session.ended_by == request.agent_slack_id:
        who = " by you"
    elif kind == RequestState.REVOKED.value:
        who = " by security"
    blocks = [
        header(f"Session {verb} at {when}"),
        section(f"Your session as {user_text(request)} {verb}{who} at {escape(when)}."),
        request_fields(request, session_length=duration_label(request.duration_minutes)),
    ]
    if kind != RequestState.REVOKED.value:
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.SESSION_ACTIONS.value,
                "elements": [button(ActionId.START_NEW_REQUEST, "Start a new request", session.id)],
            }
        )
    text = f"Your session as {fallback_subject(request)} {verb} at {escape(when)}."
    return message(text, blocks)
