"""The request modal's submission (issue 2 points 8-10): decided by the domain, refused
inline on the right field, or answered with a DM (the link, or "approval needed")."""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import requests
from bot.domain.context import DomainContext
from bot.domain.requests import AgentIdentity, Blocked, Granted
from bot.slack import blocks
from bot.slack.ids import CallbackId


def register(app: App, ctx: DomainContext) -> None:
    @app.view(CallbackId.IMPERSONATE_REQUEST.value)
    def submit_request(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        user = body["user"]
        agent = AgentIdentity(slack_id=user["id"], team_id=user.get("team_id") or (body.get("team") or {}).get("id"))
        form = blocks.request_form_from_state(body["view"]["state"]["values"])
        result = requests.submit_request(ctx, agent, form)
        if isinstance(result, Blocked):
            ack(response_action="errors", errors=blocks.field_errors(result))
            return
        ack()
        text, message = blocks.grant_message(result) if isinstance(result, Granted) else blocks.pending_message(result)
        # Posting to the user id opens the app's DM with them; unfurling is off so that Slack
        # never fetches the one-time link (DESIGN.md hand-off 1).
        posted = client.chat_postMessage(
            channel=agent.slack_id, text=text, blocks=message, unfurl_links=False, unfurl_media=False
        )
        requests.record_agent_message(ctx, result.request.id, channel=posted["channel"], ts=posted["ts"])
