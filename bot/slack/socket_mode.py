"""Socket Mode: Slack delivers slash commands, interactions, options loads and events over a
WebSocket the app opens, instead of POSTing them to /slack/events (DESIGN.md configuration
table, `SLACK_APP_TOKEN`).

The receiver is slack_bolt's own adapter on slack_sdk's built-in client
(slack_bolt.adapter.socket_mode.SocketModeHandler), which needs no dependency beyond
slack_sdk. It dispatches every envelope into the same Bolt App the HTTP endpoint uses (built
by bot.slack.app.build_slack_app), so the same listeners, middleware and error handler run,
and sends Bolt's answer back as the envelope's acknowledgement (with its payload: modal
errors, options, command replies). Bolt skips the signature check for Socket Mode requests:
the connection itself was opened with the app-level token.

- The WebSocket URL comes from `apps.connections.open`, called with the app's configured
  WebClient, so it goes to SLACK_API_URL like every other Web API call.
- The client reconnects by itself when Slack asks it to (`disconnect` messages) or the
  connection goes stale.
- `stop()` is graceful: no new envelope is started, those already running finish and are
  acknowledged over the still-open connection, then the connection closes.
- Neither the app-level token nor the WebSocket URL (whose `ticket` admits a connection) is
  logged: the SDK prints them only in its trace mode, which stays off, and its logger is
  kept at INFO so that DEBUG for the app cannot dump acknowledgement bodies either.
"""
from __future__ import annotations

import contextlib
import logging
import socket

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.config import APP_TOKEN_PREFIX, ConfigError

log = logging.getLogger(__name__)

#: Envelopes handled at once on one connection: the same as one gunicorn worker's threads
#: (bot/web/gunicorn_conf.py), so a worker takes the same load over either transport.
SOCKET_MODE_CONCURRENCY = 8

#: the SDK client's own logger (a child of ours, so operators find it under one name)
CLIENT_LOGGER = f"{__name__}.client"


class SocketModeReceiver:
    """One Socket Mode connection feeding one Bolt App. `start()` connects, `stop()` drains
    and closes; both are meant to be called once."""

    def __init__(self, app: App, app_token: str, *, concurrency: int = SOCKET_MODE_CONCURRENCY) -> None:
        if not app_token.startswith(APP_TOKEN_PREFIX):
            # Settings.require_app_token_shape stops start-up before this; kept as the guard
            # for anyone constructing a receiver directly.
            raise ConfigError(f"SLACK_APP_TOKEN must be an app-level token starting with {APP_TOKEN_PREFIX!r}")
        client_logger = logging.getLogger(CLIENT_LOGGER)
        if client_logger.level < logging.INFO:
            # DEBUG would log every message sent, acknowledgement payloads included.
            client_logger.setLevel(logging.INFO)
        self._handler = SocketModeHandler(
            app,
            app_token,
            logger=client_logger,
            web_client=app.client,  # SLACK_API_URL, retry handlers, the quiet wire logger
            concurrency=concurrency,
        )
        self._stopped = False

    @property
    def connected(self) -> bool:
        return self._handler.client.is_connected()

    def start(self) -> None:
        """Opens the connection. Slack refusing the token, or SLACK_API_URL being unreachable,
        is a configuration problem (ConfigError); a WebSocket that fails after the URL was
        issued is retried by the client itself."""
        try:
            self._handler.connect()
        except SlackApiError as exc:
            self.stop()
            error = str(exc.response.get("error") or "")
            if not error.replace("_", "").isalpha():  # not one of Slack's error codes (e.g. an HTML error page)
                error = f"HTTP {exc.response.status_code}"
            raise ConfigError(
                f"Slack refused to open a Socket Mode connection with SLACK_APP_TOKEN ({error}); "
                "check the token has the connections:write scope and Socket Mode is enabled for the app"
            ) from None
        except OSError as exc:
            self.stop()
            raise ConfigError(f"cannot reach the Slack Web API to open a Socket Mode connection: {exc}") from None
        if self.connected:
            log.info("Socket Mode connected; Slack requests arrive over the WebSocket")
        else:
            # The SDK logged why; its monitor asks for a fresh URL and retries every few seconds.
            log.warning("Socket Mode: the WebSocket did not open; retrying in the background")

    def stop(self) -> None:
        """Stops taking envelopes, lets the ones being handled finish and acknowledge, then
        closes the connection. Envelopes Slack sent but nobody started are not acknowledged:
        Slack retries events, and a user sees their command time out, as with an HTTP server
        going away."""
        if self._stopped:
            return
        self._stopped = True
        client = self._handler.client
        # These attributes are slack_sdk's built-in client's (socket_mode/builtin/client.py):
        # no reconnection from here on, the dispatcher loop ends (`closed`), and the worker pool
        # drains while the socket is still open so that running handlers can still ack.
        client.auto_reconnect_enabled = False
        client.closed = True
        client.message_queue.put(None)  # wakes the dispatcher, which skips None, sees `closed`
        client.message_processor.shutdown()
        client.message_workers.shutdown(wait=True)
        sock = getattr(client.current_session, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                # Wakes the receiving thread from its blocking read at once (the SDK reads
                # with a 3 s timeout, holding a lock that closing waits for) and tells Slack
                # right away that this connection is gone.
                sock.shutdown(socket.SHUT_RDWR)
        self._handler.close()
        log.info("Socket Mode connection closed")


def start_socket_mode(app: App, app_token: str) -> SocketModeReceiver:
    receiver = SocketModeReceiver(app, app_token)
    receiver.start()
    return receiver
