"""A fake Slack Socket Mode server: the WebSocket end of the URLs that the fake Web API's
`apps.connections.open` hands out (tests/fakes/slack_api.py, `FakeSlack.socket_mode`).

It speaks Slack's Socket Mode protocol (docs.slack.dev/apis/events-api/using-socket-mode)
over a real WebSocket, served by the `websockets` package (a test dependency), so the app's
client is held to RFC 6455 framing as well as to Slack's messages:

- each URL carries a one-time `ticket`; a connection with an unknown or used ticket is
  refused (HTTP 401) and recorded in `violations`;
- a new connection is greeted with `hello`, as Slack does;
- `send(...)` delivers an envelope `{envelope_id, type, payload, accepts_response_payload}`
  to a live connection; the app's acknowledgement `{envelope_id[, payload]}` is recorded and
  `ack(envelope_id)` waits for it. An acknowledgement for an envelope never sent, a second
  one, or one with a payload where the envelope accepts none, is a violation;
- `ask_to_reconnect()` sends `disconnect` (`refresh_requested`), as Slack does every few
  hours; the app is expected to open a new connection from a new URL.
"""
from __future__ import annotations

import http
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request
from websockets.sync.server import Server, ServerConnection, serve

#: liveness only: how long a test waits for the app to connect or acknowledge
DEFAULT_WAIT_SECONDS = 15.0

#: interactive payload types whose acknowledgement may carry a response (modal errors or
#: updates, options); Slack sets accepts_response_payload for these and for slash commands
RESPONDING_INTERACTIONS = frozenset({"view_submission", "block_suggestion"})


