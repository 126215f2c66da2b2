"""Block Kit builders: pure functions from domain views to Slack JSON (dicts).

Every id comes from bot.slack.ids, every size from bot.slack.limits. User text (reasons,
tickets, account and user names, e-mails) is escaped before it enters a mrkdwn field
(bot.slack.mrkdwn) and cut to fit its field, and mrkdwn objects are sent with
`verbatim: true` so that Slack does not turn bare URLs, `#channel` or `@name` in user text
into links or mentions either. The only markup is our own: the link, and `<@U…>` mentions
of people by their Slack id (mrkdwn.mention, which marks up well-formed ids only). Button
values and `private_metadata` carry only ids.

Message builders return `(text, blocks)`: `text` is the notification fallback Slack shows
in push notifications and screen readers; it is escaped too, and never carries the link.

The request modal's layout is defined here once, so reading its state back
(`request_form_from_state`, `selected_account`) lives beside the function that builds it.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.db.models import RequestState, SessionScope
from bot.domain.approvals import (
    DENY_REASON_MAX_LENGTH,
    DENY_REASON_MIN_LENGTH,
    AlreadyCounted,
    AlreadyDecided,
    ApprovalAsk,
    Counted,
    Decided,
    ExtensionView,
    PastSession,
    Refused,
)
from bot.domain.policy import REASON_MAX_LENGTH, REINITIATION_GATE, TICKET_MAX_LENGTH, BlockCause, Field_
from bot.domain.requests import BLOCK_MESSAGES, AlreadyOpen, Blocked, Granted, ModalOptions, NewRequestModal, Pending, RequestForm
from bot.domain.views import RequestView, SessionView
from bot.slack import limits
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import (
    escape,
    escape_truncated,
    format_local_date_time,
    format_local_time,
    link,
    mention,
    truncate_escaped,
    truncate_plain,
)

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
    Field_.BREAK_GLASS: BlockId.BREAK_GLASS,
    Field_.JUSTIFICATION: BlockId.JUSTIFICATION,
}

#: the value of the one option of the break-glass checkbox
BREAK_GLASS_VALUE = "break_glass"

# Budgets for user text inside one mrkdwn field, chosen so that a field made of several
# pieces stays under its Slack limit however long (and however escape-heavy) each piece is.
_NAME_BUDGET = 300
_ID_BUDGET = 200
_EMAIL_BUDGET = 400
_TICKET_BUDGET = 600
_REASON_BUDGET = limits.SECTION_TEXT_MAX - 100
#: a justification code (policy.JUSTIFICATION_CODE: at most 64 characters), inside the 100 the reason leaves
_CODE_BUDGET = 64
_FALLBACK_NAME_BUDGET = 200
_PAST_REASON_BUDGET = 200
#: mentions listed in one message ("asked: <@U1>, <@U2> and 3 others"); a mention is never cut
_MENTIONS_SHOWN = 20
#: recent sessions listed for an approver
_RECENT_SHOWN = 5


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


def _button(
    action: ActionId,
    label: str,
    value: str,
    *,
    style: str | None = None,
    confirm: tuple[str, str, str, str] | None = None,
) -> Block:
    """A button whose value is an id of ours; `confirm` is (title, text, confirm, deny)."""
    button: Block = {"type": "button", "action_id": action.value, "text": _plain(label, limits.BUTTON_TEXT_MAX), "value": value}
    if style is not None:
        button["style"] = style
    if confirm is not None:
        title, text, yes, no = confirm
        button["confirm"] = {
            "title": _plain(title, limits.CONFIRM_TITLE_MAX),
            "text": _plain(text, limits.CONFIRM_TEXT_MAX),
            "confirm": _plain(yes, limits.CONFIRM_BUTTON_MAX),
            "deny": _plain(no, limits.CONFIRM_BUTTON_MAX),
        }
    return button


def duration_label(minutes: int) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def scope_label(scope: str) -> str:
    return SCOPE_LABELS.get(scope, scope)


# ---------------------------------------------------------------------------- the modal


def request_modal(
    options: ModalOptions,
    *,
    initial_account: tuple[str, str] | None,
    previous_session_id: str | None = None,
    initial_ticket: str | None = None,
    ticket_note: str | None = None,
) -> dict[str, Any]:
    """The `/impersonate` modal, limited to what this agent's role allows.

    What it offers is a convenience, not a control: the submission is decided again by
    bot.domain.requests.submit_request, whatever the payload says.

    `previous_session_id`: the agent re-initiates after a session; the id
    rides in `private_metadata` (ids only) and comes back with the submission, which links the
    new request to that session once the domain has checked the session is the agent's own.

    `initial_ticket` / `ticket_note` (the message shortcut): the ticket field starts with the
    ticket found in the message, and a line above the form says what was found (already
    escaped: it is the message's text).
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
        *_justification_input(options.justifications),
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
                **({"initial_value": initial_ticket[:TICKET_MAX_LENGTH]} if initial_ticket else {}),
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
    if options.can_break_glass:
        blocks.append(_break_glass_input(options.break_glass_reason_min_length))
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_REQUEST.value,
        "title": _plain("Impersonate a user", limits.MODAL_TITLE_MAX),
        "submit": _plain("Request", limits.MODAL_SUBMIT_MAX),
        "close": _plain("Cancel", limits.MODAL_CLOSE_MAX),
    }
    if ticket_note:
        blocks.insert(0, _context(ticket_note))
    previous = _id_or_none(previous_session_id)
    if previous is not None:
        blocks.insert(0, _section("A new request after your session: give a fresh reason for the time you still need."))
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


