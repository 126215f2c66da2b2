"""Typeahead for the request modal's external selects (block_suggestion payloads, answered
at the manifest's options-load URL). Someone without an impersonation role gets no options:
the directory is not theirs to browse."""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.domain import account_flags, requests
from bot.domain.context import DomainContext
from bot.slack import blocks, limits
from bot.slack.ids import ActionId


def register(app: App, ctx: DomainContext) -> None:
    def may_browse(user_id: str) -> bool:
        powers = requests.agent_powers(ctx, user_id)
        return powers is not None and powers.can_impersonate

    @app.options(ActionId.ACCOUNT_SELECT.value)
    def account_typeahead(ack: Ack, body: dict[str, Any], payload: dict[str, Any]) -> None:
        if not may_browse(body["user"]["id"]):
            ack(options=[])
            return
        pairs = requests.account_choices(ctx, payload.get("value") or "", limit=limits.OPTIONS_MAX)
        ack(options=blocks.account_options(pairs))

    @app.options(ActionId.USER_SELECT.value)
    def user_typeahead(ack: Ack, body: dict[str, Any], payload: dict[str, Any]) -> None:
        if not may_browse(body["user"]["id"]):
            ack(options=[])
            return
        # The options follow the account chosen so far in the same modal.
        account = blocks.selected_account(((body.get("view") or {}).get("state") or {}).get("values") or {})
        pairs = requests.user_choices(ctx, account, payload.get("value") or "", limit=limits.OPTIONS_MAX)
        ack(options=blocks.user_options(pairs))

    @app.options(ActionId.FLAG_ACCOUNT_SELECT.value)
    def flag_account_typeahead(ack: Ack, body: dict[str, Any], payload: dict[str, Any]) -> None:
        """The flag modal's accounts: offered only to roles with can_flag_accounts."""
        if not account_flags.may_flag(ctx, body["user"]["id"]):
            ack(options=[])
            return
        pairs = requests.account_choices(ctx, payload.get("value") or "", limit=limits.OPTIONS_MAX)
        ack(options=blocks.account_options(pairs))
