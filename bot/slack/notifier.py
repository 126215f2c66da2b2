"""Telling people in Slack what the domain decided: the SessionNotifier port
(bot.domain.ports, DESIGN.md "Layers") and the messenger that hands one domain result's
messages over for delivery.

When the agent redeems their link in the browser, the web face calls session_started();
the agent's DM about the request is edited in place to "Session active until HH:MM" with an
End session button. The redemption has already happened and must not fail
because Slack did: every failure is logged (method and Slack's error code, never the client,
tokens or message contents) and swallowed.

`SlackMessenger` does the Slack side of one listener's domain call. Every message a change
causes was written to the outbox in the change's own transaction — the
agent's DMs (the one-time link too: its token is derived again from the request's id when the
DM is rendered, docs/design-decisions.md "Watching sessions"), every approver's DM and its
edits, the security channel's break-glass alert — and the result names those targets. The
messenger hands them to a Deliverer (bot.slack.courier): in the running app, one background
thread per process (bot.web.background), so the answer to Slack never waits for Slack calls
(a modal must be answered within 3 s, and an approve click should feel instant). Only
the clicker's private answer to a click that decided nothing is sent here, at once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import approvals, sessions
from bot.domain.approvals import ClickResult, Decided
from bot.domain.context import DomainContext
from bot.domain.extensions import ExtensionAsked
from bot.domain.requests import Granted, Pending
from bot.slack.blocks.approval import click_answer_text
from bot.slack.blocks.home import home_notice_modal
from bot.slack.courier import Deliverer, InlineDeliverer, deliver_now

log = logging.getLogger(__name__)

R = TypeVar("R")


def _slack_error(error: SlackApiError) -> str:
    return str(error.response.get("error") or "unknown_error")


class SlackSessionNotifier:
    def __init__(self, ctx: DomainContext, client: WebClient) -> None:
        self._ctx = ctx
        self._client = client

    def session_started(self, session_id: str) -> None:
        try:
            self._show_session(session_id)
        except SlackApiError as error:
            log.warning("could not update the agent's message for session %s: %s", session_id, _slack_error(error))
        except Exception:  # noqa: BLE001 - a notification must never break the redemption
            log.exception("could not update the agent's message for session %s", session_id)

    def _show_session(self, session_id: str) -> None:
        """The redemption wrote outbox rows for the agent's DM and the feed;
        deliver them now rather than at the scheduler's next run. The courier renders the truth at this
        moment — a session already over (very short, or revoked at once) is shown as over —
        and posts a fresh DM, remembered for later edits, when the grant DM's reference was
        lost."""
        targets = sessions.started_targets(self._ctx, session_id)
        if not targets:
            log.warning("session %s not found; nothing to show the agent", session_id)
            return
        deliver_now(self._ctx, self._client, targets)


class SlackMessenger:
    """The Slack side of one listener's domain result. Built per request from the listener's
    client; holds no state between requests (DESIGN.md "Scale": Slack state never lives in
    process memory — message references are stored through the domain)."""

    def __init__(self, ctx: DomainContext, client: WebClient, deliverer: Deliverer | None = None) -> None:
        self._ctx = ctx
        self._client = client
        self._deliverer = deliverer or InlineDeliverer(ctx, client)

    # ------------------------------------------------------------------ a submitted request

    def request_submitted(self, result: Pending | Granted) -> None:
        """Everything a submission says was owed through the outbox in its transaction: the
        agent's DM — the link for a grant (derived again at delivery,
        never stored), "approval needed" naming who was asked otherwise — every approver's
        DM, and the security channel's alert for break-glass. They are handed to the
        deliverer, which sends them once the answer to Slack is on its way."""
        if isinstance(result, Granted) and result.bypassed and not self._ctx.policy.alerts.security_channel:
            log.warning("break-glass grant %s: no alerts.security_channel in the policy to tell", result.request.id)
        self._deliverer.deliver(result.targets)

    def extension_asked(self, asked: ExtensionAsked) -> None:
        """Approvers get the ask; the live session's DM says more time is waiting for them.
        Both were owed by the extension's transaction."""
        self._deliverer.deliver(approvals.ask_targets(asked.ask))

    # ------------------------------------------------------------------ clicks and decisions

    def answer_click(
        self, result: ClickResult, *, clicker: str, channel: str | None, extension: bool = False, trigger_id: str | None = None
    ) -> None:
        """A decision edits every message about it (through the outbox); any other result is
        told to the clicker alone (an ephemeral message in the channel they clicked in, or,
        for a click in the Home tab, a small modal opened with its `trigger_id`) and edits
        nothing."""
        if isinstance(result, Decided):
            self.decided(result)
            return
        text = click_answer_text(result, tz_name=self._tz(clicker), extension=extension)
        if channel:
            self._safely("click answer", lambda: self._client.chat_postEphemeral(channel=channel, user=clicker, text=text))
        elif trigger_id:
            view = home_notice_modal(text)
            self._safely("click answer", lambda: self._client.views_open(trigger_id=trigger_id, view=view))

    def decided(self, decided: Decided) -> None:
        """Exactly one decision per subject, and its messages owed in
        its transaction: every approver's DM, the agent's request DM (or, for more time, the
        session DM) and, on approval, the link in a new DM, exactly as for an ungated grant.
        The click's answer does not wait for them."""
        self._deliverer.deliver(decided.targets)

    # ------------------------------------------------------------------ plumbing

    def _tz(self, slack_id: str) -> str | None:
        return self._ctx.people.person(slack_id).tz

    def _safely(self, what: str, call: Callable[[], R]) -> R | None:
        try:
            return call()
        except SlackApiError as error:
            log.warning("%s failed: Slack answered %s", what, _slack_error(error))
        except Exception:  # noqa: BLE001 - one failed message must not stop the others
            log.exception("%s failed", what)
        return None
