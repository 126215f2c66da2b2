"""The SessionNotifier port over Slack (bot.domain.ports, DESIGN.md "Layers").

When the agent redeems their link in the browser, the web face calls session_started();
the agent's DM about the request is edited in place to "Session active until HH:MM" with an
End session button (issue 2 point 14). The redemption has already happened and must not fail
because Slack did: every failure is logged (method and Slack's error code, never the client,
tokens or message contents, which hold no link here but might in future) and swallowed.
"""
from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import requests, sessions
from bot.domain.context import DomainContext
from bot.slack.blocks import session_active_message, session_over_message

log = logging.getLogger(__name__)


class SlackSessionNotifier:
    def __init__(self, ctx: DomainContext, client: WebClient) -> None:
        self._ctx = ctx
        self._client = client

    def session_started(self, session_id: str) -> None:
        try:
            self._show_session(session_id)
        except SlackApiError as error:
            log.warning(
                "could not update the agent's message for session %s: %s",
                session_id,
                error.response.get("error") or "unknown_error",
            )
        except Exception:  # noqa: BLE001 - a notification must never break the redemption
            log.exception("could not update the agent's message for session %s", session_id)

    def _show_session(self, session_id: str) -> None:
        check = sessions.check_session(self._ctx, session_id)
        if check.session is None:
            log.warning("session %s not found; nothing to show the agent", session_id)
            return
        # A session can be over by the time this runs (a very short one, or revoked at once):
        # show the truth rather than an End button for a session that no longer exists.
        text, blocks = session_active_message(check.session) if check.live else session_over_message(check.session)
        request = check.session.request
        if request.agent_channel and request.agent_message_ts:
            self._client.chat_update(channel=request.agent_channel, ts=request.agent_message_ts, text=text, blocks=blocks)
            return
        # The grant DM's reference was not recorded (its chat.postMessage answer was lost):
        # post a fresh DM and remember it, so that ending the session edits that one.
        response = self._client.chat_postMessage(
            channel=request.agent_slack_id, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
        )
        requests.record_agent_message(self._ctx, request.id, channel=response["channel"], ts=response["ts"])
