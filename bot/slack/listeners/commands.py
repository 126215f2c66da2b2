"""`/impersonate [account]`: acknowledge, then open the request modal with the trigger_id
(issue 2 point 7). Slack allows 3 s for both the ack and the trigger_id.

`/impersonate revoke <session>`: security revokes a live session (issue 5 point 5)."""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import requests, revocation
from bot.domain.context import DomainContext
from bot.slack import blocks, limits, watch_blocks
from bot.slack.courier import Deliverer
from bot.slack.ids import SlashCommand


def register(app: App, ctx: DomainContext, deliverer: Deliverer) -> None:
    @app.command(SlashCommand.IMPERSONATE.value)
    def open_request_modal(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        revoke = watch_blocks.revoke_command_target(command.get("text") or "")
        if revoke is not None:
            revoke_by_command(ack, command, revoke)
            return
        ack()
        options = requests.modal_options(ctx, command["user_id"])
        initial = (
            requests.named_account(ctx, command.get("text") or "", max_length=limits.OPTION_VALUE_MAX)
            if options.role is not None
            else None
        )
        client.views_open(trigger_id=command["trigger_id"], view=blocks.request_modal(options, initial_account=initial))

    def revoke_by_command(ack: Ack, command: dict[str, Any], session_id: str) -> None:
        """`/impersonate revoke <session>` (issue 5 point 5): answered privately to whoever ran
        it; the power is checked by the domain, and a refusal is audited there."""
        user = command["user_id"]
        result = revocation.revoke_session(ctx, session_id, actor_slack_id=user, source="command")
        ack(text=watch_blocks.revocation_answer_text(result, tz_name=ctx.people.person(user).tz))
        if isinstance(result, revocation.Revoked):
            # after the answer, from the background thread: with process_before_response the
            # answer leaves only when this listener returns (Slack allows 3 s)
            deliverer.deliver(result.targets)
