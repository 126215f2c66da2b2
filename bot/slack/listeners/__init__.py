"""Listener registration, in the layout of Slack's Bolt for Python starter template
(one module per kind of request, each with a `register()`), with the domain context passed
in rather than read from globals."""
from __future__ import annotations

from slack_bolt import App

from bot.domain.context import DomainContext
from bot.slack.listeners import actions, commands, log, options, views


def register_listeners(app: App, ctx: DomainContext) -> None:
    commands.register(app, ctx)
    options.register(app, ctx)
    views.register(app, ctx)
    actions.register(app, ctx)
    log.register(app, ctx)