def _justification_input(justifications: tuple[tuple[str, str], ...]) -> list[Block]:
    """The justification code, beside the free-text reason: required (not optional) whenever
    the policy lists codes, and absent when it lists none. Choosing one is a convenience; the
    domain refuses any value that is not one of the policy's codes."""
    options = _options(justifications)
    if not options:
        return []
    return [
        {
            "type": "input",
            "block_id": BlockId.JUSTIFICATION.value,
            "label": _plain("Justification", limits.INPUT_LABEL_MAX),
            "hint": _plain("Why this access is lawful: recorded with the request and shown to approvers.", limits.INPUT_HINT_MAX),
            "element": {
                "type": "static_select",
                "action_id": ActionId.JUSTIFICATION_SELECT.value,
                "placeholder": _plain("Choose one", limits.PLACEHOLDER_MAX),
                "options": options,
            },
        }
    ]


def _break_glass_input(reason_min_length: int) -> Block:
    """Offered only to roles with `can_break_glass`; never ticked by default."""
    option = _option(BREAK_GLASS_VALUE, "Break glass (skip approval)")
    return {
        "type": "input",
        "block_id": BlockId.BREAK_GLASS.value,
        "optional": True,
        "label": _plain("Emergency access", limits.INPUT_LABEL_MAX),
        "hint": _plain(
            "Only for an emergency on an account that needs approval: you get the link without "
            "approval, the security channel is told at once, and it is audited as break-glass. "
            f"The reason must then be at least {reason_min_length} characters.",
            limits.INPUT_HINT_MAX,
        ),
        "element": {"type": "checkboxes", "action_id": ActionId.BREAK_GLASS_CHOICE.value, "options": [option]},
    }


def _id_or_none(value: object) -> str | None:
    """An id of ours (a UUID in its canonical form) carried in private_metadata or a button
    value, or None for anything else, so a malformed value never reaches a query."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return value if str(parsed) == value else None


def no_role_modal() -> dict[str, Any]:
    """Shown to someone the policy gives no impersonation role: nothing to submit."""
    return {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_UNAVAILABLE.value,
        "title": _plain("Impersonate a user", limits.MODAL_TITLE_MAX),
        "close": _plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [_section(escape(BLOCK_MESSAGES[BlockCause.NO_ROLE]))],
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


def view_block_ids(view: Mapping[str, Any]) -> set[str] | None:
    """The block ids of a view as Slack echoes it back in a view_submission payload, or
    None when the payload does not list the view's blocks (then nothing can be told)."""
    listed = view.get("blocks")
    if not isinstance(listed, list) or not listed:
        return None
    return {str(b.get("block_id")) for b in listed if isinstance(b, dict) and b.get("block_id")}


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


def _checked(values: Mapping[str, Any], block: BlockId, action: ActionId) -> set[str]:
    options = _state_value(values, block, action).get("selected_options")
    if not isinstance(options, list):
        return set()
    return {o["value"] for o in options if isinstance(o, dict) and isinstance(o.get("value"), str)}


