"""Socket Mode (bot/slack/socket_mode.py): the production object graph receives slash
commands, interactions and options loads over a real WebSocket from the fake Socket Mode
server, whose URL comes from the fake Web API's apps.connections.open at SLACK_API_URL. The
same listeners run and make the same Slack calls as over HTTP; the envelopes are
acknowledged with Bolt's answers; the app-level token never reaches the logs."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot import wiring
from bot.config import ConfigError, load_settings
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.socket_mode import SocketModeReceiver, start_socket_mode
from tests.conftest import TEST_POLICY
from tests.e2e.conftest import PEOPLE, link_in
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack
from tests.fakes.socket_mode import envelope_for_http_body, wait_until
from tests.slack.listeners.flow import request_state
from tests.slack.signed import SIGNING_SECRET, block_action, block_suggestion, slash_command, view_submission


@pytest.fixture
def fake():
    with FakeSlack(users=PEOPLE, channels=["CSECURITY1"]) as fake:
        yield fake


@pytest.fixture
def make_container(db_url, tmp_path, session_factory, fake):
    load_directory(session_factory, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(TEST_POLICY)
    built: list[wiring.Container] = []

    def _make(**overrides: str) -> wiring.Container:
        env = {
            "SLACK_BOT_TOKEN": fake.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_APP_TOKEN": fake.app_token,
            "SLACK_API_URL": fake.url,
            "DATABASE_URL": db_url,
            "IMPERSONATION_POLICY": str(policy),
            "SIGNING_KEY_FILE": str(tmp_path / "signing_key.pem"),
            "PUBLIC_BASE_URL": "http://bot.test",
            "PRODUCT_LAUNCH_URL": "http://product.test/impersonation/launch",
            **overrides,
        }
        container = wiring.build_container(load_settings(env))
        built.append(container)
        return container

    yield _make
    for container in built:
        container.close()


@pytest.fixture
def receiver(make_container) -> Iterator[SocketModeReceiver]:
    container = make_container()
    receiver = start_socket_mode(container.slack_app, container.settings.slack_app_token or "")
    try:
        yield receiver
    finally:
        receiver.stop()


# --- one flow, over either transport --------------------------------------------------------------


@dataclass
class Transport:
    """Delivers what Slack would send and returns the app's answer: the HTTP response body
    (JSON) or the envelope's acknowledgement payload; None when there is none."""

    deliver: Callable[[str, dict[str, Any]], dict[str, Any] | None]
    fake: FakeSlack
    stop: Callable[[], None] = lambda: None


def _over_http(container: wiring.Container, fake: FakeSlack) -> Transport:
    client = container.web_app.test_client()
    verifier = SignatureVerifier(SIGNING_SECRET)

    def deliver(body: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        if changes:  # e.g. a trigger_id the fake issued, in place of the builder's
            kind, payload, _ = envelope_for_http_body(body)
            payload.update(changes)
            body = urlencode(payload if kind == "slash_commands" else {"payload": json.dumps(payload)})
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": verifier.generate_signature(timestamp=timestamp, body=body),
        }
        response = client.post("/slack/events", data=body, headers=headers)
        assert response.status_code == 200, response.data
        return json.loads(response.data) if response.data.strip() else None

    return Transport(deliver, fake)


