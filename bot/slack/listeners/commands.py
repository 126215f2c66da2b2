"""`/impersonate …`, routed on what its text asks for (bot.slack.command_text):

- `/impersonate [account]`: acknowledge, then open the request modal with the trigger_id.
  Slack allows 3 s for both the ack and the trigger_id.
- `/impersonate revoke <session>`: security revokes a live session.
- `/impersonate flag <account>`: the account-flag modal, for roles with `can_flag_accounts`
  (anyone else is told so privately, and the attempt is audited).
- `/impersonate help`, and a sub-command that does not exist: the usage for the caller's
  powers, answered in the acknowledgement (ephemeral: Slack shows a slash command's HTTP
  answer to the invoker alone)."""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import account_flags, requests, revocation
from bot.domain.context import DomainContext
from bot.domain.ports import Deliverer
from bot.slack import limits
from bot.slack.blocks.flags import flag_modal
from bot.slack.blocks.request import request_modal
from bot.slack.blocks.usage import usage_message
from bot.slack.blocks.watch import revocation_answer_text
from bot.slack.command_text import Flag, Help, Request, Revoke, parse_impersonate
from bot.slack.ids import SlashCommand
from bot.slack.mrkdwn import escape


def register(app: App, ctx: DomainContext, deliverer: Deliverer) -> None:
    @app.command(SlashCommand.IMPERSONATE.value)
    def impersonate(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        asked = parse_impersonate(command.get("text") or "")
        if isinstance(asked, Revoke):
            revoke_by_command(ack, command, asked.session_id)
        elif isinstance(asked, Help):
            answer_usage(ack, command, asked)
        elif isinstance(asked, Flag):
            open_flag_modal(ack, command, client, asked)
        elif isinstance(asked, Request):
            open_request_modal(ack, command, client, asked)

    def open_flag_modal(ack: Ack, command: dict[str, Any], client: WebClient, asked: Flag) -> None:
        form = account_flags.flag_form(ctx, command["user_id"], asked.account)
        if isinstance(form, account_flags.FlagRefused):
            ack(response_type="ephemeral", text=escape(form.message))
            return
        ack()
        client.views_open(trigger_id=command["trigger_id"], view=flag_modal(form))

    def open_request_modal(ack: Ack, command: dict[str, Any], client: WebClient, asked: Request) -> None:
        ack()
        options = requests.modal_options(ctx, command["user_id"])
        initial = requests.named_account(ctx, asked.text, max_length=limits.OPTION_VALUE_MAX) if options.role is not None else None
        client.views_open(trigger_id=command["trigger_id"], view=request_modal(options, initial_account=initial))

    def answer_usage(ack: Ack, command: dict[str, Any], asked: Help) -> None:
        text, shown = usage_message(requests.agent_powers(ctx, command["user_id"]), unknown=asked.unknown)
        ack(response_type="ephemeral", text=text, blocks=shown)

    def revoke_by_command(ack: Ack, command: dict[str, Any], session_id: str) -> None:
        """`/impersonate revoke <session>`: answered privately to whoever ran
        it; the power is checked by the domain, and a refusal is audited there."""
        user = command["user_id"]
        result = revocation.revoke_session(ctx, session_id, actor_slack_id=user, source="command")
        ack(text=revocation_answer_text(result, tz_name=ctx.people.person(user).tz))
        if isinstance(result, revocation.Revoked):
            # after the answer, from the background thread: with process_before_response the
            # answer leaves only when this listener returns (Slack allows 3 s)
            deliverer.deliver(result.targets)
