"""The outbox's Slack side (the Courier port, bot.domain.ports): a claimed row is shown as its
kind's registration says (bot/slack/kinds.py: the state loaded from the domain now, the Block
Kit built from it) and sent the way that kind reaches Slack — posted, or the message it already
has edited; posted with files in its thread; or a Home tab published. Slack's answer becomes an
outcome the outbox knows how to retry or audit (bot/slack/errors.py); nothing here raises for
Slack's answers.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.messages import Delivered, Delivery, Kind, Outcome, Permanent, Sent, Skipped, Transient
from bot.slack.blocks.kit import Message
from bot.slack.errors import classify
from bot.slack.kinds import KINDS, AskStates, CannotShow, NotSlack, Post, PostWithFiles, Publish, Row

log = logging.getLogger(__name__)


class SlackCourier:
    """Built once per process (bot/wiring.py) for the scheduler's outbox job and the deliverer
    that sends what a change owed after the response; a Bolt app built without a deliverer
    builds one from its own client (bot/slack/app.py). Keeps nothing between deliveries but what
    an ask shows for the rows claimed together (AskStates)."""

    def __init__(self, ctx: DomainContext, client: WebClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._ctx = ctx
        self._client = client
        self._clock = clock
        self._asks = AskStates(ctx)

    def deliver(self, delivery: Delivery) -> Outcome:
        registration = KINDS[delivery.kind]
        if isinstance(registration, NotSlack):
            log.error("outbox %s: %s rows are sent by %s, not by Slack", delivery.id, delivery.kind.value, registration.sender)
            return Permanent("not_a_slack_kind")
        recipient = delivery.recipient
        if recipient is None:
            if delivery.kind is Kind.BREAK_GLASS:
                log.warning("break-glass grant %s: no alerts.security_channel in the policy to tell", delivery.subject_id)
            return Skipped("no_security_channel")
        try:
            state = registration.load(Row(self._ctx, delivery, self._clock(), self._asks))
        except CannotShow as cannot:
            return Permanent(cannot.reason)
        if state is None:
            return Skipped("nothing_to_show")
        if isinstance(registration, Publish):
            return self._publish(delivery, registration.build(state))
        message = registration.build(state)
        if message is None:
            return Skipped("nothing_to_show")
        if isinstance(registration, PostWithFiles):
            return self._post_with_files(delivery, recipient, message, registration.files(state), registration.comment)
        return self._post(delivery, recipient, message)

    def render(self, delivery: Delivery) -> Message | None:
        """A message kind's row as the current state says it should read; None when nothing
        should be posted or changed (or the kind is not a message)."""
        registration = KINDS[delivery.kind]
        if not isinstance(registration, Post):
            return None
        state = registration.load(Row(self._ctx, delivery, self._clock(), self._asks))
        return registration.build(state) if state is not None else None

    # ------------------------------------------------------------------ sending

    def _post(self, delivery: Delivery, recipient: str, message: Message) -> Outcome:
        """Edit the message the row's target already has, or post it to `recipient`."""
        try:
            return self._post_or_update(delivery, recipient, message)
        except SlackApiError as error:
            return classify(error)
        except OSError as error:  # connection refused, reset, timed out
            return self._unreachable(delivery, error)

    def _post_or_update(self, delivery: Delivery, recipient: str, message: Message) -> Sent:
        text, shown = message
        if delivery.ref is not None:
            self._client.chat_update(channel=delivery.ref.channel, ts=delivery.ref.ts, text=text, blocks=shown)
            return Sent(delivery.ref.channel, delivery.ref.ts)
        response = self._client.chat_postMessage(
            channel=recipient, text=text, blocks=shown, unfurl_links=False, unfurl_media=False
        )
        return Sent(str(response["channel"]), str(response["ts"]))

    def _post_with_files(
        self, delivery: Delivery, recipient: str, message: Message, files: list[dict[str, str]], comment: str
    ) -> Outcome:
        """The message (edited, not posted again, when the row is retried after it went out),
        then the files in its thread with files_upload_v2 (files.getUploadURLExternal → the
        upload URL → files.completeUploadExternal, Slack "Uploading files")."""
        try:
            sent = self._post_or_update(delivery, recipient, message)
            self._client.files_upload_v2(file_uploads=files, channel=sent.channel, thread_ts=sent.ts, initial_comment=comment)
        except SlackApiError as error:
            return classify(error)
        except (SlackRequestError, OSError) as error:  # the upload URL refused the bytes, or the network failed
            log.warning("outbox %s (%s): upload failed: %s", delivery.id, delivery.kind.value, type(error).__name__)
            return Transient(type(error).__name__[:64])
        return sent

    def _publish(self, delivery: Delivery, view: dict[str, Any]) -> Outcome:
        """A person's Home tab, published whole to the row's subject (views.publish replaces
        it; there is no message to edit later)."""
        try:
            self._client.views_publish(user_id=delivery.subject_id, view=view)
        except SlackApiError as error:
            return classify(error)
        except OSError as error:
            return self._unreachable(delivery, error)
        return Delivered(200)

    def _unreachable(self, delivery: Delivery, error: OSError) -> Outcome:
        log.warning("outbox %s: cannot reach Slack: %s", delivery.id, type(error).__name__)
        return Transient(type(error).__name__[:64])