def _over_socket_mode(container: wiring.Container, fake: FakeSlack) -> Transport:
    receiver = start_socket_mode(container.slack_app, container.settings.slack_app_token or "")
    socket = fake.socket_mode

    def deliver(body: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        kind, payload, accepts = envelope_for_http_body(body)
        payload.update(changes)
        envelope_id = socket.send(kind, payload, accepts_response_payload=accepts)
        ack = socket.ack(envelope_id)
        assert set(ack) <= {"envelope_id", "payload"} and ack["envelope_id"] == envelope_id
        return ack.get("payload")

    return Transport(deliver, fake, stop=receiver.stop)


@pytest.fixture(params=["http", "socket_mode"])
def transport(request, make_container, fake) -> Iterator[Transport]:
    if request.param == "http":
        yield _over_http(make_container(SLACK_APP_TOKEN=""), fake)
        return
    transport = _over_socket_mode(make_container(), fake)
    try:
        yield transport
    finally:
        transport.stop()


def _summary(fake: FakeSlack) -> list[tuple[str, str]]:
    """The Slack calls the app made, with what identifies each (not the transport's own
    apps.connections.open, nor Bolt's start-up auth.test)."""
    calls = []
    for call in fake.calls:
        if call.method in ("apps.connections.open", "auth.test"):
            continue
        what = call.args["view"].get("callback_id") if "view" in call.args else call.args.get("channel") or call.args.get("user")
        calls.append((call.method, str(what)))
    return calls


def test_the_same_listeners_answer_and_call_slack_alike_over_http_and_socket_mode(transport):
    fake, deliver = transport.fake, transport.deliver

    # /impersonate: acknowledged empty, then the request modal opens with the trigger_id
    assert deliver(slash_command("acme"), {"trigger_id": fake.issue_trigger_id()}) is None
    (opened,) = fake.calls_to("views.open")
    assert opened.ok and "acme" in json.dumps(opened.args["view"])

    # the options load: the account typeahead answers in the acknowledgement
    options = deliver(block_suggestion(ActionId.ACCOUNT_SELECT.value, "ac", block_id=BlockId.ACCOUNT.value), {})
    assert options is not None and "acme" in [o["value"] for o in options["options"]]

    # a view submission the policy refuses: the modal's errors come back in the answer
    refused = deliver(view_submission(request_state(reason="short"), callback_id=CallbackId.IMPERSONATE_REQUEST.value), {})
    assert refused is not None and refused["response_action"] == "errors" and BlockId.REASON.value in refused["errors"]

    # one it grants: an empty answer closes the modal, and the link goes by DM
    assert deliver(view_submission(request_state(), callback_id=CallbackId.IMPERSONATE_REQUEST.value), {}) is None
    # (sent after the answer, from a background thread, over either transport)
    (dm,) = wait_until(lambda: [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "UAGENT1"])
    assert dm.ok and dm.args["channel"] == "UAGENT1"
    link_in(dm.args["blocks"])

    # a button (block_actions) that opens a modal with its own trigger_id
    click = block_action(ActionId.START_NEW_REQUEST.value, "no-such-session", block_id=BlockId.SESSION_ACTIONS.value,
                         user_id="UAGENT1", channel=dm.response["channel"], message_ts=dm.response["ts"])
    assert deliver(click, {"trigger_id": fake.issue_trigger_id()}) is None

    expected = sorted([
        ("views.open", CallbackId.IMPERSONATE_REQUEST.value),
        ("chat.postMessage", "UAGENT1"),
        ("chat.postMessage", "CSECURITY1"),  # the security channel's live feed
        ("users.info", "UAGENT1"),  # the agent's e-mail and time zone, for the audit event
        ("views.open", CallbackId.IMPERSONATE_REQUEST.value),
    ])
    # the DM and the feed post go out in the background, in either order
    wait_until(lambda: sorted(_summary(fake)) == expected)
    assert sorted(_summary(fake)) == expected
    fake.assert_no_violations()


# --- Socket Mode itself ------------------------------------------------------------------------------------


def test_the_socket_url_comes_from_slack_api_url_with_the_app_token(receiver, fake):
    fake.socket_mode.wait_for_connections(1)
    (opened,) = fake.calls_to("apps.connections.open")
    assert opened.ok  # the fake checked the app-level token and its connections:write scope
    assert receiver.connected
    assert fake.socket_mode.violations == []
    fake.assert_no_violations()


def test_every_envelope_is_acknowledged_once_by_its_id(receiver, fake):
    socket = fake.socket_mode
    envelope_id = socket.send_http_body(slash_command("acme", trigger_id=fake.issue_trigger_id()))
    assert socket.ack(envelope_id) == {"envelope_id": envelope_id}
    assert fake.calls_to("views.open")[0].ok
    assert [m.get("envelope_id") for m in socket.received] == [envelope_id]
    assert socket.violations == []


def test_the_app_reconnects_when_slack_asks(receiver, fake):
    socket = fake.socket_mode
    socket.wait_for_connections(1)
    socket.ask_to_reconnect()
    socket.wait_for_connections(1, opened=2)
    assert len(fake.calls_to("apps.connections.open")) == 2  # a fresh URL, not the used one
    assert wait_until(lambda: socket.live_connections == 1)

    trigger = fake.issue_trigger_id()
    envelope_id = socket.send_http_body(slash_command("acme", trigger_id=trigger))
    assert socket.ack(envelope_id) == {"envelope_id": envelope_id}
    assert fake.calls_to("views.open")[0].args["trigger_id"] == trigger
    assert socket.violations == []


def test_stop_closes_the_connection_for_good(receiver, fake):
    socket = fake.socket_mode
    socket.wait_for_connections(1)
    receiver.stop()
    assert wait_until(lambda: socket.live_connections == 0)
    assert not receiver.connected
    receiver.stop()  # idempotent
    assert len(fake.calls_to("apps.connections.open")) == 1  # no reconnection after stop


def test_stop_lets_a_running_handler_finish_and_acknowledge(fake):
    """Shutdown drains: an envelope being handled when stop() begins is still answered."""
    started, release = threading.Event(), threading.Event()
    app = App(client=WebClient(token=fake.bot_token, base_url=fake.url), signing_secret=SIGNING_SECRET,
              process_before_response=True)

    @app.command("/impersonate")
    def slow(ack):
        started.set()
        release.wait(timeout=30)
        ack(text="done")

    receiver = start_socket_mode(app, fake.app_token)
    socket = fake.socket_mode
    envelope_id = socket.send_http_body(slash_command("acme"))
    assert started.wait(timeout=15)
    stopping = threading.Thread(target=receiver.stop)
    stopping.start()
    # release the handler only once stop() has begun (it stops taking envelopes first)
    assert wait_until(lambda: receiver._handler.client.closed)
    release.set()
    stopping.join(timeout=30)
    assert not stopping.is_alive()
    assert socket.ack(envelope_id) == {"envelope_id": envelope_id, "payload": {"text": "done"}}
    assert wait_until(lambda: socket.live_connections == 0)


def test_a_listener_error_is_still_handled_by_the_one_error_handler(receiver, fake, caplog):
    """A failing Slack call after ack(): the error handler logs the method's error code and
    the envelope is still acknowledged (as over HTTP, where Slack sees 200)."""
    socket = fake.socket_mode
    fake.fail_next("views.open", "fatal_error")
    with caplog.at_level(logging.INFO):
        envelope_id = socket.send_http_body(slash_command("acme", trigger_id=fake.issue_trigger_id()))
        assert socket.ack(envelope_id) == {"envelope_id": envelope_id}
    assert "slack slash_command /impersonate: Slack API call failed: fatal_error" in caplog.text
    assert "slack slash_command /impersonate user=UAGENT1 team=T1" in caplog.text  # the request log middleware


def test_neither_the_app_token_nor_the_socket_ticket_is_logged(make_container, fake, caplog):
    container = make_container()
    with caplog.at_level(logging.DEBUG):
        receiver = start_socket_mode(container.slack_app, fake.app_token)
        try:
            socket = fake.socket_mode
            envelope_id = socket.send_http_body(slash_command("acme", trigger_id=fake.issue_trigger_id()))
            socket.ack(envelope_id)
            socket.ask_to_reconnect()
            socket.wait_for_connections(1, opened=2)
        finally:
            receiver.stop()
    # the app's records, and the fake Web API's request log; not the fake WebSocket server's
    # own DEBUG lines (websockets.*), which print the URL it was asked for
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets"))
    assert "Socket Mode connected" in text
    assert "apps.connections.open" in text  # werkzeug logged the fake's side of the call
    for secret in (fake.app_token, *fake.socket_mode.tickets, "trigger-secret", SIGNING_SECRET):
        assert secret not in text


def test_a_websocket_that_will_not_open_is_left_to_the_client_to_retry(make_container, fake, caplog):
    container = make_container()
    fake.socket_mode.stop()  # apps.connections.open still answers, with a URL nobody serves
    with caplog.at_level(logging.INFO):
        receiver = start_socket_mode(container.slack_app, fake.app_token)
    try:
        assert not receiver.connected
        assert "the WebSocket did not open; retrying in the background" in caplog.text
    finally:
        receiver.stop()


def test_a_token_slack_refuses_stops_start_up_with_the_error(make_container, fake):
    container = make_container(SLACK_APP_TOKEN="xapp-1-A0FAKEAPP-1-revoked")
    with pytest.raises(ConfigError, match=r"refused .* SLACK_APP_TOKEN \(invalid_auth\)") as refused:
        start_socket_mode(container.slack_app, "xapp-1-A0FAKEAPP-1-revoked")
    assert "revoked" not in str(refused.value)
    assert fake.socket_mode.connections_opened == 0


def test_a_token_of_the_wrong_kind_stops_start_up_before_anything_connects(make_container, fake):
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN must be an app-level token starting with 'xapp-', but it holds a bot token") as refused:
        make_container(SLACK_APP_TOKEN="xoxb-pasted-by-mistake")
    assert "pasted-by-mistake" not in str(refused.value)
    assert fake.calls_to("apps.connections.open") == []
