"""Buttons. Every value is an id; every click is re-checked by the domain at that moment.

- **End session** ends the clicker's own live session and edits the message in place.
- **Approve** / **Deny** on an approver's DM: approve is decided at
  once; deny first asks for a reason in a modal (bot.slack.listeners.views).
- **Cancel request** on the agent's pending DM.
- **Request more time** / **Start a new request** on the live session's DM, and **Start a new
  request** on the DM of a session that ended or expired (a re-initiation: docs/policy.md).
- **Revoke session** on an alert or the security feed.

A click that decides edits every message about the request once, through the outbox, after
the click has been answered; any other click is answered to the clicker alone (`answer_click`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import approvals, extensions, requests, revocation, sessions
from bot.domain.approvals import ClickResult, Decided
from bot.domain.context import DomainContext
from bot.domain.ports import Deliverer
from bot.slack.blocks.approval import click_answer_text, deny_modal
from bot.slack.blocks.home import home_notice_modal
from bot.slack.blocks.request import new_request_view
from bot.slack.blocks.session import extension_modal, session_over_message
from bot.slack.blocks.state import carried_id
from bot.slack.blocks.watch import revocation_answer_text
from bot.slack.ids import ActionId, BlockId
from bot.slack.mrkdwn import escape

log = logging.getLogger(__name__)


def _clicked_in(body: dict[str, Any]) -> tuple[str | None, str | None]:
    container = body.get("container") or {}
    return container.get("channel_id"), container.get("message_ts")


def _in_a_view(body: dict[str, Any]) -> bool:
    """Clicked in a view (the Home tab) rather than in a message."""
    return (body.get("container") or {}).get("type") == "view"


def _trigger(body: dict[str, Any]) -> str | None:
    """The click's trigger_id when it came from a view (the Home tab), which has no channel to
    answer in: the answer opens as a small modal instead."""
    return body.get("trigger_id") if _in_a_view(body) else None


def answer_click(
    ctx: DomainContext,
    client: WebClient,
    deliverer: Deliverer,
    result: ClickResult,
    *,
    clicker: str,
    channel: str | None,
    extension: bool = False,
    trigger_id: str | None = None,
) -> None:
    """A decision edits every message about it (its targets, through the outbox, after the
    answer); any other result is told to the clicker alone (an ephemeral message in the
    channel they clicked in, or, for a click in the Home tab, a small modal opened with its
    `trigger_id`) and edits nothing."""
    if isinstance(result, Decided):
        deliverer.deliver(result.targets)
        return
    text = click_answer_text(result, tz_name=ctx.people.person(clicker).tz, extension=extension)
    if channel:
        _safely("click answer", lambda: client.chat_postEphemeral(channel=channel, user=clicker, text=text))
    elif trigger_id:
        view = home_notice_modal(text)
        _safely("click answer", lambda: client.views_open(trigger_id=trigger_id, view=view))


def _safely(what: str, call: Callable[[], object]) -> None:
    """The answer to a click that changed nothing: a failure is logged (Slack's error code,
    never the client or its token), never raised into Bolt's error handler."""
    try:
        call()
    except SlackApiError as error:
        log.warning("%s failed: Slack answered %s", what, error.response.get("error") or "unknown_error")
    except Exception:  # noqa: BLE001 - the click's change, if any, is already committed
        log.exception("%s failed", what)