def request_form_from_state(values: Mapping[str, Any], *, private_metadata: str = "") -> RequestForm:
    """Read a submitted request modal into a RequestForm: ids from the selected options,
    the duration as minutes. Missing or malformed answers become None / "" so the domain
    refuses them on the right field; nothing here decides anything. `private_metadata` is
    the view's, which carries the previous session's id when the agent re-initiates."""
    duration = _selected(values, BlockId.DURATION, ActionId.DURATION_SELECT)
    return RequestForm(
        account=selected_account(values),
        user=_selected(values, BlockId.USER, ActionId.USER_SELECT),
        reason=_typed(values, BlockId.REASON, ActionId.REASON_INPUT) or "",
        ticket=_typed(values, BlockId.TICKET, ActionId.TICKET_INPUT) or None,
        duration_minutes=_minutes(duration),
        scope=_selected(values, BlockId.SCOPE, ActionId.SCOPE_CHOICE) or SessionScope.READ_ONLY.value,
        break_glass=BREAK_GLASS_VALUE in _checked(values, BlockId.BREAK_GLASS, ActionId.BREAK_GLASS_CHOICE),
        previous_session_id=_id_or_none(private_metadata),
        justification=_selected(values, BlockId.JUSTIFICATION, ActionId.JUSTIFICATION_SELECT),
    )


def carried_id(value: object) -> str:
    """The one id a button value or a modal's `private_metadata` of ours carries (a request,
    extension or session id), or "" when it is not one: the domain then finds nothing."""
    return _id_or_none(value) or ""


def account_choice(request: RequestView) -> tuple[str, str]:
    """(account id, label) of a request's account, labelled as the account typeahead labels
    it (bot.domain.requests.account_choices), to pre-fill the request modal."""
    return request.account, f"{request.account_name} ({request.account})"


def account_options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Options for the account typeahead: (account id, label) pairs."""
    return _options(pairs)


def user_options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Options for the customer-user typeahead: (user id, label) pairs."""
    return _options(pairs)


# ---------------------------------------------------------------------------- deny and extension modals


def deny_modal(subject_id: str, *, extension: bool = False) -> dict[str, Any]:
    """Asks an approver why they deny a request (or an extension). `private_metadata` holds
    the subject's id only; the submission is decided by bot.domain.approvals, which re-checks
    everything at that moment."""
    callback = CallbackId.DENY_EXTENSION if extension else CallbackId.DENY_REQUEST
    subject = "this request for more time" if extension else "this impersonation request"
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback.value,
        "title": _plain("Deny more time" if extension else "Deny request", limits.MODAL_TITLE_MAX),
        "submit": _plain("Deny", limits.MODAL_SUBMIT_MAX),
        "close": _plain("Back", limits.MODAL_CLOSE_MAX),
        "blocks": [
            _section(f"Why do you deny {subject}? The agent reads your reason and it is kept in the audit log."),
            {
                "type": "input",
                "block_id": BlockId.DENY_REASON.value,
                "label": _plain("Reason", limits.INPUT_LABEL_MAX),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.DENY_REASON_INPUT.value,
                    "multiline": True,
                    "min_length": DENY_REASON_MIN_LENGTH,
                    "max_length": min(DENY_REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX),
                },
            },
        ],
    }
    if _id_or_none(subject_id) is not None:
        view["private_metadata"] = subject_id
    return view


def deny_reason_from_state(values: Mapping[str, Any]) -> str:
    return _typed(values, BlockId.DENY_REASON, ActionId.DENY_REASON_INPUT) or ""


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
        "title": _plain("Nothing changed", limits.MODAL_TITLE_MAX),
        "close": _plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [_section(text)],
    }


@dataclass(frozen=True)
class ExtensionAnswer:
    """What the agent typed into the extension modal; decided by approvals.request_extension."""

    minutes: int
    reason: str


