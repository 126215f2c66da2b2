"""The webhook sender (bot/webhooks/sender.py) over real HTTP to a local endpoint: each
delivery is signed per Standard Webhooks so that the integration kit's verifier (and the
spec's published example) accept it; a retry resends the same bytes under the same id; 410
removes the subscription; redirects are never followed."""
from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone

import pytest
from impersonation_kit.webhooks import WebhookVerifier
from impersonation_kit.webhooks import sign as kit_sign
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain import outbox, webhooks
from bot.domain.audit import Actor
from bot.domain.webhooks import EventType
from bot.webhooks.sender import WebhookSender, signature
from tests.fakes.courier import FakeCourier
from tests.fakes.webhook_receiver import WebhookReceiver

T0 = datetime(2026, 1, 7, 9, 0, tzinfo=timezone.utc)  # before any run of these tests: rows are due
OPERATOR = Actor(email="ops@corp.example", role="cli")

# The Standard Webhooks spec's published example (also checked against the kit's verifier in
# tests/clients/test_webhooks.py).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_specs_and_the_kits():
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    secret = webhooks.new_secret()
    assert signature(secret, "msg_1", 1_900_000_000, b'{"a":"\xc3\xa9"}') == kit_sign(secret, "msg_1", 1_900_000_000, b'{"a":"\xc3\xa9"}')


@pytest.fixture
def receiver():
    with WebhookReceiver() as endpoint:
        yield endpoint


def owe(ctx, url: str, *, data: dict | None = None) -> webhooks.Subscribed:
    made = webhooks.subscribe(ctx.sessions, url=url, actor=OPERATOR, now=T0)
    with ctx.sessions() as db, db.begin():
        webhooks.raise_event(db, EventType.SESSION_REVOKED, account="acme", data=data or {"session_id": "s-1", "account": "acme", "note": "é <b>"}, now=T0)
    return made


def deliver(ctx, *, now: datetime) -> outbox.DeliveryReport:
    ctx.webhook_sender = WebhookSender(ctx, clock=lambda: now, timeout=5)
    return outbox.deliver_due(ctx, FakeCourier(), now=now)


def test_a_delivery_verifies_with_the_kit_and_carries_the_stored_body(ctx, receiver):
    made = owe(ctx, receiver.url)
    now = datetime.now(timezone.utc)
    assert deliver(ctx, now=now).sent == 1
    (got,) = receiver.received
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-timestamp"] == str(int(now.timestamp()))
    event = WebhookVerifier(made.secret).verify(got.headers, got.body, now=now.timestamp())
    assert event["type"] == "session.revoked" and event["data"]["note"] == "é <b>"
    assert event["timestamp"] == "2026-01-07T09:00:00.000000Z"
    (row,) = outbox.rows(ctx)
    assert got.headers["webhook-id"] == row.subject_id and row.state == "sent"
    # a verifier with another secret refuses it
    with pytest.raises(Exception, match="bad_signature"):
        WebhookVerifier(webhooks.new_secret()).verify(got.headers, got.body, now=now.timestamp())


def test_a_server_error_is_retried_with_the_same_id_and_bytes_and_a_fresh_signature(ctx):
    with WebhookReceiver([503]) as receiver:
        made = owe(ctx, receiver.url)
        first = datetime.now(timezone.utc)
        report = deliver(ctx, now=first)
        assert (report.sent, report.retried) == (0, 1)
        (row,) = outbox.rows(ctx)
        assert (row.state, row.last_error) == ("pending", "http_503")
        later = row.due_at + timedelta(seconds=1)
        assert deliver(ctx, now=later).sent == 1
    one, two = receiver.received
    assert one.headers["webhook-id"] == two.headers["webhook-id"] and one.body == two.body
    assert one.headers["webhook-timestamp"] != two.headers["webhook-timestamp"]
    assert one.headers["webhook-signature"] != two.headers["webhook-signature"]
    WebhookVerifier(made.secret).verify(two.headers, two.body, now=later.timestamp())


def test_410_gone_removes_the_subscription_and_fails_the_row_audited(ctx):
    with WebhookReceiver([410]) as receiver:
        made = owe(ctx, receiver.url)
        report = deliver(ctx, now=datetime.now(timezone.utc))
    assert report.failed == 1
    assert webhooks.subscriptions(ctx.sessions) == []
    with ctx.sessions() as db:
        types = [e.type for e in db.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()]
    assert types[-2:] == ["webhook.removed", "notify.failed"]
    # later events are not owed to it
    with ctx.sessions() as db, db.begin():
        assert webhooks.raise_event(db, EventType.SESSION_STARTED, account="acme", data={}, now=T0) is None
    assert made.id  # it existed


def test_a_redirect_is_not_followed(ctx):
    with WebhookReceiver([302]) as receiver:
        owe(ctx, receiver.url)
        report = deliver(ctx, now=datetime.now(timezone.utc))
    assert report.retried == 1
    assert [r.path for r in receiver.received] == ["/hooks"]  # never /elsewhere
    (row,) = outbox.rows(ctx)
    assert row.last_error == "http_302"


def test_an_unreachable_endpoint_is_retried(ctx):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    owe(ctx, f"http://127.0.0.1:{port}/hooks")
    report = deliver(ctx, now=datetime.now(timezone.utc))
    assert report.retried == 1
    (row,) = outbox.rows(ctx)
    assert row.state == "pending" and row.last_error


def test_a_subscription_removed_while_owed_is_skipped(ctx, receiver):
    made = owe(ctx, receiver.url)
    webhooks.remove(ctx.sessions, made.id, actor=OPERATOR)
    report = deliver(ctx, now=datetime.now(timezone.utc))
    assert report.skipped == 1 and receiver.received == []


def test_the_secret_never_reaches_the_log(ctx, caplog):
    with WebhookReceiver([500]) as receiver:
        made = owe(ctx, receiver.url)
        with caplog.at_level("DEBUG"):
            deliver(ctx, now=datetime.now(timezone.utc))
    assert caplog.records
    assert made.secret not in caplog.text and made.secret.removeprefix("whsec_") not in caplog.text
    assert json.dumps(made.secret) not in caplog.text
