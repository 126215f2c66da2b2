"""Typeahead for the external selects (block_suggestion payloads, answered at the manifest's
options-load URL). Each menu's options are offered only to those whose powers the menu serves:
the directory is not theirs to browse otherwise.

- the request modal's accounts and customer users: roles that can impersonate;
- the flag modal's accounts: roles with `can_flag_accounts`;
- the Home tab's account search: roles with `can_view_log`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.domain import account_flags, home, requests
from bot.domain.context import DomainContext
from bot.slack import limits
from bot.slack.blocks.request import account_options, selected_account, user_options
from bot.slack.ids import ActionId


def may_browse(ctx: DomainContext, user_id: str) -> bool:
    powers = requests.agent_powers(ctx, user_id)
    return powers is not None and powers.can_impersonate


def register(app: App, ctx: DomainContext) -> None:
    def accounts_for(allowed: Callable[[DomainContext, str], bool]) -> Callable[..., None]:
        """The account typeahead, for those `allowed` now."""

        def account_typeahead(ack: Ack, body: dict[str, Any], payload: dict[str, Any]) -> None:
            if not allowed(ctx, body["user"]["id"]):
                ack(options=[])
                return
            pairs = requests.account_choices(ctx, payload.get("value") or "", limit=limits.OPTIONS_MAX)
            ack(options=account_options(pairs))

        return account_typeahead

    app.options(ActionId.ACCOUNT_SELECT.value)(accounts_for(may_browse))
    app.options(ActionId.FLAG_ACCOUNT_SELECT.value)(accounts_for(account_flags.may_flag))
    app.options(ActionId.HOME_LOG_ACCOUNT_SELECT.value)(accounts_for(home.may_view_log))

    @app.options(ActionId.USER_SELECT.value)
    def user_typeahead(ack: Ack, body: dict[str, Any], payload: dict[str, Any]) -> None:
        if not may_browse(ctx, body["user"]["id"]):
            ack(options=[])
            return
        # The options follow the account chosen so far in the same modal.
        account = selected_account(((body.get("view") or {}).get("state") or {}).get("values") or {})
        pairs = requests.user_choices(ctx, account, payload.get("value") or "", limit=limits.OPTIONS_MAX)
        ack(options=user_options(pairs))
