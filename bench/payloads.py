"""The Slack requests the benchmarks send: form bodies shaped as Slack sends them (slash
command, view_submission, block_actions), signed with the bot's own Slack signing
(bot/local/signing.py). The benchmarks never import the test suite (tests/bench/test_imports.py);
the slash command is bot/local/payloads.py's, as the tests send it."""
from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import urlencode

from bot.local import payloads as local_payloads
from bot.local.signing import signed_headers
from bot.slack.ids import ActionId, BlockId

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
REASON = "Customer cannot see the invoice page"

_interactions = itertools.count(1)


def trigger_id() -> str:
    """Slack gives every interaction its own trigger_id: two bodies never repeat."""
    return f"{next(_interactions)}.1700000000.benchtrigger"


def headers(body: str) -> dict[str, str]:
    return signed_headers(body, SIGNING_SECRET)


def slash_command(text: str, *, user_id: str, trigger: str | None = None) -> str:
    return local_payloads.slash_command(
        text=text,
        user_id=user_id,
        trigger_id=trigger or trigger_id(),
        team_id="TBENCH",
        team_domain="bench",
        response_url="https://hooks.slack.invalid/commands/TBENCH/1/response-url",
    )


def _interaction(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def _user(user_id: str) -> dict[str, str]:
    return {"id": user_id, "username": "someone", "name": "someone", "team_id": "TBENCH"}


def request_values(*, account: str, user: str, duration: str = "30", ticket: str = "SUP-1") -> dict[str, Any]:
    """`view.state.values` of a submitted request modal."""

    def selected(value: str) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}

    return {
        BlockId.ACCOUNT.value: {ActionId.ACCOUNT_SELECT.value: selected(account)},
        BlockId.USER.value: {ActionId.USER_SELECT.value: selected(user)},
        BlockId.REASON.value: {ActionId.REASON_INPUT.value: {"type": "plain_text_input", "value": REASON}},
        BlockId.TICKET.value: {ActionId.TICKET_INPUT.value: {"type": "plain_text_input", "value": ticket}},
        BlockId.DURATION.value: {ActionId.DURATION_SELECT.value: selected(duration)},
        BlockId.SCOPE.value: {ActionId.SCOPE_CHOICE.value: selected("read_only")},
    }


def view_submission(values: dict[str, Any], *, user_id: str, callback_id: str) -> str:
    return _interaction(
        {
            "type": "view_submission",
            "team": {"id": "TBENCH", "domain": "bench"},
            "user": _user(user_id),
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": trigger_id(),
            "view": {"id": "V1", "team_id": "TBENCH", "type": "modal", "callback_id": callback_id, "private_metadata": "", "state": {"values": values}, "hash": "1.abc"},
        }
    )


def block_action(action_id: str, value: str, *, block_id: str, user_id: str, channel: str, message_ts: str) -> str:
    return _interaction(
        {
            "type": "block_actions",
            "user": _user(user_id),
            "team": {"id": "TBENCH", "domain": "bench"},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": trigger_id(),
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "channel": {"id": channel, "name": "directmessage"},
            "message": {"type": "message", "ts": message_ts, "text": "", "blocks": []},
            "response_url": "https://hooks.slack.invalid/actions/TBENCH/1/response-url",
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id, "value": value, "action_ts": f"1700000001.{next(_interactions)}"}],
        }
    )
