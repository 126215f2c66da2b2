"""`/impersonate [account]`: acknowledge, then open the request modal with the trigger_id
(issue 2 point 7). Slack allows 3 s for both the ack and the trigger_id."""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import requests
from bot.domain.context import DomainContext
from bot.slack import blocks, limits
from bot.slack.ids import SlashCommand


def register(app: App, ctx: DomainContext) -> None:
    @app.command(SlashCommand.IMPERSONATE.value)
    def open_request_modal(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        ack()
        options = requests.modal_options(ctx, command["user_id"])
        initial = named_account(ctx, command.get("text") or "") if options.role is not None else None
        client.views_open(trigger_id=command["trigger_id"], view=blocks.request_modal(options, initial_account=initial))


def named_account(ctx: DomainContext, text: str) -> tuple[str, str] | None:
    """The account the command text names by its id (`/impersonate acme`), if it exists."""
    wanted = text.strip()
    if not wanted or len(wanted) > limits.OPTION_VALUE_MAX:
        return None
    matches = requests.account_choices(ctx, wanted, limit=limits.OPTIONS_MAX)
    return next((pair for pair in matches if pair[0].casefold() == wanted.casefold()), None)
