"""The web app around the link pages: Slack's endpoint, JWKS, health, error pages."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import replace
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain.handoff import ALGORITHM
from bot.web.app import MAX_REQUEST_BYTES, create_web_app
from tests.web.conftest import audit_events

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def sign(body: str, *, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    # https://api.slack.com/authentication/verifying-requests-from-slack
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


@pytest.fixture
def slack_calls():
    return []


@pytest.fixture
def slack_client(ctx, csrf_secret, slack_calls):
    def authorize(enterprise_id, team_id, user_id):
        # No Slack Web API here: the listener makes no call, so no real token is needed.
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-not-used", bot_user_id="UBOT")

    bolt = App(signing_secret=SIGNING_SECRET, authorize=authorize)

    @bolt.command("/impersonate")
    def _command(ack, command):
        slack_calls.append(command["text"])
        ack()

    return create_web_app(ctx, slack_app=bolt, csrf_secret=csrf_secret).test_client()


COMMAND = urlencode({"command": "/impersonate", "text": "acme", "user_id": "UAGENT1", "team_id": "T1", "trigger_id": "1.2.3"})


def test_slack_events_reaches_bolt_when_signed(slack_client, slack_calls):
    response = slack_client.post("/slack/events", data=COMMAND, headers={**sign(COMMAND, timestamp=int(time.time())), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert slack_calls == ["acme"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda: sign(COMMAND.replace("acme", "globex"), timestamp=int(time.time())), id="tampered-body"),
        pytest.param(lambda: sign(COMMAND, timestamp=int(time.time()) - 6 * 60), id="stale-timestamp"),
        pytest.param(lambda: {"X-Slack-Signature": sign(COMMAND, timestamp=int(time.time()))["X-Slack-Signature"]}, id="missing-timestamp"),
        pytest.param(lambda: sign(COMMAND, timestamp=int(time.time()), secret="another-secret"), id="wrong-signature"),
        pytest.param(lambda: {}, id="unsigned"),
    ],
)
def test_slack_events_refuses_bad_signatures_and_records_nothing(slack_client, slack_calls, session_factory, headers):
    before = len(audit_events(session_factory))
    response = slack_client.post("/slack/events", data=COMMAND, headers={**headers(), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 401
    assert slack_calls == []
    assert len(audit_events(session_factory)) == before


def test_slack_events_is_absent_without_a_slack_app(client):
    assert client.post("/slack/events", data=COMMAND).status_code == 404


def test_jwks_publishes_the_signing_key(ctx, client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    (key,) = response.get_json()["keys"]
    assert key == ctx.signing_key.public_jwk()
    assert key["kid"] == ctx.signing_key.kid and key["alg"] == ALGORITHM and key["kty"] == "OKP"
    assert "d" not in key  # never the private part


def test_jwks_publishes_a_rotations_new_key_and_the_retired_one_within_its_window(ctx, client, session_factory, tmp_path, policy):
    from datetime import timedelta

    from freezegun import freeze_time

    from bot.domain import keyring
    from bot.domain.audit import Actor
    from bot.domain.keys import load_or_create_signing_key

    # this process signs with ctx.signing_key; another host rotates from it to a new key
    key_file = tmp_path / "rotating.pem"
    key_file.write_bytes(ctx.signing_key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    key_file.chmod(0o600)
    done = keyring.rotate(session_factory, key_file, policy, actor=Actor(email="security@corp.example", role="cli"))
    new = load_or_create_signing_key(key_file, allow_create=False)
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert kids == [ctx.signing_key.kid, new.kid]  # the new key is published before this process signs with it
    with freeze_time(done.old_published_until + timedelta(seconds=1)):
        kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert kids == [ctx.signing_key.kid, new.kid]  # a process is never without its own key


def test_healthz_queries_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"ok": True}


def test_healthz_reports_an_unreachable_database(ctx, csrf_secret, caplog):
    def no_database():
        raise ConnectionError("database down")

    client = create_web_app(replace(ctx, sessions=no_database), csrf_secret=csrf_secret).test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get("/healthz")
    assert response.status_code == 503 and response.get_json() == {"ok": False}


def test_error_pages_never_echo_the_request(client):
    response = client.get("/nothing-here/<script>alert(1)</script>?q=secret-value")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "nothing-here" not in body and "secret-value" not in body and "<script>alert" not in body
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_an_unhandled_error_on_a_link_shows_a_generic_page(ctx, csrf_secret, token):
    def no_database():
        raise ConnectionError("database down")

    client = create_web_app(replace(ctx, sessions=no_database), csrf_secret=csrf_secret).test_client()
    response = client.get(f"/l/{token}")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert token not in body and "database down" not in body
    assert response.headers["Cache-Control"] == "no-store"


def test_oversized_bodies_are_refused_before_parsing(client, token):
    response = client.post(f"/l/{token}", data={"csrf": "x" * (MAX_REQUEST_BYTES + 1)})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("peer", "forwarded", "audited"),
    [
        pytest.param("127.0.0.1", "198.51.100.7", "198.51.100.7", id="front-door-on-loopback"),
        pytest.param("::1", "2001:db8::7", "2001:db8::7", id="front-door-on-ipv6-loopback"),
        pytest.param("203.0.113.5", "198.51.100.7", "203.0.113.5", id="anyone-else-is-not-believed"),
        pytest.param("127.0.0.1", None, "127.0.0.1", id="no-header"),
    ],
)
def test_the_client_address_comes_from_the_front_door_only(client, session_factory, peer, forwarded, audited):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    response = client.post("/l/" + "x" * 43, headers=headers, environ_base={"REMOTE_ADDR": peer})
    assert response.status_code == 403
    with session_factory() as db:
        event = db.execute(select(AuditEvent).order_by(AuditEvent.seq.desc())).scalars().first()
    assert event.type == "link.csrf_refused" and json.loads(event.details)["ip"] == audited