def extension_modal(session_id: str, *, choices_minutes: Sequence[int], reason_min_length: int) -> dict[str, Any]:
    """The agent asks for more time on a live session, with a fresh reason.
    `private_metadata` holds the session id only."""
    minutes = _options((str(m), duration_label(m)) for m in choices_minutes if m > 0)
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ActionId.EXTENSION_MINUTES_SELECT.value,
        "placeholder": _plain("How much more", limits.PLACEHOLDER_MAX),
        "options": minutes,
    }
    if minutes:
        select["initial_option"] = minutes[0]
    reason_min = min(max(reason_min_length, 0), REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX)
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CallbackId.REQUEST_EXTENSION.value,
        "title": _plain("Ask for more time", limits.MODAL_TITLE_MAX),
        "submit": _plain("Ask", limits.MODAL_SUBMIT_MAX),
        "close": _plain("Cancel", limits.MODAL_CLOSE_MAX),
        "blocks": [
            {
                "type": "input",
                "block_id": BlockId.EXTENSION_MINUTES.value,
                "label": _plain("More time", limits.INPUT_LABEL_MAX),
                "hint": _plain("An approver decides. The session never runs past your role's limit.", limits.INPUT_HINT_MAX),
                "element": select,
            },
            {
                "type": "input",
                "block_id": BlockId.EXTENSION_REASON.value,
                "label": _plain("Reason", limits.INPUT_LABEL_MAX),
                "hint": _plain(f"A fresh reason, at least {reason_min} characters: what is left to do?", limits.INPUT_HINT_MAX),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ActionId.EXTENSION_REASON_INPUT.value,
                    "multiline": True,
                    "min_length": reason_min,
                    "max_length": min(REASON_MAX_LENGTH, limits.PLAIN_TEXT_INPUT_MAX),
                },
            },
        ],
    }
    if _id_or_none(session_id) is not None:
        view["private_metadata"] = session_id
    return view


def extension_answer_from_state(values: Mapping[str, Any]) -> ExtensionAnswer:
    """Minutes (0 when missing or malformed: the domain refuses it) and the fresh reason."""
    minutes = _minutes(_selected(values, BlockId.EXTENSION_MINUTES, ActionId.EXTENSION_MINUTES_SELECT))
    return ExtensionAnswer(minutes or 0, _typed(values, BlockId.EXTENSION_REASON, ActionId.EXTENSION_REASON_INPUT) or "")


def extension_errors(message: str) -> dict[str, str]:
    """`response_action: errors` for the extension modal: a refusal shows under the reason."""
    return {BlockId.EXTENSION_REASON.value: truncate_plain(message, limits.FIELD_ERROR_MAX)}


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
    justification = f" · justification: {escape_truncated(request.justification, _CODE_BUDGET)}" if request.justification else ""
    return _section(f"*Reason*{justification}\n{escape_truncated(request.reason, _REASON_BUDGET)}")


def _fallback_subject(request: RequestView) -> str:
    return (
        f"{escape_truncated(request.customer_user_name, _FALLBACK_NAME_BUDGET)} in "
        f"{escape_truncated(request.account_name, _FALLBACK_NAME_BUDGET)}"
    )


def _approvals_needed(count: int) -> str:
    return "one approver" if count <= 1 else f"{count} different approvers"


def _mentions(user_ids: Sequence[str]) -> str:
    """`<@U1>, <@U2> and 3 others`: at most _MENTIONS_SHOWN mentions, so that a long list is
    shortened by whole mentions and never cut inside one."""
    shown = [mention(u) for u in user_ids[:_MENTIONS_SHOWN]]
    rest = len(user_ids) - len(shown)
    if rest > 0:
        return ", ".join(shown) + f" and {rest} other" + ("" if rest == 1 else "s")
    if len(shown) > 1:
        return ", ".join(shown[:-1]) + " and " + shown[-1]
    return shown[0] if shown else ""


