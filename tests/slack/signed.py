"""Requests to the Bolt app signed exactly as Slack signs them, with the signing the local
workspace uses too (bot/local/signing.py)."""
from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from slack_bolt.request import BoltRequest

from bot.local import payloads, signing
from bot.local.signing import FORM

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"

#: Slack gives every interaction its own trigger_id (and every click its own action_ts), so two
#: clicks never share a body or a signature; a body sent twice is a replay.
_interactions = itertools.count(1)


def _trigger_id() -> str:
    return f"1337.{next(_interactions)}.trigger-secret"


def signature(body: str, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    return signing.signature(body, timestamp, secret)


def signed(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None, sign_body: str | None = None) -> BoltRequest:
    """A BoltRequest carrying `body`; `sign_body` signs something else (to test tampering)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return BoltRequest(
        body=body,
        headers={
            "content-type": [FORM],
            "x-slack-request-timestamp": [ts],
            "x-slack-signature": [signature(body if sign_body is None else sign_body, ts, secret)],
        },
    )


def slash_command(
    text: str = "", *, user_id: str = "UAGENT1", command: str = "/impersonate", trigger_id: str | None = None
) -> str:
    return payloads.slash_command(
        text=text,
        user_id=user_id,
        command=command,
        trigger_id=trigger_id or _trigger_id(),
        team_id="T1",
        team_domain="test",
        response_url="https://hooks.slack.invalid/commands/T1/1/secret-response-url",
    )


def interaction(payload: dict[str, Any]) -> str:
    """Interactivity requests are form-encoded with one `payload` field holding JSON."""
    return urlencode({"payload": json.dumps(payload)})


def view_submission(values: dict[str, Any], *, user_id: str = "UAGENT1", callback_id: str, private_metadata: str = "", blocks: list[dict[str, Any]] | None = None) -> str:
    """A view_submission; `blocks` is the submitted view's blocks (Slack echoes them back)."""
    return interaction(
        {
            "type": "view_submission",
            "team": {"id": "T1", "domain": "test"},
            "user": {"id": user_id, "username": "agent", "name": "agent", "team_id": "T1"},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": _trigger_id(),
            "view": {
                "id": "V1",
                "team_id": "T1",
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                **({"blocks": blocks} if blocks is not None else {}),
                "state": {"values": values},
                "hash": "1.abc",
            },
        }
    )


def block_suggestion(action_id: str, value: str, *, values: dict[str, Any] | None = None, user_id: str = "UAGENT1", block_id: str) -> str:
    return interaction(
        {
            "type": "block_suggestion",
            "user": {"id": user_id, "username": "agent", "name": "agent", "team_id": "T1"},
            "team": {"id": "T1", "domain": "test"},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "action_id": action_id,
            "block_id": block_id,
            "value": value,
            "container": {"type": "view", "view_id": "V1"},
            "view": {"id": "V1", "type": "modal", "callback_id": "impersonate_request", "state": {"values": values or {}}},
        }
    )


def _block_actions(action: dict[str, Any], *, user_id: str, where: dict[str, Any], trigger_id: str | None = None) -> str:
    """A block_actions payload: one action, clicked by `user_id` `where` (a message or a view)."""
    return interaction(
        {
            "type": "block_actions",
            "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": "T1"},
            "team": {"id": "T1", "domain": "test"},
            "api_app_id": "A1",
            "token": "legacy-verification-token",
            "trigger_id": trigger_id or _trigger_id(),
            **where,
            "actions": [action],
        }
    )


def block_action(
    action_id: str, value: str, *, block_id: str, user_id: str, channel: str = "DAGENT1", message_ts: str = "1700000000.000001", trigger_id: str | None = None
) -> str:
    action = {"type": "button", "action_id": action_id, "block_id": block_id, "value": value, "action_ts": f"1700000001.{next(_interactions)}"}
    where = {
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "directmessage"},
        "message": {"type": "message", "ts": message_ts, "text": "", "blocks": []},
        "response_url": "https://hooks.slack.invalid/actions/T1/1/secret-response-url",
    }
    return _block_actions(action, user_id=user_id, where=where, trigger_id=trigger_id)


def global_shortcut(callback_id: str, *, user_id: str = "UAGENT1") -> str:
    """A global shortcut's payload (Slack "Shortcuts": type `shortcut`)."""
    return interaction(
        {
            "type": "shortcut",
            "token": "legacy-verification-token",
            "action_ts": "1700000000.000100",
            "team": {"id": "T1", "domain": "test"},
            "user": {"id": user_id, "username": "agent", "team_id": "T1"},
            "callback_id": callback_id,
            "trigger_id": _trigger_id(),
        }
    )


def message_shortcut(callback_id: str, message: dict[str, Any], *, user_id: str = "UAGENT1", channel: str = "CHELPDESK1") -> str:
    """A message shortcut's payload, with the fields of
    ../shared/slack-reference/payload-samples/interactive-components/MessageShortcutPayload.json."""
    return interaction(
        {
            "type": "message_action",
            "callback_id": callback_id,
            "trigger_id": _trigger_id(),
            "message_ts": message.get("ts", "1700000000.000200"),
            "response_url": "https://hooks.slack.invalid/actions/T1/1/secret-response-url",
            "message": {"type": "message", "ts": "1700000000.000200", **message},
            "team": {"id": "T1", "domain": "test"},
            "user": {"id": user_id, "name": "agent", "team_id": "T1"},
            "channel": {"id": channel, "name": "helpdesk"},
            "token": "legacy-verification-token",
            "action_ts": "1700000000.000300",
            "is_enterprise_install": False,
        }
    )


_events = itertools.count(1)


def app_home_opened(user_id: str, *, tab: str = "home") -> str:
    """The Events API's `app_home_opened` (JSON, not form-encoded), with its own event_id."""
    event: dict[str, Any] = {"type": "app_home_opened", "user": user_id, "channel": "DHOME1", "tab": tab, "event_ts": "1700000000.000400"}
    return json.dumps(
        {
            "token": "legacy-verification-token",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(_events):08d}",
            "event_time": 1700000000,
        }
    )


def home_action(action_id: str, value: str | None = None, *, user_id: str, selected: str | None = None, block_id: str = "b1") -> str:
    """A click in the Home tab: a block_actions from a view, which has no channel or message."""
    action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "type": "button", "action_ts": f"1700000001.{next(_interactions)}"}
    if value is not None:
        action["value"] = value
    if selected is not None:
        action.update(type="external_select", selected_option={"text": {"type": "plain_text", "text": selected}, "value": selected})
    where = {"container": {"type": "view", "view_id": "VHOME1"}, "view": {"id": "VHOME1", "type": "home", "blocks": [], "state": {"values": {}}}}
    return _block_actions(action, user_id=user_id, where=where)
