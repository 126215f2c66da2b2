"""The outbox's Slack side (the Courier port, bot.domain.ports): render a claimed row from the
state as it is now, with the Block Kit builders, and post it (or edit the message it already has).
Slack's answer becomes an outcome the outbox knows how to retry or audit (bot/slack/errors.py);
nothing here raises for Slack's answers.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import anomalies, approvals, asks, checkpoint_job, extensions, home, requests, watch
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.messages import Delivered, Delivery, Kind, Outcome, Sent, Skipped, Transient
from bot.domain.views import RequestView
from bot.slack.blocks.approval import approval_reminder_message, approval_request_message, approver_outcome_message
from bot.slack.blocks.home import home_tab
from bot.slack.blocks.kit import Message
from bot.slack.blocks.request import pending_message, request_outcome_message
from bot.slack.blocks.session import (
    expiry_warning_message,
    extension_outcome_message,
    extension_pending_message,
    grant_message,
    link_lapsed_message,
    revoked_notice_message,
    session_active_message,
    session_over_message,
)
from bot.slack.blocks.watch import alert_message, alert_summary_message, break_glass_alert, checkpoint_message, security_feed_message
from bot.slack.digest_post import post_digest
from bot.slack.errors import classify

log = logging.getLogger(__name__)

def can_request_extension(ctx: DomainContext, agent_slack_id: str) -> bool:
    powers = requests.agent_powers(ctx, agent_slack_id)
    return bool(powers and powers.can_request_extension)


class SlackCourier:
    """Built once per process (bot/wiring.py) for the scheduler's outbox job and the deliverer
    that sends what a change owed after the response (a Bolt app built without a deliverer
    builds one from its own client, bot/slack/app.py). Keeps nothing between deliveries but what an
    ask shows for the rows claimed together (Delivery.claim_group): every one of them was
    claimed before the first was rendered, so one read of the state serves them all."""

    def __init__(self, ctx: DomainContext, client: WebClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._ctx = ctx
        self._client = client
        self._clock = clock
        self._asks: dict[tuple[str, str], approvals.ApprovalAsk | approvals.Decided | None] = {}

    def _ask_state(self, delivery: Delivery) -> approvals.ApprovalAsk | approvals.Decided | None:
        """asks.approver_message_state of the row's subject, read once per claim group (a
        deciding click's approver DMs, reminders and the agent's request DM show the same)."""
        if delivery.claim_group is None:
            return asks.approver_message_state(self._ctx, delivery.subject_id)
        key = (delivery.claim_group, delivery.subject_id)
        if key not in self._asks:
            if any(group != delivery.claim_group for group, _ in self._asks):
                self._asks.clear()  # an earlier group's states are never read again
            self._asks[key] = asks.approver_message_state(self._ctx, delivery.subject_id)
        return self._asks[key]

    def deliver(self, delivery: Delivery) -> Outcome:
        if delivery.recipient is None:
            if delivery.kind is Kind.BREAK_GLASS:
                log.warning("break-glass grant %s: no alerts.security_channel in the policy to tell", delivery.subject_id)
            return Skipped("no_security_channel")
        if delivery.kind is Kind.DIGEST:
            return post_digest(self._ctx, self._client, delivery, channel=delivery.recipient, now=self._clock())
        if delivery.kind is Kind.HOME:
            return self._publish_home(delivery)
        message = self.render(delivery)
        if message is None:
            return Skipped("nothing_to_show")
        text, shown = message
        try:
            if delivery.ref is not None:
                self._client.chat_update(channel=delivery.ref.channel, ts=delivery.ref.ts, text=text, blocks=shown)
                return Sent(delivery.ref.channel, delivery.ref.ts)
            response = self._client.chat_postMessage(
                channel=delivery.recipient, text=text, blocks=shown, unfurl_links=False, unfurl_media=False
            )
            return Sent(str(response["channel"]), str(response["ts"]))
        except SlackApiError as error:
            return classify(error)
        except OSError as error:  # connection refused, reset, timed out
            log.warning("outbox %s: cannot reach Slack: %s", delivery.id, type(error).__name__)
            return Transient(type(error).__name__[:64])

    def _publish_home(self, delivery: Delivery) -> Outcome:
        """A person's Home tab, rendered from their powers and the state now, published whole
        (views.publish replaces it; there is no message to edit later)."""
        person = delivery.subject_id
        view = home_tab(home.home_view(self._ctx, person, now=self._clock()))
        try:
            self._client.views_publish(user_id=person, view=view)
        except SlackApiError as error:
            return classify(error)
        except OSError as error:
            log.warning("outbox %s: cannot reach Slack: %s", delivery.id, type(error).__name__)
            return Transient(type(error).__name__[:64])
        return Delivered(200)

    # ------------------------------------------------------------------ rendering

    def render(self, delivery: Delivery) -> Message | None:
        """The message as the current state says it should read; None when nothing should be
        posted or changed."""
        now = self._clock()
        kind = delivery.kind
        if kind is Kind.AGENT:
            return self._agent(delivery.subject_id, now)
        if kind is Kind.AGENT_REQUEST:
            return self._agent_request(delivery)
        if kind is Kind.FEED:
            view = watch.feed_view(self._ctx, delivery.subject_id, now=now)
            return security_feed_message(view) if view is not None else None
        if kind is Kind.WARNING:
            return self._warning(delivery, now)
        if kind is Kind.NOTICE:
            session = watch.session_view(self._ctx, delivery.subject_id)
            if session is None or session.state != "revoked":
                return None
            return revoked_notice_message(session)
        if kind is Kind.APPROVER:
            return self._approver(delivery)
        if kind is Kind.REMINDER:
            return self._reminder(delivery)
        if kind is Kind.BREAK_GLASS:
            request = requests.load_request(self._ctx, delivery.subject_id)
            return break_glass_alert(request) if request is not None and request.break_glass else None
        if kind is Kind.ALERT:
            views = anomalies.alert_views(self._ctx, delivery.batch or (delivery.subject_id,), now=now)
            if not views:
                return None
            return alert_message(views[0]) if len(views) == 1 else alert_summary_message(views)
        if kind is Kind.CHECKPOINT:
            checkpoint = checkpoint_job.checkpoint_for(self._ctx, delivery.subject_id)
            return checkpoint_message(checkpoint) if checkpoint is not None else None
        log.error("outbox %s: no renderer for kind %s", delivery.id, kind.value)
        return None

    def _approver(self, delivery: Delivery) -> Message | None:
        """The ask (Approve / Deny) while the request or extension is pending; its outcome,
        without buttons, once decided — whether this edits the DM or is its first post
        (a DM still owed when the decision came never offers a stale choice)."""
        state = self._ask_state(delivery)
        if state is None:
            return None
        tz_name = self._ctx.people.person(delivery.recipient or "").tz
        if isinstance(state, approvals.ApprovalAsk):
            return approval_request_message(state, tz_name=tz_name)
        return approver_outcome_message(state, tz_name=tz_name)

    def _reminder(self, delivery: Delivery) -> Message | None:
        """A reminder while the ask is pending; once decided, a reminder already posted is
        edited to the outcome (no stale buttons), and one not yet posted is not sent."""
        state = self._ask_state(delivery)
        tz_name = self._ctx.people.person(delivery.recipient or "").tz
        if isinstance(state, approvals.ApprovalAsk):
            return approval_reminder_message(state, tz_name=tz_name)
        if isinstance(state, approvals.Decided) and delivery.ref is not None:
            return approver_outcome_message(state, tz_name=tz_name)
        return None

    def _agent(self, request_id: str, now: datetime) -> Message | None:
        """The agent's DM about a granted request, as it should read now: the link while it
        can be opened (derived again: a redelivery carries the same link, never a new one),
        then the live session (with how more time was decided, or that it is waiting for
        approvers), then how it ended."""
        news = watch.agent_news(self._ctx, request_id, now=now)
        if news.live is not None and news.extension_ask is not None:
            return extension_pending_message(news.extension_ask)
        if news.live is not None:
            can_extend = can_request_extension(self._ctx, news.live.request.agent_slack_id)
            extension = extensions.last_extension_outcome(self._ctx, news.live.id)
            shown = extension_outcome_message(extension, can_request_extension=can_extend) if extension is not None else None
            return shown or session_active_message(news.live, can_request_extension=can_extend)
        if news.over is not None:
            return session_over_message(news.over)
        if news.lapsed is not None:
            return link_lapsed_message(news.lapsed)
        if news.decided is not None:
            return request_outcome_message(news.decided)
        grant = requests.link_message_state(self._ctx, request_id, now=now)
        if isinstance(grant, requests.Granted):
            return grant_message(grant)
        if isinstance(grant, RequestView):  # unopened past its window, not yet marked lapsed
            return link_lapsed_message(grant)
        return None

    def _agent_request(self, delivery: Delivery) -> Message | None:
        """The agent's "approval needed" DM: who was asked while pending, the outcome once
        decided (an approval says the link follows in the next message)."""
        state = self._ask_state(delivery)
        if isinstance(state, approvals.ApprovalAsk):
            if state.extension is not None:
                return None
            return pending_message(requests.Pending(state.request, state.request.approvals_required, state))
        if isinstance(state, approvals.Decided) and state.extension is None:
            return request_outcome_message(state)
        return None

    def _warning(self, delivery: Delivery, now: datetime) -> Message | None:
        session = watch.session_view(self._ctx, delivery.subject_id)
        if session is None:
            return None
        if watch.is_live(session, now):
            return expiry_warning_message(
                session, now=now, can_request_extension=can_request_extension(self._ctx, session.request.agent_slack_id)
            )
        # Over: a warning already shown loses its buttons; one never shown is not sent late.
        return session_over_message(session) if delivery.ref is not None else None