def _flags_text(flags: Iterable[str]) -> str:
    names = sorted(flags)
    return escape(", ".join(names)) if names else "none"


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
        _header("Your impersonation link is ready"),
        _section(
            f"{link(granted.link.url, 'Open session')}\n"
            f"The link works once and is valid for {window}, until {until}. "
            "Opening it starts the session.",
            block_id=BlockId.GRANT_LINK,
        ),
        _request_fields(request, session_length=f"{length}, from when you open the link"),
        _reason_section(request),
    ]
    if approved_by:
        blocks.append(_context(f"Approved by {mention(approved_by)}."))
    if granted.bypassed:
        blocks.append(_context("Break glass: approval was skipped. The security channel has been told."))
    blocks.append(_context("Only you can use this link: do not forward it. Every step is recorded in the audit log."))
    text = f"Your link to impersonate {_fallback_subject(request)} is ready (valid for {window})."
    return _message(text, blocks)


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
    asked = _first_asked(pending.ask) if pending.ask is not None else ()
    if asked:
        who = f"It was sent to {_mentions(asked)}; it needs {_approvals_needed(pending.approvals_required)}."
    else:
        who = "No one in the policy can approve it, so it will expire: ask an admin to check the policy's approvers."
    if pending.ask is not None:
        who += _nudged_text(pending.ask, request.agent_tz)
    blocks = [
        _header("Approval needed"),
        _section(
            f"Your request to impersonate {_user_text(request)} needs approval because "
            f"{_gate_reason(request)}. {who} "
            "You will get the one-time link here once it is approved."
        ),
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
        _reason_section(request),
    ]
    if request.pending_expires_at is not None:
        blocks.append(
            _context(f"Without a decision by {escape(format_local_time(request.pending_expires_at, request.agent_tz))}, it expires.")
        )
    blocks.append(
        {
            "type": "actions",
            "block_id": BlockId.PENDING_ACTIONS.value,
            "elements": [
                _button(
                    ActionId.CANCEL_REQUEST,
                    "Cancel request",
                    request.id,
                    confirm=("Cancel this request?", "The approvers' messages will say you cancelled it.", "Cancel request", "Keep it"),
                )
            ],
        }
    )
    text = f"Your request to impersonate {_fallback_subject(request)} needs approval."
    return _message(text, blocks)


def _first_asked(ask: ApprovalAsk) -> tuple[str, ...]:
    """The approvers asked first (before any escalation)."""
    return tuple(a for a in ask.approvers if a not in ask.escalated_to)


def _nudged_text(ask: ApprovalAsk, tz_name: str | None) -> str:
    """" Reminded at HH:MM. Escalated to <@…> at HH:MM.": what the scheduler did about an
    ask nobody answered, for the agent's DM (empty before it did anything)."""
    text = ""
    if ask.reminded_at is not None:
        text += f" Approvers who had not answered were reminded at {escape(format_local_time(ask.reminded_at, tz_name))}."
    if ask.escalated_at is not None:
        at = escape(format_local_time(ask.escalated_at, tz_name))
        if ask.escalated_to:
            text += f" Still undecided at {at}, it was also sent to {_mentions(ask.escalated_to)}."
        else:
            text += f" Still undecided at {at}, it was escalated, but no one in the escalation group can approve it."
    return text


# ---------------------------------------------------------------------------- approvers


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
    return _section(f"*Their recent sessions on this account*\n{body}")


def _approver_fields(request: RequestView, *, approvals: int, extension: ExtensionView | None, decide_by: str | None) -> Block:
    pairs = [
        ("Agent", mention(request.agent_slack_id)),
        ("Account", _account_text(request)),
        ("Account flags", _flags_text(request.account_flags)),
        ("Customer user", _user_text(request)),
        ("Access", escape(scope_label(request.scope))),
        ("Session length", duration_label(request.duration_minutes)),
    ]
    if extension is not None:
        pairs.append(("More time", duration_label(extension.minutes)))
    if request.ticket:
        pairs.append(("Ticket", escape_truncated(request.ticket, _TICKET_BUDGET)))
    pairs.append(("Approvals needed", _approvals_needed(approvals)))
    if decide_by is not None:
        pairs.append(("Decide by", escape(decide_by)))
    return _fields(pairs)


def _ask_summary(request: RequestView, extension: ExtensionView | None, *, tz_name: str | None, past: bool = False) -> str:
    agent, verb = mention(request.agent_slack_id), "asked" if past else "asks"
    if extension is not None:
        ends = format_local_time(extension.session.expires_at, tz_name)
        return (
            f"{agent} {verb} for {duration_label(extension.minutes)} more on their live session as "
            f"{_user_text(request)} in {_account_text(request)}, which ends at {escape(ends)}."
        )
    return f"{agent} {verb} to impersonate {_user_text(request)} in {_account_text(request)}.{_follow_up(request)}"


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
        return [_reason_section(request)]
    return [
        _section(f"*Reason for more time*\n{escape_truncated(extension.reason, _REASON_BUDGET)}"),
        _section(f"*Original reason*\n{escape_truncated(request.reason, _REASON_BUDGET)}"),
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
        _header("Approval needed: more time" if extension is not None else "Approval needed: impersonation"),
        _section(_ask_summary(request, extension, tz_name=tz_name)),
        _approver_fields(request, approvals=approvals, extension=extension, decide_by=decide_by),
        *_ask_reasons(request, extension),
        _recent_section(ask.recent, tz_name),
        {
            "type": "actions",
            "block_id": BlockId.APPROVAL_ACTIONS.value,
            "elements": [
                _button(approve, "Approve", subject_id, style="primary", confirm=("Approve?", effect, "Approve", "Not yet")),
                _button(deny, "Deny", subject_id, style="danger"),
            ],
        },
        _context("You cannot decide your own request. Every decision is recorded in the audit log."),
    ]
    what = "more time on a session as" if extension is not None else "to impersonate"
    text = f"Approval needed: {mention(request.agent_slack_id)} asks {what} {_fallback_subject(request)}."
    return _message(text, blocks)


