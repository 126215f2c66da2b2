"""The floor the HTTP benchmark measures the bot against does what the bot's ack does at the
least: verifies Slack's signature, opens one view, acks."""
from __future__ import annotations

import time

from bench import payloads
from bench.floor_app import build_floor_app
from bot.local.signing import signed_headers
from tests.fakes.slack_api import FakeSlack


def test_a_signed_impersonate_opens_one_view_and_is_acked() -> None:
    with FakeSlack() as slack:
        app = build_floor_app(token=slack.bot_token, signing_secret=payloads.SIGNING_SECRET, api_url=slack.url).test_client()
        body = payloads.slash_command("acme", user_id="UAGENT1", trigger=slack.issue_trigger_id())
        response = app.post("/slack/events", data=body, headers=payloads.headers(body))
        assert response.status_code == 200
        assert len(slack.calls_to("views.open")) == 1
        slack.assert_no_violations()


def test_a_request_with_a_bad_signature_is_refused_before_any_slack_call() -> None:
    with FakeSlack() as slack:
        app = build_floor_app(token=slack.bot_token, signing_secret=payloads.SIGNING_SECRET, api_url=slack.url).test_client()
        body = payloads.slash_command("acme", user_id="UAGENT1", trigger=slack.issue_trigger_id())
        response = app.post("/slack/events", data=body, headers=signed_headers(body, "another-secret", timestamp=int(time.time())))
        assert response.status_code == 401
        assert slack.calls_to("views.open") == []