@dataclass(frozen=True)
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool

    def message(self) -> dict[str, Any]:
        message = {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.type == "events_api":
            message.update(retry_attempt=0, retry_reason="")
        return message


def envelope_for_http_body(body: str) -> tuple[str, dict[str, Any], bool]:
    """What Slack delivers over Socket Mode instead of POSTing `body` (a form body as
    tests/slack/signed.py builds it) to the request URL: (type, payload, accepts_response)."""
    form = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" in form:
        payload = json.loads(form["payload"])
        return "interactive", payload, payload.get("type") in RESPONDING_INTERACTIONS
    if "command" in form:
        return "slash_commands", form, True
    raise ValueError("not a slash command or interaction body")


class FakeSocketMode:
    """Use through `FakeSlack.socket_mode`, or start() / stop() directly."""

    def __init__(self, *, app_id: str = "A0FAKEAPP") -> None:
        self.app_id = app_id
        self._cond = threading.Condition()
        self._tickets: dict[str, bool] = {}  # ticket → used
        self._live: list[ServerConnection] = []
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        #: every envelope sent, by id
        self.envelopes: dict[str, Envelope] = {}
        #: every acknowledgement received, by envelope id
        self.acks: dict[str, dict[str, Any]] = {}
        #: every message the app sent, decoded
        self.received: list[dict[str, Any]] = []
        #: connections accepted so far (reconnections count)
        self.connections_opened = 0
        self.violations: list[str] = []

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> FakeSocketMode:
        # ping_interval=None: the app's client pings (Slack's server does too, but a test
        # gains nothing from a second timer)
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check_ticket, ping_interval=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-socket-mode", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # what apps.connections.open answers ---------------------------------------------------------------
    def issue_url(self) -> str:
        """A URL with a fresh ticket (after stop(), one that nobody serves any more)."""
        if not self.port:
            raise RuntimeError("FakeSocketMode was never started")
        ticket = secrets.token_hex(16)
        with self._cond:
            self._tickets[ticket] = False
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    @property
    def tickets(self) -> list[str]:
        with self._cond:
            return list(self._tickets)

    # driving the app ------------------------------------------------------------------------------------
    @property
    def live_connections(self) -> int:
        with self._cond:
            return len(self._live)

    def wait_for_connections(self, count: int = 1, *, opened: int | None = None, timeout: float = DEFAULT_WAIT_SECONDS) -> None:
        """Until `count` connections are live (and, with `opened`, that many were ever opened)."""
        def ready() -> bool:
            return len(self._live) >= count and (opened is None or self.connections_opened >= opened)

        with self._cond:
            if not self._cond.wait_for(ready, timeout=timeout):
                raise AssertionError(f"{len(self._live)} Socket Mode connection(s) live, {self.connections_opened} opened")

    def send(self, type: str, payload: dict[str, Any], *, accepts_response_payload: bool) -> str:
        """Delivers an envelope to the newest live connection; returns its envelope_id."""
        self.wait_for_connections()
        envelope = Envelope(secrets.token_hex(12), type, payload, accepts_response_payload)
        with self._cond:
            self.envelopes[envelope.envelope_id] = envelope
            connection = self._live[-1]
        connection.send(json.dumps(envelope.message()))
        return envelope.envelope_id

    def send_http_body(self, body: str) -> str:
        """Delivers, as an envelope, what Slack would have POSTed to the request URL."""
        type_, payload, accepts = envelope_for_http_body(body)
        return self.send(type_, payload, accepts_response_payload=accepts)

    def ack(self, envelope_id: str, *, timeout: float = DEFAULT_WAIT_SECONDS) -> dict[str, Any]:
        """The app's acknowledgement of the envelope, once it arrives."""
        with self._cond:
            if not self._cond.wait_for(lambda: envelope_id in self.acks, timeout=timeout):
                raise AssertionError(f"envelope {envelope_id} was not acknowledged")
            return self.acks[envelope_id]

    def ask_to_reconnect(self) -> None:
        """Slack's periodic "please reconnect": the app should open a fresh connection."""
        with self._cond:
            connections = list(self._live)
        for connection in connections:
            connection.send(json.dumps({"type": "disconnect", "reason": "refresh_requested",
                                        "debug_info": {"host": "fake-socket-mode"}}))

    # the server side -----------------------------------------------------------------------------------
    def _check_ticket(self, connection: ServerConnection, request: Request):
        ticket = (parse_qs(urlsplit(request.path).query).get("ticket") or [""])[0]
        with self._cond:
            used = self._tickets.get(ticket)
            if used is None or used:
                self.violations.append(f"connection with {'a used' if used else 'an unknown'} ticket")
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "invalid ticket\n")
            self._tickets[ticket] = True
        return None

    def _handle(self, connection: ServerConnection) -> None:
        try:
            with self._cond:
                count = len(self._live) + 1
            connection.send(json.dumps({
                "type": "hello", "num_connections": count,
                "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }))
        except ConnectionClosed:
            return
        # Live (envelopes may go to it) only once greeted: Slack sends nothing before hello.
        with self._cond:
            self._live.append(connection)
            self.connections_opened += 1
            self._cond.notify_all()
        try:
            for raw in connection:
                self._receive(raw)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._live.remove(connection)
                self._cond.notify_all()

    def _receive(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            with self._cond:
                self.violations.append(f"not JSON: {raw[:80]!r}")
            return
        with self._cond:
            self.received.append(message)
            envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
            envelope = self.envelopes.get(envelope_id or "")
            if envelope is None:
                self.violations.append(f"acknowledgement of an envelope never sent: {envelope_id!r}")
            elif envelope_id in self.acks:
                self.violations.append(f"envelope {envelope_id} acknowledged twice")
            elif "payload" in message and not envelope.accepts_response_payload:
                self.violations.append(f"envelope {envelope_id} ({envelope.type}) accepts no response payload")
            if envelope_id and envelope_id not in self.acks:
                self.acks[envelope_id] = message
            self._cond.notify_all()


def wait_until(predicate, *, timeout: float = DEFAULT_WAIT_SECONDS, interval: float = 0.02):
    """Polls `predicate` until it is truthy (liveness only; nothing is timed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
