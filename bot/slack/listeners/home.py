"""The App Home tab (Slack "App Home": `app_home_opened`, `views.publish`).

- Opening the tab records the person and owes their Home a publish through the outbox
  (bot/domain/home.py); the event is answered at once and the publish is delivered after,
  like every message a change owes. A Home is re-published the same way whenever something
  it shows changes.
- Its buttons: **Request impersonation** opens the request modal (as the global shortcut
  does, bot.slack.listeners.shortcuts); **Change account flags** the flag modal (refused, audited, without `can_flag_accounts`); the per-item buttons (End
  session, Ask for more time, Cancel request, Approve / Deny, Revoke) are the DMs' and the
  feed's own action ids, routed to the same listeners and re-checked the same way.
- The account search (log readers; its typeahead is in bot.slack.listeners.options):
  choosing an account sends the `/impersonation-log`
  answer for it to the person's DM with the app, where its Previous / Next and Export
  buttons work as under the command's answer.
"""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain import account_flags, home, log_query
from bot.domain.context import DomainContext
from bot.domain.ports import Deliverer
from bot.slack.blocks.flags import flag_modal
from bot.slack.blocks.home import home_notice_modal
from bot.slack.blocks.log import PAGE_SIZE, log_answer
from bot.slack.ids import ActionId
from bot.slack.mrkdwn import escape

#: Slack's App Home event, for both of its tabs (`event.tab`: "home" or "messages")
HOME_OPENED = "app_home_opened"
HOME_TAB = "home"


def register(app: App, ctx: DomainContext, deliverer: Deliverer) -> None:
    @app.event(HOME_OPENED)
    def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab") != HOME_TAB or not event.get("user"):
            return
        deliverer.deliver([home.opened(ctx, str(event["user"]))])

    @app.action(ActionId.HOME_FLAG.value)
    def open_flag_modal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        form = account_flags.flag_form(ctx, body["user"]["id"], "")
        if isinstance(form, account_flags.FlagRefused):
            view = home_notice_modal(escape(form.message))
        else:
            view = flag_modal(form)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action(ActionId.HOME_LOG_ACCOUNT_SELECT.value)
    def look_up_account(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        viewer = body["user"]["id"]
        result = log_query.look_up_account(ctx, viewer, str((action.get("selected_option") or {}).get("value") or ""), page_size=PAGE_SIZE)
        text, shown = log_answer(result)
        client.chat_postMessage(channel=viewer, text=text, blocks=shown, unfurl_links=False, unfurl_media=False)
