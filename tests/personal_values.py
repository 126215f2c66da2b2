"""Reading an audit event as it is shown: its personal values, held apart since they must be
erasable (bot/domain/personal.py), resolved through the same function the exports use."""
from __future__ import annotations

import json
from typing import Any

from bot.domain import personal


def revealed(session_factory, event) -> tuple[str | None, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """(customer_user, details) of a stored event with each reference resolved."""
    details = json.loads(event.details)
    with session_factory() as db:
        values = personal.resolve(db, personal.refs_in(event.customer_user, details))
    shown = {key: personal.shown(value, values) if key in personal.PERSONAL_DETAILS else value for key, value in details.items()}
    return personal.shown(event.customer_user, values), shown