def approval_reminder_message(ask: ApprovalAsk, *, tz_name: str | None) -> Message:
    """A reminder to an approver who has not answered an ask still pending past its reminder
    point: posted as a new DM, so that Slack notifies them (an edit would not). It is the ask
    again — details and Approve / Deny buttons carrying the same id, re-checked on click like
    the first DM's — under a headline saying it still waits and until when."""
    text, shown = approval_request_message(ask, tz_name=tz_name)
    expires = ask.extension.pending_expires_at if ask.extension is not None else ask.request.pending_expires_at
    until = f" Without a decision by {escape(format_local_time(expires, tz_name))}, it expires." if expires is not None else ""
    what = "more time" if ask.extension is not None else "impersonation"
    blocks = [_header(f"Reminder: approval needed: {what}"), _section(f"This still waits for your decision.{until}"), *shown[1:]]
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
        return f"*Denied*{by} at {at}: {escape_truncated(decided.reason or '', _REASON_BUDGET)}"
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
        _header(f"{headline}: {'more time' if extension is not None else 'impersonation'}"),
        _section(_outcome_line(decided, tz_name=tz_name)),
        _section(_ask_summary(request, extension, tz_name=tz_name, past=True)),
        _approver_fields(
            request,
            approvals=extension.approvals_required if extension is not None else request.approvals_required,
            extension=extension,
            decide_by=None,
        ),
        *_ask_reasons(request, extension),
    ]
    text = f"{headline}: {mention(request.agent_slack_id)}'s request about {_fallback_subject(request)}."
    return _message(text, blocks)


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
        reason = escape_truncated(decided.reason or "", _REASON_BUDGET)
        headline, line = "Request denied", f"Denied by {by} at {at}.\n*Their reason*\n{reason}"
    elif decided.outcome == "cancelled":
        headline, line = "Request cancelled", f"You cancelled this request at {at}."
    else:
        headline = "Request expired"
        line = f"No approver decided in time: the request expired at {at}. Run /impersonate again if you still need access."
    blocks = [
        _header(headline),
        _section(line),
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
        _reason_section(request),
    ]
    text = f"{headline}: impersonating {_fallback_subject(request)}."
    return _message(text, blocks)


def break_glass_alert(request: RequestView) -> Message:
    """Posted at once to the security channel when a break-glass role skipped approval,
    rendered by the outbox from the stored request (a break-glass
    request's `gated_by` holds the gates it skipped). Everything a reviewer needs, and never
    the link, which the request does not hold."""
    pairs = [
        ("Agent", mention(request.agent_slack_id)),
        ("Account", _account_text(request)),
        ("Account flags", _flags_text(request.account_flags)),
        ("Approval skipped", _flags_text(request.gated_by)),
        ("Customer user", _user_text(request)),
        ("Access", escape(scope_label(request.scope))),
        ("Session length", duration_label(request.duration_minutes)),
        ("Ticket", escape_truncated(request.ticket, _TICKET_BUDGET) if request.ticket else "none"),
    ]
    blocks = [
        _header("Break-glass impersonation"),
        _section(
            f"{mention(request.agent_slack_id)} skipped approval to impersonate {_user_text(request)} "
            f"in {_account_text(request)} at {escape(format_local_time(request.created_at, None))}."
        ),
        _fields(pairs),
        _reason_section(request),
        _context(f"Audited as approval.bypassed · request {escape_truncated(request.id, _ID_BUDGET)}"),
    ]
    text = f"Break glass: {mention(request.agent_slack_id)} skipped approval to impersonate {_fallback_subject(request)}."
    return _message(text, blocks)


