"""Slack's Block Kit rules as a checker for tests: sizes (bot.slack.limits, from Slack's
Block Kit reference), ids from our enums, and structure (a view with input blocks needs
`submit`). `problems()` returns every rule a view or a message breaks, so a failing test
says which."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.slack import limits
from bot.slack.ids import ActionId, BlockId, CallbackId

BLOCK_IDS = {b.value for b in BlockId}
ACTION_IDS = {a.value for a in ActionId}
CALLBACK_IDS = {c.value for c in CallbackId}


def walk(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def mrkdwn_texts(node: Any) -> list[str]:
    return [obj["text"] for _, obj in walk(node) if obj.get("type") == "mrkdwn"]


def all_texts(node: Any) -> list[str]:
    return [obj["text"] for _, obj in walk(node) if obj.get("type") in ("mrkdwn", "plain_text")]


def _too_long(problems: list[str], path: str, text: Any, limit: int, what: str) -> None:
    if isinstance(text, dict):
        text = text.get("text", "")
    if text is not None and len(text) > limit:
        problems.append(f"{path}: {what} is {len(text)} > {limit}")


def problems(node: Any, *, surface: str, own_ids: bool = True) -> list[str]:
    """surface: "modal" (a view) or "message" (a list of blocks)."""
    found: list[str] = []
    if surface == "modal":
        view = node
        _too_long(found, "$.title", view.get("title"), limits.MODAL_TITLE_MAX, "title")
        _too_long(found, "$.submit", view.get("submit"), limits.MODAL_SUBMIT_MAX, "submit")
        _too_long(found, "$.close", view.get("close"), limits.MODAL_CLOSE_MAX, "close")
        _too_long(found, "$.private_metadata", view.get("private_metadata"), limits.PRIVATE_METADATA_MAX, "private_metadata")
        blocks = view.get("blocks", [])
        if len(blocks) > limits.MODAL_BLOCKS_MAX:
            found.append(f"{len(blocks)} blocks > {limits.MODAL_BLOCKS_MAX}")
        if any(b.get("type") == "input" for b in blocks) and "submit" not in view:
            found.append("a view with input blocks has no submit")
        if own_ids and view.get("callback_id") not in CALLBACK_IDS:
            found.append(f"callback_id {view.get('callback_id')!r} is not a CallbackId")
    else:
        blocks = node
        if len(blocks) > limits.MESSAGE_BLOCKS_MAX:
            found.append(f"{len(blocks)} blocks > {limits.MESSAGE_BLOCKS_MAX}")
    for path, obj in walk(blocks, "$.blocks"):
        kind = obj.get("type")
        if "block_id" in obj:
            _too_long(found, path, obj["block_id"], limits.BLOCK_ID_MAX, "block_id")
            if own_ids and obj["block_id"] not in BLOCK_IDS:
                found.append(f"{path}: block_id {obj['block_id']!r} is not a BlockId")
        if "action_id" in obj:
            _too_long(found, path, obj["action_id"], limits.ACTION_ID_MAX, "action_id")
            if own_ids and obj["action_id"] not in ACTION_IDS:
                found.append(f"{path}: action_id {obj['action_id']!r} is not an ActionId")
        if kind == "section":
            _too_long(found, path, obj.get("text"), limits.SECTION_TEXT_MAX, "section text")
            fields = obj.get("fields", [])
            if len(fields) > limits.SECTION_FIELDS_MAX:
                found.append(f"{path}: {len(fields)} fields > {limits.SECTION_FIELDS_MAX}")
            for i, field in enumerate(fields):
                _too_long(found, f"{path}.fields[{i}]", field, limits.SECTION_FIELD_TEXT_MAX, "field")
        elif kind == "header":
            _too_long(found, path, obj.get("text"), limits.HEADER_TEXT_MAX, "header text")
        elif kind == "context":
            if len(obj.get("elements", [])) > limits.CONTEXT_ELEMENTS_MAX:
                found.append(f"{path}: too many context elements")
        elif kind == "input":
            _too_long(found, path, obj.get("label"), limits.INPUT_LABEL_MAX, "label")
            _too_long(found, path, obj.get("hint"), limits.INPUT_HINT_MAX, "hint")
        elif kind == "button":
            _too_long(found, path, obj.get("text"), limits.BUTTON_TEXT_MAX, "button text")
            _too_long(found, path, obj.get("value"), limits.BUTTON_VALUE_MAX, "button value")
        elif kind == "plain_text_input":
            for key in ("max_length", "min_length"):
                if key in obj and not 0 <= obj[key] <= limits.PLAIN_TEXT_INPUT_MAX:
                    found.append(f"{path}: {key} {obj[key]} outside 0..{limits.PLAIN_TEXT_INPUT_MAX}")
            if obj.get("min_length", 0) > obj.get("max_length", limits.PLAIN_TEXT_INPUT_MAX):
                found.append(f"{path}: min_length > max_length")
        if "placeholder" in obj:
            _too_long(found, path, obj["placeholder"], limits.PLACEHOLDER_MAX, "placeholder")
        if "options" in obj:
            options = obj["options"]
            if len(options) > limits.OPTIONS_MAX:
                found.append(f"{path}: {len(options)} options > {limits.OPTIONS_MAX}")
            for i, option in enumerate(options):
                _too_long(found, f"{path}.options[{i}]", option["text"], limits.OPTION_TEXT_MAX, "option text")
                _too_long(found, f"{path}.options[{i}]", option["value"], limits.OPTION_VALUE_MAX, "option value")
        if "confirm" in obj and isinstance(obj["confirm"], dict) and "title" in obj["confirm"]:
            confirm = obj["confirm"]
            _too_long(found, path, confirm.get("title"), limits.CONFIRM_TITLE_MAX, "confirm title")
            _too_long(found, path, confirm.get("text"), limits.CONFIRM_TEXT_MAX, "confirm text")
            _too_long(found, path, confirm.get("confirm"), limits.CONFIRM_BUTTON_MAX, "confirm button")
            _too_long(found, path, confirm.get("deny"), limits.CONFIRM_BUTTON_MAX, "deny button")
    return found
