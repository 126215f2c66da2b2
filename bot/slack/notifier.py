"""Telling people in Slack what the domain decided: the SessionNotifier port
(bot.domain.ports, DESIGN.md "Layers") and the messenger that fans one domain result out to
several messages (issue 3).

When the agent redeems their link in the browser, the web face calls session_started();
the agent's DM about the request is edited in place to "Session active until HH:MM" with an
End session button (issue 2 point 14). The redemption has already happened and must not fail
because Slack did: every failure is logged (method and Slack's error code, never the client,
tokens or message contents, which hold no link here but might in future) and swallowed.

`SlackMessenger` does the Slack side of one listener's domain call: the agent's DM, the
link, the clicker's private answer, and an immediate delivery of the outbox rows the domain
call wrote in its transaction (issue 5 point 3): every approver's DM (the outbox records
each so that it is edited in place), their edits once a request is decided, the security
channel's break-glass alert. Each Slack call stands alone: one failed DM (a deactivated
approver, a deleted message) is logged, or retried and audited by the outbox, and the others
still go out. Deliveries to several people run side by side (at most FANOUT_MAX_PARALLEL at
once): with `process_before_response` the listener answers Slack only after they return, and
a modal must be answered within 3 s (Slack "Handling user interaction"), so N approvers must
cost about one round trip, not N.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import approvals, outbox, requests, sessions
from bot.domain.approvals import ClickResult, Decided, ExtensionAsked
from bot.domain.context import DomainContext
from bot.domain.requests import Granted, Pending
from bot.domain.views import RequestView
from bot.slack import blocks
from bot.slack.blocks import Block
from bot.slack.courier import can_request_extension, deliver_now

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Slack calls made side by side for one fan-out (Slack's chat.postMessage limit is per
#: channel, about 1 message per second, and each approver's DM is its own channel)
FANOUT_MAX_PARALLEL = 8


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
        """The redemption wrote an outbox row for the agent's DM (issue 5 point 3); deliver it
        now rather than at the scheduler's next run. The courier renders the truth at this
        moment — a session already over (very short, or revoked at once) is shown as over —
        and posts a fresh DM, remembered for later edits, when the grant DM's reference was
        lost."""
        check = sessions.check_session(self._ctx, session_id)
        if check.session is None:
            log.warning("session %s not found; nothing to show the agent", session_id)
            return
        request = check.session.request
        deliver_now(self._ctx, self._client, [outbox.target_of(outbox.Kind.AGENT, request.id, request.agent_slack_id)])


class SlackMessenger:
    """The Slack calls that follow one domain result. Built per request from the listener's
    client; holds no state between requests (DESIGN.md "Scale": Slack state never lives in
    process memory — message references are stored through the domain)."""

    def __init__(self, ctx: DomainContext, client: WebClient) -> None:
        self._ctx = ctx
        self._client = client

    # ------------------------------------------------------------------ a submitted request

    def request_submitted(self, result: Pending | Granted) -> None:
        """The agent's DM (the link, or "approval needed" naming who was asked), then what the
        submission owed through the outbox (issue 5 point 3): every approver's DM for a
        pending request, or the security channel's alert for break-glass. Those rows were
        written with the request; they are delivered now, with the scheduler's claims, so no
        one waits for its next run and nothing goes out twice. The agent's DM stays here: a
        grant's DM holds the one-time link, which is never stored (docs/design-decisions.md)."""
        request = result.request
        text, message = blocks.grant_message(result) if isinstance(result, Granted) else blocks.pending_message(result)
        self._post_to_agent(request, text, message)
        if isinstance(result, Pending) and result.ask is not None:
            self._deliver(approvals.ask_targets(result.ask))
        if isinstance(result, Granted) and result.bypassed:
            if not self._ctx.policy.alerts.security_channel:
                log.warning("break-glass grant %s: no alerts.security_channel in the policy to tell", request.id)
            self._deliver([outbox.break_glass_target(request.id)])

    def extension_asked(self, asked: ExtensionAsked) -> None:
        """Approvers get the ask; the live session's DM says more time is waiting for them.
        Both were owed by the extension's transaction; they are delivered now."""
        self._deliver(approvals.ask_targets(asked.ask))

    # ------------------------------------------------------------------ clicks and decisions

    def answer_click(self, result: ClickResult, *, clicker: str, channel: str | None, extension: bool = False) -> None:
        """A decision edits every message about it; any other result is told to the clicker
        alone (an ephemeral message in the channel they clicked in) and edits nothing."""
        if isinstance(result, Decided):
            self.decided(result)
            return
        text = blocks.click_answer_text(result, tz_name=self._tz(clicker), extension=extension)
        if channel:
            self._safely("click answer", lambda: self._client.chat_postEphemeral(channel=channel, user=clicker, text=text))

    def decided(self, decided: Decided) -> None:
        """Exactly one edit per message, once, by the one click that decided (issue 3
        points 4 and 6): every approver's DM, then the agent's; on approval of a request the
        link follows in a new DM, exactly as for an ungated grant."""

        if decided.extension is None and decided.outcome in approvals.OUTBOX_OUTCOMES:
            # Expired, denied or cancelled: the decision wrote outbox rows for every approver's
            # DM and the agent's (issue 5 point 3); send them now, rendered from the state.
            self._deliver(approvals.outcome_targets(decided))
            return

        # Every approver's DM, delivered or still owed, was given an outbox row by the
        # decision; a DM already sent is edited, one not yet sent is posted as decided.
        self._deliver(approvals.approver_targets(decided))
        request = decided.request
        if decided.extension is not None:
            shown = blocks.extension_outcome_message(
                decided, can_request_extension=can_request_extension(self._ctx, request.agent_slack_id)
            )
            if shown is not None and request.agent_channel and request.agent_message_ts:
                self._update("the agent's session DM", request.agent_channel, request.agent_message_ts, *shown)
            return
        text, message = blocks.request_outcome_message(decided)
        if request.agent_channel and request.agent_message_ts:
            self._update("the agent's request DM", request.agent_channel, request.agent_message_ts, text, message)
        else:
            self._post_to_agent(request, text, message)
        if decided.outcome == "approved" and decided.link is not None:
            granted = Granted(request, decided.link, self._ctx.policy.links.redeem_window_minutes)
            self._post_to_agent(request, *blocks.grant_message(granted, approved_by=decided.by))

    # ------------------------------------------------------------------ plumbing

    def _post_to_agent(self, request: RequestView, text: str, message: list[Block]) -> None:
        """A DM to the agent (posting to a user id opens the app's DM with them), remembered
        so that later changes edit it in place. Unfurling is off so that Slack never fetches
        a one-time link (DESIGN.md hand-off 1)."""
        response = self._safely(
            "the agent's DM",
            lambda: self._client.chat_postMessage(
                channel=request.agent_slack_id, text=text, blocks=message, unfurl_links=False, unfurl_media=False
            ),
        )
        if response is not None:
            self._safely(
                "recording the agent's DM",
                lambda: requests.record_agent_message(self._ctx, request.id, channel=response["channel"], ts=response["ts"]),
            )

    def _deliver(self, targets: list[str]) -> None:
        """Deliver what one change owed, a target per thread: each target is claimed on its
        own, exactly as by the scheduler (a row it has already taken is not sent twice)."""
        self._each("outbox delivery", lambda target: deliver_now(self._ctx, self._client, [target]), targets)

    def _update(self, what: str, channel: str, ts: str, text: str, message: list[Block]) -> None:
        self._safely(what, lambda: self._client.chat_update(channel=channel, ts=ts, text=text, blocks=message))

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

    def _each(self, what: str, call: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`call` for every item, side by side; the results of those that succeeded."""
        items = list(items)
        if len(items) <= 1:
            results = [self._safely(what, lambda item=item: call(item)) for item in items]
        else:
            with ThreadPoolExecutor(max_workers=min(len(items), FANOUT_MAX_PARALLEL), thread_name_prefix="slack-fanout") as pool:
                results = list(pool.map(lambda item: self._safely(what, lambda: call(item)), items))
        return [r for r in results if r is not None]