# ---------------------------------------------------------------------------- click answers (ephemeral)


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


# ---------------------------------------------------------------------------- the live session


def session_active_message(session: SessionView, *, can_request_extension: bool = False) -> Message:
    """The DM edited in place once the link is redeemed: until when, an End button, and
    either **Request more time** (roles with `can_request_extension`) or **Start a new
    request**. Every button's value is the session id only; each click is
    re-checked by the domain."""
    return _session_active(session, action=ActionId.REQUEST_EXTENSION if can_request_extension else ActionId.START_NEW_REQUEST)


def extension_pending_message(ask: ApprovalAsk) -> Message:
    """The live session's DM while more time waits for approval: who was asked; no second ask."""
    extension = ask.extension
    if extension is None:
        raise ValueError("extension_pending_message needs the ask for an extension")
    first = _first_asked(ask)
    who = f"Waiting for {_mentions(first)}." if first else "No one in the policy can approve it."
    return _session_active(
        extension.session,
        action=None,
        notice=f"You asked for {duration_label(extension.minutes)} more. {who}{_nudged_text(ask, extension.session.request.agent_tz)}",
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
        notice = f"Your request for {more} more was denied by {by} at {at}: {escape_truncated(decided.reason or '', _REASON_BUDGET)}"
    else:
        notice = f"Your request for {more} more expired without a decision."
    action = ActionId.REQUEST_EXTENSION if can_request_extension else ActionId.START_NEW_REQUEST
    return _session_active(session, action=action, notice=notice)


def _session_active(session: SessionView, *, action: ActionId | None, notice: str | None = None) -> Message:
    request = session.request
    until = format_local_time(session.expires_at, request.agent_tz)
    elements = [
        _button(
            ActionId.END_SESSION,
            "End session",
            session.id,
            style="danger",
            confirm=("End this session?", "The product closes the impersonation at once.", "End session", "Keep it"),
        )
    ]
    if action is ActionId.REQUEST_EXTENSION:
        elements.append(_button(ActionId.REQUEST_EXTENSION, "Request more time", session.id))
    elif action is ActionId.START_NEW_REQUEST:
        elements.append(_button(ActionId.START_NEW_REQUEST, "Start a new request", session.id))
    blocks = [_header(f"Session active until {until}")]
    if notice is not None:
        blocks.append(_section(notice))
    blocks += [
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
        {"type": "actions", "block_id": BlockId.SESSION_ACTIONS.value, "elements": elements},
    ]
    text = f"Your session as {_fallback_subject(request)} is active until {escape(until)}."
    return _message(text, blocks)


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
        _header(f"Session {verb} at {when}"),
        _section(f"Your session as {_user_text(request)} {verb}{who} at {escape(when)}."),
        _request_fields(request, session_length=duration_label(request.duration_minutes)),
    ]
    if kind != RequestState.REVOKED.value:
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.SESSION_ACTIONS.value,
                "elements": [_button(ActionId.START_NEW_REQUEST, "Start a new request", session.id)],
            }
        )
    text = f"Your session as {_fallback_subject(request)} {verb} at {escape(when)}."
    return _message(text, blocks)


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
            _section(f"You already have a live session with {who}{until}. Nothing new was issued."),
            {
                "type": "actions",
                "block_id": BlockId.SESSION_ACTIONS.value,
                "elements": [_button(ActionId.END_SESSION, "End session", open_access.session_id, style="danger")],
            },
        ]
    elif request.state == RequestState.PENDING.value:
        blocks = [
            _section(f"You already asked for access to {who}; it is waiting for approval{until}. Nothing new was requested."),
            {
                "type": "actions",
                "block_id": BlockId.PENDING_ACTIONS.value,
                "elements": [_button(ActionId.CANCEL_REQUEST, "Cancel request", request.id)],
            },
        ]
    else:
        blocks = [_section(f"You already have a link to {who} in your DM from this app, valid{until}. Nothing new was issued.")]
    blocks.append(_context("One open access per customer user: end or cancel it to ask again."))
    return {
        "type": "modal",
        "callback_id": CallbackId.IMPERSONATE_ALREADY_OPEN.value,
        "title": _plain("Already open", limits.MODAL_TITLE_MAX),
        "close": _plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": blocks,
    }
