"""The audit log's readers end to end over HTTP: /impersonation-log answered in the acknowledgement, then
Export JSON delivered to the viewer's DM through the fake Slack API's real upload flow
(conversations.open → files.getUploadURLExternal → upload URL → files.completeUploadExternal)."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from bot.domain.audit import verify_chain
from bot.slack.ids import ActionId, BlockId
from tests.fakes.log_history import build_history
from tests.fakes.response_urls import FakeResponseUrls
from tests.fakes.slack_api import block_kit_errors
from tests.slack.conftest import audit_events
from tests.slack.signed import slash_command


def export_click(value: str, *, user_id: str, response_url: str) -> str:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "security", "name": "security", "team_id": "T1"},
        "team": {"id": "T1", "domain": "test"},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "trigger_id": "1337.42.trigger-secret",
        "container": {"type": "message", "message_ts": "1700000000.000009", "channel_id": "C0GENERAL", "is_ephemeral": True},
        "channel": {"id": "C0GENERAL", "name": "general"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": ActionId.LOG_EXPORT_JSON.value, "block_id": BlockId.LOG_ACTIONS.value, "value": value, "action_ts": "1700000001.1"}],
    }
    return urlencode({"payload": json.dumps(payload)})


def test_look_up_then_export_to_the_dm_over_http(running_bot, session_factory, tmp_path):
    bot, fake = running_bot, running_bot.fake
    history = build_history(bot.container.ctx, tmp_path)

    reply = bot.send(slash_command("account:acme since:2026-01-01", user_id="USECURITY1", command="/impersonation-log"))
    assert reply.status == 200
    answer = reply.json()
    assert answer["response_type"] == "ephemeral" and block_kit_errors(blocks=answer["blocks"]) == []
    (actions,) = [b for b in answer["blocks"] if b["type"] == "actions"]
    value = next(e["value"] for e in actions["elements"] if e["action_id"] == ActionId.LOG_EXPORT_JSON.value)

    with FakeResponseUrls() as hooks:
        clicked = bot.send(export_click(value, user_id="USECURITY1", response_url=hooks.issue()))
        assert clicked.status == 200 and clicked.body == ""
        (told,) = hooks.wait_for(1)
    assert hooks.violations == []
    assert told.body["text"].startswith("Sent `impersonation-log_acme_20260101-")

    (stored,) = fake.files.values()
    assert stored.completed and stored.channel_id == fake.dm_channel("USECURITY1")
    document = json.loads(stored.content)
    assert [s["session_id"] for s in document["sessions"]] == [history.break_glass_live, history.revoked, history.approved_expired, history.ended]
    fake.assert_no_violations()
    assert [e.type for e in audit_events(session_factory) if e.type.startswith("log.")] == ["log.viewed", "log.exported"]
    with session_factory() as db:
        assert verify_chain(db)[1] is None