def register(app: App, ctx: DomainContext, deliverer: Deliverer) -> None:
    @app.action(ActionId.END_SESSION.value)
    def end_session(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        clicker = body["user"]["id"]
        channel, ts = _clicked_in(body)
        try:
            ended = sessions.end_session(ctx, action.get("value") or "", actor_slack_id=clicker)
        except sessions.EndRefused as refused:
            if not channel:
                return  # clicked in a modal: it has nothing to edit, and nothing was ended
            if refused.session is not None and ts:
                # Already over (expired or revoked meanwhile): the message was stale; show the truth.
                text, message = session_over_message(refused.session)
                client.chat_update(channel=channel, ts=ts, text=text, blocks=message)
            else:
                client.chat_postEphemeral(channel=channel, user=clicker, text=escape(str(refused)))
            return
        # The end wrote outbox rows for the agent's DM and any expiry warning:
        # sent after the answer; the clicked message is one of them.
        deliverer.deliver(ended.targets)

    @app.action(ActionId.REVOKE_SESSION.value)
    def revoke_session(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Security revokes a live session from an alert or the feed; the
        power is checked now, by the domain, whatever the message offered."""
        ack()
        clicker = body["user"]["id"]
        channel, _ts = _clicked_in(body)
        source = "feed" if (action.get("block_id") == BlockId.FEED_ACTIONS.value) else "home" if _in_a_view(body) else "alert"
        result = revocation.revoke_session(ctx, carried_id(action.get("value")), actor_slack_id=clicker, source=source)
        if isinstance(result, revocation.Revoked):
            deliverer.deliver(result.targets)
        if channel:
            text = revocation_answer_text(result, tz_name=ctx.people.person(clicker).tz)
            client.chat_postEphemeral(channel=channel, user=clicker, text=text)
        elif isinstance(result, revocation.RevokeRefused) and _trigger(body):
            text = revocation_answer_text(result, tz_name=ctx.people.person(clicker).tz)
            client.views_open(trigger_id=_trigger(body), view=home_notice_modal(text))

    @app.action(ActionId.REVOKE_ALERT_SESSIONS.value)
    def revoke_alert_sessions(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """**Revoke all** on an alert: the value is the alert id; the domain reloads the
        alert's live sessions and checks the clicker's power now."""
        ack()
        clicker = body["user"]["id"]
        channel, _ts = _clicked_in(body)
        result = revocation.revoke_alert_sessions(ctx, carried_id(action.get("value")), actor_slack_id=clicker)
        if isinstance(result, revocation.RevokedAll):
            deliverer.deliver(result.targets)
        if channel:
            text = revocation_answer_text(result, tz_name=ctx.people.person(clicker).tz)
            client.chat_postEphemeral(channel=channel, user=clicker, text=text)

    @app.action(ActionId.APPROVE_REQUEST.value)
    def approve_request(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        clicker = body["user"]["id"]
        result = approvals.approve_request(ctx, carried_id(action.get("value")), clicker_slack_id=clicker)
        answer_click(ctx, client, deliverer, result, clicker=clicker, channel=_clicked_in(body)[0], trigger_id=_trigger(body))

    @app.action(ActionId.APPROVE_EXTENSION.value)
    def approve_extension(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        clicker = body["user"]["id"]
        result = extensions.decide_extension(ctx, carried_id(action.get("value")), clicker_slack_id=clicker, approve=True)
        answer_click(ctx, client, deliverer, result, clicker=clicker, channel=_clicked_in(body)[0], extension=True, trigger_id=_trigger(body))

    @app.action(ActionId.DENY_REQUEST.value)
    def deny_request(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        # The reason is asked first; the submission is what decides (views.deny_request).
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=deny_modal(carried_id(action.get("value"))))

    @app.action(ActionId.DENY_EXTENSION.value)
    def deny_extension(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        view = deny_modal(carried_id(action.get("value")), extension=True)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action(ActionId.CANCEL_REQUEST.value)
    def cancel_request(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        clicker = body["user"]["id"]
        result = approvals.cancel_request(ctx, carried_id(action.get("value")), clicker_slack_id=clicker)
        answer_click(ctx, client, deliverer, result, clicker=clicker, channel=_clicked_in(body)[0], trigger_id=_trigger(body))

    @app.action(ActionId.REQUEST_EXTENSION.value)
    def request_extension(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        # Who may extend, by how much and whether the session is still live are decided when
        # the modal is submitted (extensions.request_extension), not here.
        ack()
        view = extension_modal(
            carried_id(action.get("value")),
            choices_minutes=ctx.policy.extensions.choices_minutes,
            reason_min_length=ctx.policy.requests.reason_min_length,
        )
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action(ActionId.START_NEW_REQUEST.value)
    def start_new_request(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Re-initiation: the request modal, pre-filled with the account of the clicker's own
        session (the value: its id), or the open access they still hold. The session is
        reloaded and re-checked by the domain; the submission decides the link."""
        ack()
        clicker = body["user"]["id"]
        start = requests.new_request_from_session(ctx, carried_id(action.get("value")), agent_slack_id=clicker)
        client.views_open(trigger_id=body["trigger_id"], view=new_request_view(start, tz_name=ctx.people.person(clicker).tz))
