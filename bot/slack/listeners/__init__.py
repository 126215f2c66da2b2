"""Listener registration, in the layout of Slack's Bolt for Python starter template
(one module per kind of request, each with a `register()`), with the domain context passed
in rather than read from globals."""
from __future__ import annotations

from slack_bolt import App

from bot.domain.context import DomainContext
from bot.domain.ports import Deliverer
from bot.slack.listeners import actions, commands, home, log, options, shortcuts, views


def register_listeners(app: App, ctx: DomainContext, deliverer: Deliverer) -> None:
    """`deliverer` sends what each change owed through the outbox, after the listener has
    answered (the Deliverer port, bot.domain.ports)."""
    commands.register(app, ctx, deliverer)
    options.register(app, ctx)
    views.register(app, ctx, deliverer)
    actions.register(app, ctx, deliverer)
    log.register(app, ctx)
    shortcuts.register(app, ctx)
    home.register(app, ctx, deliverer)
