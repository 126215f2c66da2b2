"""The floor the HTTP figures are measured against: the least a Bolt app on this stack can do
for a `/impersonate` — a bare slack_bolt App behind the Flask adapter, Slack's signature
verified, `process_before_response=True` as the bot runs it, and one `views.open` to the same
Slack stand-in before the ack. No database, no policy, no audit.

`bench/http_bench.py` serves it with the bot's own gunicorn configuration
(`-c python:bot.web.gunicorn_conf bench.floor_app:app`, the same environment: workers, threads,
keep-alive, switch interval, gc.freeze), so a path's figure divided by the floor's, measured in
the same run, is what the bot adds over Bolt + Flask + gunicorn + one Slack call on this
machine at that moment.
"""
from __future__ import annotations

import os

from flask import Flask, Response, jsonify, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient

#: a modal as small as Slack accepts: what the floor opens is not what is measured
VIEW = {
    "type": "modal",
    "callback_id": "floor",
    "title": {"type": "plain_text", "text": "Floor"},
    "blocks": [{"type": "section", "text": {"type": "plain_text", "text": "floor"}}],
}


def build_floor_app(*, token: str, signing_secret: str, api_url: str) -> Flask:
    bolt = App(
        client=WebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
        request_verification_enabled=True,
        process_before_response=True,
    )

    @bolt.command("/impersonate")
    def impersonate(ack, body) -> None:
        # the app's one client, as the bot's listeners use theirs (bot/slack/app.py): Bolt's
        # per-request copy would also add a team_id argument views.open does not take
        bolt.client.views_open(trigger_id=body["trigger_id"], view=VIEW)
        ack()

    web = Flask("bench-floor")
    handler = SlackRequestHandler(bolt)

    @web.post("/slack/events")
    def events() -> Response:
        return handler.handle(request)

    @web.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    return web


def _from_env() -> Flask | None:
    if "SLACK_SIGNING_SECRET" not in os.environ:
        return None
    return build_floor_app(token=os.environ["SLACK_BOT_TOKEN"], signing_secret=os.environ["SLACK_SIGNING_SECRET"], api_url=os.environ["SLACK_API_URL"])


#: gunicorn's entry point (built in each worker after the fork, as the bot's is)
app = _from_env()
