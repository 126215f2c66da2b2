"""Block Kit builders: pure functions from domain views to Slack JSON (dicts).

Every id comes from bot.slack.ids, every size from bot.slack.limits. User text (reasons,
tickets, account and user names, e-mails) is escaped before it enters a mrkdwn field
(bot.slack.mrkdwn) and cut to fit its field, and mrkdwn objects are sent with
`verbatim: true` so that Slack does not turn bare URLs, `#channel` or `@name` in user text
into links or mentions either. Button values carry only ids.

Message builders return `(text, blocks)`: `text` is the notification fallback Slack shows
in push notifications and screen readers; it is escaped too, and never carries the link.

The request modal's layout is defined here once, so reading its state back
(`request_form_from_state`, `selected_account`) lives beside the function that builds it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.db.models import RequestState, SessionScope
from bot.domain.policy import REASON_MAX_LENGTH, TICKET_MAX_LENGTH, BlockCause, Field_
from bot.domain.requests import BLOCK_MESSAGES, Blocked, Granted, ModalOptions, Pending, RequestForm
from bot.domain.views import RequestView, SessionView
from bot.slack import limits
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_time, link, truncate_escaped, truncate_plain

Block = dict[str, Any]
Message = tuple[str, list[Block]]

SCOPE_LABELS: dict[str, str] = {
    SessionScope.READ_ONLY.value: "Read-only",
    SessionScope.READ_WRITE.value: "Read and write",
}

#: where each refusal is shown in the request modal (`response_action: errors`)
FIELD_BLOCKS: dict[Field_, BlockId] = {
    Field_.ACCOUNT: BlockId.ACCOUNT,
    Field_.USER: BlockId.USER,
    Field_.REASON: BlockId.REASON,
    Field_.TICKET: BlockId.TICKET,
    Field_.DURATION: BlockId.DURATION,
    Field_.SCOPE: BlockId.SCOPE,
}

# Budgets for user text inside one mrkdwn field, chosen so that a field made of several
# pieces stays under its Slack limit however long (and however escape-heavy) each piece is.
_NAME_BUDGET = 300
_ID_BUDGET = 200
_EMAIL_BUDGET = 400
_TICKET_BUDGET = 600
_REASON_BUDGET = limits.SECTION_TEXT_MAX - 100
_FALLBACK_NAME_BUDGET = 200


# ---------------------------------------------------------------------------- primitives


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate_plain(text, limit), "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn object for text that is already escaped (or is our own markup)."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str, *, block_id: BlockId | None = None) -> Block:
    block: Block = {"type": "section", "text": _mrkdwn(truncate_escaped(text, limits.SECTION_TEXT_MAX))}
    if block_id is not None:
        block["block_id"] = block_id.value
    return block


def _fields(pairs: Iterable[tuple[str, str]]) -> Block:
    """A section of `*label*\\nvalue` fields; labels are ours, values already escaped."""
    fields = [
        _mrkdwn(truncate_escaped(f"*{label}*\n{value}", limits.SECTION_FIELD_TEXT_MAX))
        for label, value in list(pairs)[: limits.SECTION_FIELDS_MAX]
    ]
    return {"type": "section", "fields": fields}


def _header(text: str) -> Block:
    return {"type": "header", "text": _plain(text, limits.HEADER_TEXT_MAX)}


def _context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [_mrkdwn(truncate_escaped(t, limits.SECTION_TEXT_MAX)) for t in texts[: limits.CONTEXT_ELEMENTS_MAX]],
    }


def _option(value: str, label: str) -> dict[str, Any] | None:
    """An option object, or None when the value would not fit (an id is never truncated:
    a cut id would select something else)."""
    if not value or len(value) > limits.OPTION_VALUE_MAX:
        return None
    return {"text": _plain(label, limits.OPTION_TEXT_MAX), "value": value}


def _options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = []
    for value, label in pairs:
        option = _option(value, label)
        if option is not None:
            options.append(option)
        if len(options) == limits.OPTIONS_MAX:
            break
    return options


def _message(text: str, blocks: list[Block]) -> Message:
    return truncate_escaped(text, limits.MESSAGE_TEXT_MAX), blocks[: limits.MESSAGE_BLOCKS_MAX]


def duration_label(minutes: int) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def scope_label(scope: str) -> str:
    return SCOPE_LABELS.get(scope, scope)


# ---------------------------------------------------------------------------- the modal


def request_modal(options: ModalOptions, *, initial_account: tuple[str, str] | None) -> dict[str, Any]:
    """The `/impersonate` modal, limited to what this agent's role allows.

    What it offers is a convenience, not a control: the submission is decided again by
    bot.domain.requests.submit_request, whatever the payload says.
    """
    if options.role is None:
        return no_role_modal()
    account_select: dict[str, Any] = {
        "type": "external_select",
        "action_id": ActionId.ACCOUNT_SELECT.value,
        "placeholder": _plain("Search accounts by name or id", limits.PLACEHOLDER_MAX),
        # 0: list the first accounts as soon as the menu opens, before any typing
        "min_query_length": 0,
    }
    if initial_account is not None:
        initial = _option(*initial_account)
        if initial is not None:
            account_select["initial_option"] = initial
    durations = _options((str(m), duration_label(m)) for m in options.duration_choices)
    duration_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.DURATION_SELECT.value,
        "placeholder": _plain("How long", limits.PLACEHOLDER_MAX),
        "options": durations,
    }
    default = next((o for o in durations if o["value"] == str(options.default_duration)), None)
    if default is not None:
        duration_select["initial_option"] = default
    scopes = [SessionScope.READ_ONLY.value] + ([SessionScope.READ_WRITE.value] if options.can_read_write else [])
    scope_options = _options((s, scope_label(s)) for s in scopes)
    reason_min = min(max(options.reason_min_length, 0), REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX)
    blocks: list[Block] = [
        {
            "type": "input",
            "block_id": BlockId.ACCOUNT.value,
            "label": _plain("Account", limits.INPUT_LABEL_MAX),
            "element": account_select,
        },
        {
            "type": "input",
            "block_id": BlockId.USER.value,
            "label": _plain("Customer user", limits.INPUT_LABEL_MAX),
            "hint": _plain("Pick the account first: this list shows that account's users.", limits.INPUT_HINT_MAX),
            "element": {
                "type": "external_select",
                "action_id": ActionId.USER_SELECT.value,
                "placeholder": _plain("Search users by name or e-mail", limits.PLACEHOLDER_MAX),
                "min_query_length": 0,
            },
        },
        {
            "type": "input",
            "block_id": BlockId.REASON.value,
            "label": _plain("Reason", limits.INPUT_LABEL_MAX),
            "hint": _plain(
                f"At least {reason_min} characters. The customer and auditors may read it.", limits.INPUT_HINT_MAX
            ),
            "element": {
                "type": "plain_text_input",
                "action_id": ActionId.REASON_INPUT.value,
                "multiline": True,
                "min_length": reason_min,
                "max_length": min(REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX),
                "placeholder": _plain("What are you going to do, and why?", limits.PLACEHOLDER_MAX),
            },
        },
        {
            "type": "input",
            "block_id": BlockId.TICKET.value,
            "optional": not options.ticket_required,
            "label": _plain("Ticket", limits.INPUT_LABEL_MAX),
            "element": {
                "type": "plain_text_input",
                "action_id": ActionId.TICKET_INPUT.value,
                "max_length": min(TICKET_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX),
                "placeholder": _plain("SUP-1234 or a link to the ticket", limits.PLACEHOLDER_MAX),
            },
        },
        {
            "type": "input",
            "block_id": BlockId.DURATION.value,
            "label": _plain("Session length", limits.INPUT_LABEL_MAX),
            "hint": _plain("Counted from when you open the link.", limits.INPUT_HINT_MAX),
            "element": duration_select,
        },
        {
            "type": "input",
            "block_id": BlockId.SCOPE.value,
            "label": _plain("Access", limits.INPUT_LABEL_MAX),
            "element": {
                "type": "radio_buttons",
                "action_id": ActionId.SCOPE_CHOICE.value,
                "options": scope_options,
                # least privilege unless the agent deliberately asks for more
                "initial_option": scope_options[0],
            },
        },
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_REQUEST.value,
        "title": _plain("Impersonate a user", limits.MODAL_TITLE_MAX),
        "submit": _plain("Request", limits.MODAL_SUBMIT_MAX),
        "close": _plain("Cancel", limits.MODAL_CLOSE_MAX),
        "blocks": blocks[: limits.MODAL_BLOCKS_MAX],
    }


def no_role_modal() -> dict[str, Any]:
    """Shown to someone the policy gives no impersonation role: nothing to submit."""
    return {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_UNAVAILABLE.value,
        "title": _plain("Impersonate a user", limits.MODAL_TITLE_MAX),
        "close": _plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [_section(escape(BLOCK_MESSAGES[BlockCause.NO_ROLE]))],
    }


def field_errors(blocked: Blocked) -> dict[str, str]:
    """`response_action: errors` for a refused request: the message under the field it is
    about. A refusal about something the modal has no field for goes on the account field
    (the top of the form), so it is never lost."""
    block = FIELD_BLOCKS.get(blocked.field, BlockId.ACCOUNT)
    return {block.value: truncate_plain(blocked.message, limits.FIELD_ERROR_MAX)}


def _state_value(values: Mapping[str, Any], block: BlockId, action: ActionId) -> dict[str, Any]:
    entry = (values.get(block.value) or {}).get(action.value)
    return entry if isinstance(entry, dict) else {}


def _selected(values: Mapping[str, Any], block: BlockId, action: ActionId) -> str | None:
    option = _state_value(values, block, action).get("selected_option")
    value = option.get("value") if isinstance(option, dict) else None
    return value if isinstance(value, str) and value else None


def _typed(values: Mapping[str, Any], block: BlockId, action: ActionId) -> str | None:
    value = _state_value(values, block, action).get("value")
    return value if isinstance(value, str) else None


def _minutes(value: str | None) -> int | None:
    """A duration option's value back to minutes; anything but a short run of ASCII digits
    (our own option values) is None. (str.isdigit alone would accept "²", which int() refuses.)"""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 6:
        return None
    return int(value)


def selected_account(values: Mapping[str, Any]) -> str | None:
    """The account chosen so far in the request modal (`view.state.values`), e.g. while the
    user-select asks for options (block_suggestion payloads carry the view's state)."""
    return _selected(values, BlockId.ACCOUNT, ActionId.ACCOUNT_SELECT)


def request_form_from_state(values: Mapping[str, Any]) -> RequestForm:
    """Read a submitted request modal into a RequestForm: ids from the selected options,
    the duration as minutes. Missing or malformed answers become None / "" so the domain
    refuses them on the right field; nothing here decides anything."""
    duration = _selected(values, BlockId.DURATION, ActionId.DURATION_SELECT)
    return RequestForm(
        account=selected_account(values),
        user=_selected(values, BlockId.USER, ActionId.USER_SELECT),
        reason=_typed(values, BlockId.REASON, ActionId.REASON_INPUT) or "",
        ticket=_typed(values, BlockId.TICKET, ActionId.TICKET_INPUT) or None,
        duration_minutes=_minutes(duration),
        scope=_selected(values, BlockId.SCOPE, ActionId.SCOPE_CHOICE) or SessionScope.READ_ONLY.value,
    )


def account_options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Options for the account typeahead: (account id, label) pairs."""
    return _options(pairs)


def user_options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Options for the customer-user typeahead: (user id, label) pairs."""
    return _options(pairs)


# ---------------------------------------------------------------------------- messages


def _account_text(request: RequestView) -> str:
    return f"{escape_truncated(request.account_name, _NAME_BUDGET)} ({escape_truncated(request.account, _ID_BUDGET)})"


def _user_text(request: RequestView) -> str:
    return (
        f"{escape_truncated(request.customer_user_name, _NAME_BUDGET)} "
        f"({escape_truncated(request.customer_user_email, _EMAIL_BUDGET)})"
    )


def _request_fields(request: RequestView, *, session_length: str) -> Block:
    pairs = [
        ("Account", _account_text(request)),
        ("Customer user", _user_text(request)),
        ("Access", escape(scope_label(request.scope))),
        ("Session length", session_length),
    ]
    if request.ticket:
        pairs.append(("Ticket", escape_truncated(request.ticket, _TICKET_BUDGET)))
    return _fields(pairs)


def _reason_section(request: RequestView) -> Block:
    return _section(f"*Reason*\n{escape_truncated(request.reason, _REASON_BUDGET)}")


def _fallback_subject(request: RequestView) -> str:
    return (
        f"{escape_truncated(request.customer_user_name, _FALLBACK_NAME_BUDGET)} in "
        f"{escape_truncated(request.account_name, _FALLBACK_NAME_BUDGET)}"
    )


def grant_message(granted: Granted) -> Message:
    """The agent's DM with the one-time link. The link sits in its own section, built from
    the issued URL and our own label, never inside escaped user text; the fallback text
    (shown in notifications, possibly on a lock screen) does not carry it."""
    request = granted.request
    until = format_local_time(granted.link.expires_at, request.agent_tz)
    window = duration_label(granted.redeem_window_minutes)
    length = duration_label(request.duration_minutes)
    blocks = [
        _header("Your impersonation link is ready"),
        _section(
            f"{link(granted.link.url, 'Open session')}\n"
            f"The link works once and is valid for {window}, until {until}. "
            "Opening it starts the session.",
            block_id=BlockId.GRANT_LINK,
        ),
        _request_fields(request, session_length=f"{length}, from when you open the link"),
        _reason_section(request),
        _context("Only you can use this link: do not forward it. Every step is recorded in the audit log."),
    ]
    text = f"Your link to impersonate {_fallback_subject(request)} is ready (valid for {window})."
    return _message(text, blocks)


def _gate_reason(gated_by: frozenset[str]) -> str:
    flags = sorted(f for f in gated_by if f != "role")
    parts = []
    if flags:
        parts.append("the account is " + " and ".join(escape(f) for f in flags))
    if "role" in gated_by:
        parts.append("your role requires approval")
    return " and ".join(parts) if parts else "the policy requires it"


def pending_message(pending: Pending) -> Message:
    """The agent's DM when their request waits for approval. Who is asked is issue 3's
    business; here the agent learns that approval is needed, why, and how many."""
    request = pending.request
    count = pending.approvals_required
    approvers = "one approver" if count == 1 else f"{count} different approvers"
    blocks = [
        _header("Approval needed"),
        _section(
            f"Your request to impersonate {_user_text(request)} needs approval because "
            f"{_gate_reason(request.gated_by)}. It is waiting for {approvers} with approval rights. "
            "You will get the one-time link here once it is approved."
        ),
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
        _reason_section(request),
    ]
    text = f"Your request to impersonate {_fallback_subject(request)} needs approval."
    return _message(text, blocks)


def session_active_message(session: SessionView) -> Message:
    """The DM edited in place once the link is redeemed: until when, and an End button whose
    value is the session id only (the click is re-checked by sessions.end_session)."""
    request = session.request
    until = format_local_time(session.expires_at, request.agent_tz)
    blocks = [
        _header(f"Session active until {until}"),
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
        {
            "type": "actions",
            "block_id": BlockId.SESSION_ACTIONS.value,
            "elements": [
                {
                    "type": "button",
                    "action_id": ActionId.END_SESSION.value,
                    "text": _plain("End session", limits.BUTTON_TEXT_MAX),
                    "style": "danger",
                    "value": session.id,
                    "confirm": {
                        "title": _plain("End this session?", limits.CONFIRM_TITLE_MAX),
                        "text": _plain("The product closes the impersonation at once.", limits.CONFIRM_TEXT_MAX),
                        "confirm": _plain("End session", limits.CONFIRM_BUTTON_MAX),
                        "deny": _plain("Keep it", limits.CONFIRM_BUTTON_MAX),
                    },
                }
            ],
        },
    ]
    text = f"Your session as {_fallback_subject(request)} is active until {escape(until)}."
    return _message(text, blocks)


_OVER_WORDS = {
    RequestState.ENDED.value: "ended",
    RequestState.EXPIRED.value: "expired",
    RequestState.REVOKED.value: "was revoked",
}


def session_over_message(session: SessionView) -> Message:
    """The DM once the session is over: ended by the agent, expired, or revoked. No buttons."""
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
        _header(f"Session {verb} at {when}"),
        _section(f"Your session as {_user_text(request)} {verb}{who} at {escape(when)}."),
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
    ]
    text = f"Your session as {_fallback_subject(request)} {verb} at {escape(when)}."
    return _message(text, blocks)
