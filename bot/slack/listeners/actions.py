"""Buttons. **End session** ends the clicker's own live session and edits the message in
place (issue 2 point 14); the domain re-checks who clicked and whether the session is live."""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import sessions
from bot.domain.context import DomainContext
from bot.slack import blocks
from bot.slack.ids import ActionId
from bot.slack.mrkdwn import escape


def register(app: App, ctx: DomainContext) -> None:
    @app.action(ActionId.END_SESSION.value)
    def end_session(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        clicker = body["user"]["id"]
        container = body.get("container") or {}
        channel, ts = container.get("channel_id"), container.get("message_ts")
        try:
            ended = sessions.end_session(ctx, action.get("value") or "", actor_slack_id=clicker)
        except sessions.EndRefused as refused:
            if refused.session is not None:
                # Already over (expired or revoked meanwhile): the message was stale; show the truth.
                text, message = blocks.session_over_message(refused.session)
                client.chat_update(channel=channel, ts=ts, text=text, blocks=message)
            else:
                client.chat_postEphemeral(channel=channel, user=clicker, text=escape(str(refused)))
            return
        text, message = blocks.session_over_message(ended)
        client.chat_update(channel=channel, ts=ts, text=text, blocks=message)
