"""Shortcuts (Slack "Shortcuts": global ones from the shortcuts menu, message ones from a
message's "More actions" menu), both answered within Slack's 3 s by opening the request modal
with their trigger_id:

- **Request impersonation** (global), and the Home tab's button of that name: the modal
  `/impersonate` opens.
- **Request impersonation** on a message (a support ticket posted by a helpdesk integration):
  the same modal with the ticket's key and link, read from the message, filled in. What is
  filled in is only a suggestion: the agent sees it, and the submission is decided like any.
"""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import requests
from bot.domain.context import DomainContext
from bot.slack.blocks.request import request_modal, ticket_note
from bot.slack.command_text import ticket_in_message
from bot.slack.ids import ActionId, ShortcutId


def register(app: App, ctx: DomainContext) -> None:
    def request_from_anywhere(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        options = requests.modal_options(ctx, body["user"]["id"])
        client.views_open(trigger_id=body["trigger_id"], view=request_modal(options, initial_account=None))

    app.shortcut(ShortcutId.REQUEST.value)(request_from_anywhere)
    app.action(ActionId.HOME_REQUEST.value)(request_from_anywhere)

    @app.shortcut(ShortcutId.REQUEST_FROM_MESSAGE.value)
    def request_from_message(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        hint = ticket_in_message(body.get("message") or {})
        options = requests.modal_options(ctx, body["user"]["id"])
        view = request_modal(options, initial_account=None, initial_ticket=hint.ticket, ticket_note=ticket_note(hint))
        client.views_open(trigger_id=body["trigger_id"], view=view)
