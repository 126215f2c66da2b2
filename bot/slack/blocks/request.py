"""The `/impersonate` modal and what the agent is told about their request.

The modal's layout is defined here once, so reading its state back
(`request_form_from_state`, `selected_account`) lives beside the function that builds it.
What it offers is a convenience, not a control: bot.domain.requests.submit_request decides
the submission again, whatever the payload says.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.domain.approvals import Decided
from bot.domain.policy import REASON_MAX_LENGTH, REINITIATION_GATE, TICKET_MAX_LENGTH, BlockCause, Field_
from bot.domain.requests import BLOCK_MESSAGES, AlreadyOpen, Blocked, ModalOptions, NewRequestModal, Pending, RequestForm
from bot.domain.views import RequestState, RequestView, SessionScope
from bot.slack import limits
from bot.slack.blocks.kit import (
    Block,
    Message,
    button,
    context,
    duration_label,
    external_select,
    header,
    input_block,
    message,
    option,
    options,
    plain,
    scope_label,
    section,
    text_input,
)
from bot.slack.blocks.parts import REASON_BUDGET, approvals_needed, fallback_subject, first_asked, mentions, nudged_text, reason_section, request_fields, user_text
from bot.slack.blocks.state import checked_values, id_or_none, minutes_value, selected_value, typed_value
from bot.slack.command_text import TicketHint
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_time, mention, truncate_plain

#: where each refusal is shown in the request modal (`response_action: errors`)
FIELD_BLOCKS: dict[Field_, BlockId] = {
    Field_.ACCOUNT: BlockId.ACCOUNT,
    Field_.USER: BlockId.USER,
    Field_.REASON: BlockId.REASON,
    Field_.TICKET: BlockId.TICKET,
    Field_.DURATION: BlockId.DURATION,
    Field_.SCOPE: BlockId.SCOPE,
    Field_.BREAK_GLASS: BlockId.BREAK_GLASS,
    Field_.JUSTIFICATION: BlockId.JUSTIFICATION,
}

#: the value of the one option of the break-glass checkbox
BREAK_GLASS_VALUE = "break_glass"


def request_modal(
    offer: ModalOptions,
    *,
    initial_account: tuple[str, str] | None,
    previous_session_id: str | None = None,
    initial_ticket: str | None = None,
    ticket_note: str | None = None,
) -> dict[str, Any]:
    """The `/impersonate` modal, limited to what this agent's role allows (`offer`).

    `previous_session_id`: the agent re-initiates after a session; the id
    rides in `private_metadata` (ids only) and comes back with the submission, which links the
    new request to that session once the domain has checked the session is the agent's own.

    `initial_ticket` / `ticket_note` (the message shortcut): the ticket field starts with the
    ticket found in the message, and a line above the form says what was found (already
    escaped: it is the message's text).
    """
    if offer.role is None:
        return no_role_modal()
    blocks: list[Block] = [
        _account_input(initial_account),
        _user_input(),
        _reason_input(offer.reason_min_length),
        *_justification_input(offer.justifications),
        _ticket_input(required=offer.ticket_required, initial=initial_ticket),
        _duration_input(offer.duration_choices, default=offer.default_duration),
        _scope_input(can_read_write=offer.can_read_write),
    ]
    if offer.can_break_glass:
        blocks.append(_break_glass_input(offer.break_glass_reason_min_length))
    if ticket_note:
        blocks.insert(0, context(ticket_note))
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_REQUEST.value,
        "title": plain("Impersonate a user", limits.MODAL_TITLE_MAX),
        "submit": plain("Request", limits.MODAL_SUBMIT_MAX),
        "close": plain("Cancel", limits.MODAL_CLOSE_MAX),
    }
    previous = id_or_none(previous_session_id)
    if previous is not None:
        blocks.insert(0, section("A new request after your session: give a fresh reason for the time you still need."))
        view["private_metadata"] = previous
    view["blocks"] = blocks[: limits.MODAL_BLOCKS_MAX]
    return view


def new_request_view(start: NewRequestModal | AlreadyOpen, *, tz_name: str | None) -> dict[str, Any]:
    """What "Start a new request" opens (bot.domain.requests.new_request_from_session): the
    request modal, pre-filled with the session's account and carrying its id once it is
    over, or the open access the agent still holds (`tz_name`: the clicker's time zone)."""
    if isinstance(start, AlreadyOpen):
        return already_open_modal(start, tz_name=tz_name)
    return request_modal(
        start.options,
        initial_account=account_choice(start.request) if start.request is not None else None,
        previous_session_id=start.session_id,
    )


def _account_input(initial_account: tuple[str, str] | None) -> Block:
    """The account typeahead (bot.slack.listeners.options answers it), starting on
    `initial_account` (id, label) when given and its id fits an option."""
    select = external_select(ActionId.ACCOUNT_SELECT, "Search accounts by name or id")
    initial = option(*initial_account) if initial_account is not None else None
    if initial is not None:
        select["initial_option"] = initial
    return input_block(BlockId.ACCOUNT, "Account", select)


def _user_input() -> Block:
    """The customer-user typeahead: its options depend on the account chosen above, read
    from the view's state when Slack asks (selected_account)."""
    select = external_select(ActionId.USER_SELECT, "Search users by name or e-mail")
    return input_block(BlockId.USER, "Customer user", select, hint="Pick the account first: this list shows that account's users.")


def _reason_input(min_length: int) -> Block:
    """The free-text reason, at least the policy's length; the domain checks it again."""
    reason_min = min(max(min_length, 0), REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX)
    element = text_input(
        ActionId.REASON_INPUT,
        multiline=True,
        min_length=reason_min,
        max_length=REASON_MAX_LENGTH,
        placeholder="What are you going to do, and why?",
    )
    return input_block(BlockId.REASON, "Reason", element, hint=f"At least {reason_min} characters. The customer and auditors may read it.")


def _justification_input(justifications: tuple[tuple[str, str], ...]) -> list[Block]:
    """The justification code, beside the free-text reason: required (not optional) whenever
    the policy lists codes, and absent when it lists none. Choosing one is a convenience; the
    domain refuses any value that is not one of the policy's codes."""
    choices = options(justifications)
    if not choices:
        return []
    element = {
        "type": "static_select",
        "action_id": ActionId.JUSTIFICATION_SELECT.value,
        "placeholder": plain("Choose one", limits.PLACEHOLDER_MAX),
        "options": choices,
    }
    return [input_block(BlockId.JUSTIFICATION, "Justification", element, hint="Why this access is lawful: recorded with the request and shown to approvers.")]


def _ticket_input(*, required: bool, initial: str | None) -> Block:
    """The ticket, optional unless the policy requires one; `initial`: the ticket the message
    shortcut found, cut to the longest ticket the domain accepts."""
    element = text_input(
        ActionId.TICKET_INPUT,
        max_length=TICKET_MAX_LENGTH,
        placeholder="SUP-1234 or a link to the ticket",
        initial=initial[:TICKET_MAX_LENGTH] if initial else None,
    )
    return input_block(BlockId.TICKET, "Ticket", element, optional=not required)


def _duration_input(choices: Sequence[int], *, default: int | None) -> Block:
    """The session lengths the role allows, in minutes, starting on the policy's default."""
    durations = options((str(m), duration_label(m)) for m in choices)
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.DURATION_SELECT.value,
        "placeholder": plain("How long", limits.PLACEHOLDER_MAX),
        "options": durations,
    }
    initial = next((o for o in durations if o["value"] == str(default)), None)
    if initial is not None:
        select["initial_option"] = initial
    return input_block(BlockId.DURATION, "Session length", select, hint="Counted from when you open the link.")


def _scope_input(*, can_read_write: bool) -> Block:
    """Read-only, and read-write where the role allows it; read-only is chosen, so that
    the agent gets the least privilege unless they deliberately ask for more."""
    scopes = [SessionScope.READ_ONLY.value] + ([SessionScope.READ_WRITE.value] if can_read_write else [])
    choices = options((s, scope_label(s)) for s in scopes)
    element = {"type": "radio_buttons", "action_id": ActionId.SCOPE_CHOICE.value, "options": choices, "initial_option": choices[0]}
    return input_block(BlockId.SCOPE, "Access", element)


def _break_glass_input(reason_min_length: int) -> Block:
    """Offered only to roles with `can_break_glass`; never ticked by default."""
    choice = option(BREAK_GLASS_VALUE, "Break glass (skip approval)")
    element = {"type": "checkboxes", "action_id": ActionId.BREAK_GLASS_CHOICE.value, "options": [choice]}
    hint = (
        "Only for an emergency on an account that needs approval: you get the link without "
        "approval, the security channel is told at once, and it is audited as break-glass. "
        f"The reason must then be at least {reason_min_length} characters."
    )
    return input_block(BlockId.BREAK_GLASS, "Emergency access", element, hint=hint, optional=True)


def no_role_modal() -> dict[str, Any]:
    """Shown to someone the policy gives no impersonation role: nothing to submit."""
    return {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_UNAVAILABLE.value,
        "title": plain("Impersonate a user", limits.MODAL_TITLE_MAX),
        "close": plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [section(escape(BLOCK_MESSAGES[BlockCause.NO_ROLE]))],
    }


def field_errors(blocked: Blocked, *, present: Iterable[str] | None = None) -> dict[str, str]:
    """`response_action: errors` for a refused request: the message under the field it is
    about. A refusal about something the modal has no field for goes on the account field
    (the top of the form), so it is never lost. `present`: the block ids of the submitted
    view, when known (a break-glass refusal after the role lost the power, for instance,
    refers to a checkbox an older modal may lack); Slack refuses errors on an absent block."""
    block = FIELD_BLOCKS.get(blocked.field, BlockId.ACCOUNT)
    if present is not None and block.value not in set(present):
        block = BlockId.ACCOUNT
    return {block.value: truncate_plain(blocked.message, limits.FIELD_ERROR_MAX)}


def selected_account(values: Mapping[str, Any]) -> str | None:
    """The account chosen so far in the request modal (`view.state.values`), e.g. while the
    user-select asks for options (block_suggestion payloads carry the view's state)."""
    return selected_value(values, BlockId.ACCOUNT, ActionId.ACCOUNT_SELECT)


def request_form_from_state(values: Mapping[str, Any], *, private_metadata: str = "") -> RequestForm:
    """Read a submitted request modal into a RequestForm: ids from the selected options,
    the duration as minutes. Missing or malformed answers become None / "" so the domain
    refuses them on the right field; nothing here decides anything. `private_metadata` is
    the view's, which carries the previous session's id when the agent re-initiates."""
    duration = selected_value(values, BlockId.DURATION, ActionId.DURATION_SELECT)
    return RequestForm(
        account=selected_account(values),
        user=selected_value(values, BlockId.USER, ActionId.USER_SELECT),
        reason=typed_value(values, BlockId.REASON, ActionId.REASON_INPUT) or "",
        ticket=typed_value(values, BlockId.TICKET, ActionId.TICKET_INPUT) or None,
        duration_minutes=minutes_value(duration),
        scope=selected_value(values, BlockId.SCOPE, ActionId.SCOPE_CHOICE) or SessionScope.READ_ONLY.value,
        break_glass=BREAK_GLASS_VALUE in checked_values(values, BlockId.BREAK_GLASS, ActionId.BREAK_GLASS_CHOICE),
        previous_session_id=id_or_none(private_metadata),
        justification=selected_value(values, BlockId.JUSTIFICATION, ActionId.JUSTIFICATION_SELECT),
    )


def account_choice(request: RequestView) -> tuple[str, str]:
    """(account id, label) of a request's account, labelled as the account typeahead labels
    it (bot.domain.requests.account_choices), to pre-fill the request modal."""
    return request.account, f"{request.account_name} ({request.account})"


def account_options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Options for the account typeahead: (account id, label) pairs."""
    return options(pairs)


def user_options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Options for the customer-user typeahead: (user id, label) pairs."""
    return options(pairs)


def already_open_modal(open_access: AlreadyOpen, *, tz_name: str | None) -> dict[str, Any]:
    """The request modal, updated when the agent already holds an open access to the same
    customer user: what it is, until when, and End / Cancel for it (values carry ids only;
    the click is re-checked like the DM's buttons)."""
    request = open_access.request
    who = f"*{escape(request.customer_user_name)}* at *{escape(request.account_name)}*"
    until = f" until {format_local_time(open_access.until, tz_name)}" if open_access.until else ""
    blocks: list[Block]
    if open_access.session_id is not None:
        blocks = [
            section(f"You already have a live session with {who}{until}. Nothing new was issued."),
            {
                "type": "actions",
                "block_id": BlockId.SESSION_ACTIONS.value,
                "elements": [button(ActionId.END_SESSION, "End session", open_access.session_id, style="danger")],
            },
        ]
    elif request.state == RequestState.PENDING.value:
        blocks = [
            section(f"You already asked for access to {who}; it is waiting for approval{until}. Nothing new was requested."),
            {
                "type": "actions",
                "block_id": BlockId.PENDING_ACTIONS.value,
                "elements": [button(ActionId.CANCEL_REQUEST, "Cancel request", request.id)],
            },
        ]
    else:
        blocks = [section(f"You already have a link to {who} in your DM from this app, valid{until}. Nothing new was issued.")]
    blocks.append(context("One open access per customer user: end or cancel it to ask again."))
    return {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_ALREADY_OPEN.value,
        "title": plain("Already open", limits.MODAL_TITLE_MAX),
        "close": plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": blocks,
    }


def ticket_note(hint: TicketHint) -> str:
    """The line above the request form opened from a message: what was found in it (the
    message's own text, escaped; the link is shown as text, not made a link of ours)."""
    found = [f"ticket `{escape(hint.reference)}`"] if hint.reference else []
    if hint.link:
        found.append(escape_truncated(hint.link, 300))
    if not found:
        return "No ticket found in that message: fill in the ticket yourself."
    return "From the message: " + " · ".join(found)


def _gate_reason(request: RequestView) -> str:
    gated_by = request.gated_by
    flags = sorted(f for f in gated_by if f not in ("role", REINITIATION_GATE))
    parts = []
    if flags:
        parts.append("the account is " + " and ".join(escape(f) for f in flags))
    if "role" in gated_by:
        parts.append("your role requires approval")
    if REINITIATION_GATE in gated_by:
        parts.append(f"it is your re-initiation #{request.reinitiation_ordinal} in a row with this customer user")
    return " and ".join(parts) if parts else "the policy requires it"


def pending_message(pending: Pending) -> Message:
    """The agent's DM when their request waits for approval: why, how many approvals, who
    was asked, and a Cancel button whose value is the request id only."""
    request = pending.request
    asked = first_asked(pending.ask) if pending.ask is not None else ()
    if asked:
        who = f"It was sent to {mentions(asked)}; it needs {approvals_needed(pending.approvals_required)}."
    else:
        who = "No one in the policy can approve it, so it will expire: ask an admin to check the policy's approvers."
    if pending.ask is not None:
        who += nudged_text(pending.ask, request.agent_tz)
    blocks = [
        header("Approval needed"),
        section(
            f"Your request to impersonate {user_text(request)} needs approval because "
            f"{_gate_reason(request)}. {who} "
            "You will get the one-time link here once it is approved."
        ),
        request_fields(request, session_length=duration_label(request.duration_minutes)),
        reason_section(request),
    ]
    if request.pending_expires_at is not None:
        blocks.append(
            context(f"Without a decision by {escape(format_local_time(request.pending_expires_at, request.agent_tz))}, it expires.")
        )
    blocks.append(
        {
            "type": "actions",
            "block_id": BlockId.PENDING_ACTIONS.value,
            "elements": [
                button(
                    ActionId.CANCEL_REQUEST,
                    "Cancel request",
                    request.id,
                    confirm=("Cancel this request?", "The approvers' messages will say you cancelled it.", "Cancel request", "Keep it"),
                )
            ],
        }
    )
    text = f"Your request to impersonate {fallback_subject(request)} needs approval."
    return message(text, blocks)


def request_outcome_message(decided: Decided) -> Message:
    """The agent's "approval needed" DM edited in place with the outcome,
    in the agent's time zone. On approval the link follows in a new DM (grant_message), as
    for any grant, so that the agent is notified and the link message stands alone."""
    request = decided.request
    at = escape(format_local_time(decided.at, request.agent_tz))
    by = mention(decided.by) if decided.by else "an approver"
    if decided.outcome == "approved":
        headline, line = "Request approved", f"Approved by {by} at {at}. Your one-time link is in the next message."
    elif decided.outcome == "denied":
        reason = escape_truncated(decided.reason or "", REASON_BUDGET)
        headline, line = "Request denied", f"Denied by {by} at {at}.\n*Their reason*\n{reason}"
    elif decided.outcome == "cancelled":
        headline, line = "Request cancelled", f"You cancelled this request at {at}."
    else:
        headline = "Request expired"
        line = f"No approver decided in time: the request expired at {at}. Run /impersonate again if you still need access."
    blocks = [
        header(headline),
        section(line),
        request_fields(request, session_length=duration_label(request.duration_minutes)),
        reason_section(request),
    ]
    text = f"{headline}: impersonating {fallback_subject(request)}."
    return message(text, blocks)
