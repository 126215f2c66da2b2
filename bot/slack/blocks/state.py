"""Reading back what Slack sends us: a view's `state.values` (keyed by our block and action
ids), the ids a button value or `private_metadata` carries, and the block ids of a submitted
view (https://api.slack.com/reference/interaction-payloads/views#view_submission).

Nothing here decides anything: a missing or malformed answer becomes None (or "") so that the
domain refuses it, and an id that is not one of ours never reaches a query.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from bot.slack.ids import ActionId, BlockId


def id_or_none(value: object) -> str | None:
    """An id of ours (a UUID in its canonical form) carried in private_metadata or a button
    value, or None for anything else, so a malformed value never reaches a query."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return value if str(parsed) == value else None


def carried_id(value: object) -> str:
    """The one id a button value or a modal's `private_metadata` of ours carries (a request,
    extension or session id), or "" when it is not one: the domain then finds nothing."""
    return id_or_none(value) or ""


def view_block_ids(view: Mapping[str, Any]) -> set[str] | None:
    """The block ids of a view as Slack echoes it back in a view_submission payload, or
    None when the payload does not list the view's blocks (then nothing can be told)."""
    listed = view.get("blocks")
    if not isinstance(listed, list) or not listed:
        return None
    return {str(b.get("block_id")) for b in listed if isinstance(b, dict) and b.get("block_id")}


def state_entry(values: Mapping[str, Any], block: BlockId, action: ActionId) -> dict[str, Any]:
    entry = (values.get(block.value) or {}).get(action.value)
    return entry if isinstance(entry, dict) else {}


def selected_value(values: Mapping[str, Any], block: BlockId, action: ActionId) -> str | None:
    choice = state_entry(values, block, action).get("selected_option")
    value = choice.get("value") if isinstance(choice, dict) else None
    return value if isinstance(value, str) and value else None


def typed_value(values: Mapping[str, Any], block: BlockId, action: ActionId) -> str | None:
    value = state_entry(values, block, action).get("value")
    return value if isinstance(value, str) else None


def checked_values(values: Mapping[str, Any], block: BlockId, action: ActionId) -> set[str]:
    options = state_entry(values, block, action).get("selected_options")
    if not isinstance(options, list):
        return set()
    return {o["value"] for o in options if isinstance(o, dict) and isinstance(o.get("value"), str)}


def minutes_value(value: str | None) -> int | None:
    """A duration option's value back to minutes; anything but a short run of ASCII digits
    (our own option values) is None. (str.isdigit alone would accept "²", which int() refuses.)"""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 6:
        return None
    return int(value)
