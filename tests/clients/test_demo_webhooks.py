"""The demo product's webhook receiver: signed notifications become "support accessed your
account" notices for that account's customers only; a session.revoked ends the session at once;
forged and tampered deliveries are refused and change nothing; a replayed one is acknowledged
and changes nothing."""
from __future__ import annotations

import base64
import json
import secrets
import time

import pytest

from examples.demo_product.app import create_app
from impersonation_kit.webhooks import sign
from tests.clients.conftest import PRODUCT
from tests.clients.test_session import impersonate, sign_in

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
HOOK = "/impersonation/webhooks"


@pytest.fixture
def demo_wh(demo_config):
    app = create_app({**demo_config, "WEBHOOK_SECRET": SECRET})
    app.testing = True
    yield app
    app.extensions["impersonation_kit"].reporter.close()


def deliver(client, event: dict, *, secret: str = SECRET, msg_id: str | None = None, body: bytes | None = None):
    raw = json.dumps(event).encode()
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    ts = int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, raw),
               "Content-Type": "application/json"}
    return client.post(HOOK, data=raw if body is None else body, headers=headers, base_url=PRODUCT)


def started(account: str = "acme", sid: str = "s-1") -> dict:
    return {"type": "session.started", "timestamp": "2026-01-01T00:00:00Z",
            "data": {"session_id": sid, "account": account, "agent": "Sam Support", "scope": "read_only"}}


def notices(client) -> str:
    return client.get("/support-access", base_url=PRODUCT).get_data(as_text=True)


def test_a_signed_notification_shows_to_that_accounts_customers_only(demo_wh):
    assert deliver(demo_wh.test_client(), started("acme", "sess-acme-1")).status_code == 204
    alice = demo_wh.test_client()
    sign_in(alice, "alice@acme.example")
    page = notices(alice)
    assert "Support started a session in your account: Sam Support" in page and "sess-acme-1" in page
    carol = demo_wh.test_client()
    sign_in(carol, "carol@globex.example")
    assert "sess-acme-1" not in notices(carol) and "has not accessed your account" in notices(carol)


def test_forged_and_tampered_deliveries_are_refused_and_a_replay_is_acknowledged_once(demo_wh):
    client = demo_wh.test_client()
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    assert deliver(client, started(sid="forged"), secret=other).status_code == 400
    assert deliver(client, started(sid="tampered"), body=json.dumps(started(sid="tampered-2")).encode()).status_code == 400
    assert client.post(HOOK, json=started(sid="unsigned"), base_url=PRODUCT).status_code == 400
    assert deliver(client, started(sid="once"), msg_id="msg_once").status_code == 204
    # a second delivery under the same id (the bot's retry after a lost answer, or a replay)
    # is acknowledged — else the bot retries it for a day — and recorded once
    replay = deliver(client, started(sid="once"), msg_id="msg_once")
    assert replay.status_code == 204
    alice = demo_wh.test_client()
    sign_in(alice, "alice@acme.example")
    page = notices(alice)
    assert page.count("session once") == 1
    assert not any(s in page for s in ("forged", "tampered", "unsigned"))


def test_a_revoked_webhook_ends_the_product_session_at_once(demo_wh, handoff):
    sid, agent, _ = impersonate(demo_wh, handoff)
    assert agent.get("/", base_url=PRODUCT).status_code == 200
    event = {"type": "session.revoked", "data": {"session_id": sid, "account": "acme", "agent": "Sam"}}
    assert deliver(demo_wh.test_client(), event).status_code == 204
    assert agent.get("/", base_url=PRODUCT).status_code == 403


def test_without_a_secret_there_is_no_receiver(demo):
    assert demo.test_client().post(HOOK, json=started(), base_url=PRODUCT).status_code == 404
