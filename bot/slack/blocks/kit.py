"""Block Kit primitives every surface builds with: text objects, sections, headers, context,
options, buttons and messages, each cut to the Slack limit of its field (bot.slack.limits;
https://api.slack.com/reference/block-kit/blocks, …/composition-objects), because Slack
refuses a whole message or view when one field is too long.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bot.domain.views import SessionScope
from bot.slack import limits
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import truncate_escaped, truncate_plain

Block = dict[str, Any]
Message = tuple[str, list[Block]]
SCOPE_LABELS: dict[str, str] = {
    SessionScope.READ_ONLY.value: "Read-only",
    SessionScope.READ_WRITE.value: "Read and write",
}


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate_plain(text, limit), "emoji": True}


def mrkdwn_text(text: str) -> dict[str, Any]:
    """A mrkdwn object for text that is already escaped (or is our own markup)."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section(text: str, *, block_id: BlockId | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn_text(truncate_escaped(text, limits.SECTION_TEXT_MAX))}
    if block_id is not None:
        block["block_id"] = block_id.value
    return block


def fields(pairs: Iterable[tuple[str, str]]) -> Block:
    """A section of `*label*\\nvalue` fields; labels are ours, values already escaped."""
    objects = [
        mrkdwn_text(truncate_escaped(f"*{label}*\n{value}", limits.SECTION_FIELD_TEXT_MAX))
        for label, value in list(pairs)[: limits.SECTION_FIELDS_MAX]
    ]
    return {"type": "section", "fields": objects}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, limits.HEADER_TEXT_MAX)}


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [mrkdwn_text(truncate_escaped(t, limits.SECTION_TEXT_MAX)) for t in texts[: limits.CONTEXT_ELEMENTS_MAX]],
    }


def option(value: str, label: str) -> dict[str, Any] | None:
    """An option object, or None when the value would not fit (an id is never truncated:
    a cut id would select something else)."""
    if not value or len(value) > limits.OPTION_VALUE_MAX:
        return None
    return {"text": plain(label, limits.OPTION_TEXT_MAX), "value": value}


def options(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for value, label in pairs:
        choice = option(value, label)
        if choice is not None:
            found.append(choice)
        if len(found) == limits.OPTIONS_MAX:
            break
    return found


def message(text: str, blocks: list[Block]) -> Message:
    return truncate_escaped(text, limits.MESSAGE_TEXT_MAX), blocks[: limits.MESSAGE_BLOCKS_MAX]


def button(
    action: ActionId,
    label: str,
    value: str,
    *,
    style: str | None = None,
    confirm: tuple[str, str, str, str] | None = None,
) -> Block:
    """A button whose value is an id of ours; `confirm` is (title, text, confirm, deny)."""
    element: Block = {"type": "button", "action_id": action.value, "text": plain(label, limits.BUTTON_TEXT_MAX), "value": value}
    if style is not None:
        element["style"] = style
    if confirm is not None:
        title, text, yes, no = confirm
        element["confirm"] = {
            "title": plain(title, limits.CONFIRM_TITLE_MAX),
            "text": plain(text, limits.CONFIRM_TEXT_MAX),
            "confirm": plain(yes, limits.CONFIRM_BUTTON_MAX),
            "deny": plain(no, limits.CONFIRM_BUTTON_MAX),
        }
    return element


def input_block(block: BlockId, label: str, element: Block, *, hint: str | None = None, optional: bool | None = None) -> Block:
    """An input block of a modal: `element` under `label`, with an optional `hint` below it.
    `optional`: whether Slack lets the form be submitted with it empty (left out: required)."""
    built: Block = {"type": "input", "block_id": block.value, "label": plain(label, limits.INPUT_LABEL_MAX), "element": element}
    if hint is not None:
        built["hint"] = plain(hint, limits.INPUT_HINT_MAX)
    if optional is not None:
        built["optional"] = optional
    return built


def text_input(
    action: ActionId,
    *,
    max_length: int,
    min_length: int | None = None,
    multiline: bool = False,
    placeholder: str | None = None,
    initial: str | None = None,
) -> Block:
    """A plain_text_input element; `max_length` is the domain's bound, lowered to what Slack
    accepts (limits.PLAIN_TEXT_INPUT_MAX) so that the view is never refused for it."""
    element: Block = {"type": "plain_text_input", "action_id": action.value, "max_length": min(max_length, limits.PLAIN_TEXT_INPUT_MAX)}
    if multiline:
        element["multiline"] = True
    if min_length is not None:
        element["min_length"] = min_length
    if placeholder is not None:
        element["placeholder"] = plain(placeholder, limits.PLACEHOLDER_MAX)
    if initial is not None:
        element["initial_value"] = initial
    return element


def external_select(action: ActionId, placeholder: str) -> Block:
    """A typeahead whose options our options listener answers; `min_query_length: 0` lists
    the first ones as soon as the menu opens, before any typing."""
    return {"type": "external_select", "action_id": action.value, "placeholder": plain(placeholder, limits.PLACEHOLDER_MAX), "min_query_length": 0}


def duration_label(minutes: int) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def scope_label(scope: str) -> str:
    return SCOPE_LABELS.get(scope, scope)


def slack_date(moment: datetime) -> str:
    """`<!date^…>`: Slack renders the moment in each reader's own time zone; the fallback
    (older clients, notifications) is UTC. Built from an integer and our own text only."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def notice_view(callback: CallbackId, title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (`text`: our own mrkdwn, escaped): nothing to submit."""
    return {
        "type": "modal",
        "callback_id": callback.value,
        "title": plain(title, limits.MODAL_TITLE_MAX),
        "close": plain("Close", limits.MODAL_CLOSE_MAX),
        "blocks": [section(text)],
    }
