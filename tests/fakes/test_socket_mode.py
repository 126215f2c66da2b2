"""Tests of the fake Socket Mode server itself (tests/fakes/socket_mode.py), driven by a plain
WebSocket client: tickets, hello, envelopes, acknowledgements and their contract checks."""
from __future__ import annotations

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.fakes.socket_mode import FakeSocketMode, envelope_for_http_body
from tests.slack.signed import block_action, block_suggestion, slash_command, view_submission


@pytest.fixture
def server():
    server = FakeSocketMode(app_id="A0TEST").start()
    yield server
    server.stop()


def test_a_ticket_admits_one_connection_which_is_greeted(server):
    url = server.issue_url()
    with connect(url) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": "A0TEST"}
        server.wait_for_connections(1)
        with pytest.raises(InvalidStatus) as refused:
            connect(url)
        assert refused.value.response.status_code == 401
    assert server.violations == ["connection with a used ticket"]


def test_an_unknown_ticket_is_refused(server):
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{server.port}/link/?ticket=made-up")
    assert server.violations == ["connection with an unknown ticket"]


def test_envelopes_are_delivered_and_acknowledgements_recorded(server):
    with connect(server.issue_url()) as ws:
        ws.recv(timeout=10)  # hello
        envelope_id = server.send("slash_commands", {"command": "/impersonate"}, accepts_response_payload=True)
        delivered = json.loads(ws.recv(timeout=10))
        assert delivered == {"envelope_id": envelope_id, "type": "slash_commands",
                             "payload": {"command": "/impersonate"}, "accepts_response_payload": True}
        ws.send(json.dumps({"envelope_id": envelope_id, "payload": {"text": "ok"}}))
        assert server.ack(envelope_id) == {"envelope_id": envelope_id, "payload": {"text": "ok"}}
    assert server.violations == []


def test_acknowledgement_breaches_are_violations(server):
    with connect(server.issue_url()) as ws:
        ws.recv(timeout=10)
        clicked = server.send("interactive", {"type": "block_actions"}, accepts_response_payload=False)
        ws.recv(timeout=10)
        ws.send(json.dumps({"envelope_id": clicked, "payload": {"text": "not allowed"}}))
        ws.send(json.dumps({"envelope_id": clicked}))
        ws.send(json.dumps({"envelope_id": "never-sent"}))
        # one connection's messages are handled in order: once this one is in, so are those
        last = server.send("interactive", {"type": "block_actions"}, accepts_response_payload=False)
        ws.recv(timeout=10)
        ws.send(json.dumps({"envelope_id": last}))
        server.ack(last)
        server.ask_to_reconnect()
        assert json.loads(ws.recv(timeout=10))["type"] == "disconnect"
    assert len(server.violations) == 3, server.violations


def test_http_bodies_become_the_envelopes_slack_sends_instead():
    assert envelope_for_http_body(slash_command("acme"))[0::2] == ("slash_commands", True)
    assert envelope_for_http_body(slash_command("acme"))[1]["text"] == "acme"
    kind, payload, accepts = envelope_for_http_body(block_action("end_session", "s1", block_id="b", user_id="U1"))
    assert (kind, payload["type"], accepts) == ("interactive", "block_actions", False)
    assert envelope_for_http_body(view_submission({}, callback_id="c"))[2] is True
    assert envelope_for_http_body(block_suggestion("a", "ac", block_id="b"))[2] is True
