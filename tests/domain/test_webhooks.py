"""Notification webhooks' domain side (bot/domain/webhooks.py): who may subscribe to what, and
that each change raises its event in its own transaction — to every matching subscription,
to nobody else, with the body fixed at the time — and that the outbox routes webhook rows to
the webhook sender with the webhook retry schedule."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent, WebhookEvent
from bot.domain import approvals, links, outbox, requests, revocation, sessions, watch, webhooks
from bot.domain.audit import Actor
from bot.domain.outbox import Delivered, Kind, Permanent, Transient
from bot.domain.requests import AgentIdentity, RequestForm
from bot.domain.webhooks import EventType, WebhookConfigError
from tests.fakes.courier import FakeCourier
from tests.fakes.directory_data import load_directory

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
OPERATOR = Actor(email="ops@corp.example", role="cli")
REASON = "customer ticket about billing"


def form(account="acme", user="u-bob", **kw) -> RequestForm:
    return RequestForm(**{"account": account, "user": user, "reason": REASON, "ticket": "SUP-1", "duration_minutes": 30, "scope": "read_only", **kw})


def subscribe(ctx, url="https://hooks.example.com/impersonation", **kw) -> webhooks.Subscribed:
    return webhooks.subscribe(ctx.sessions, url=url, actor=OPERATOR, now=T0, **kw)


def events(ctx) -> list[dict]:
    with ctx.sessions() as db:
        return [json.loads(e.body) for e in db.execute(select(WebhookEvent).order_by(WebhookEvent.created_at, WebhookEvent.id)).scalars()]


def owed(ctx) -> list[tuple[str, str]]:
    """(event type, subscription id) of every webhook row in the outbox."""
    with ctx.sessions() as db:
        types = dict(db.execute(select(WebhookEvent.id, WebhookEvent.type)).all())
    return [(types[r.subject_id], r.recipient) for r in outbox.rows(ctx, kinds=[Kind.WEBHOOK])]


def audit_of(ctx, event_type: str) -> list[AuditEvent]:
    with ctx.sessions() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == event_type).order_by(AuditEvent.seq)).scalars())


@pytest.fixture
def directory(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "umbrella": ["opted_out"]})
    return ctx


def live_session(ctx, account="acme", user="u-bob"):
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form(account, user))
    assert isinstance(granted, requests.Granted), granted
    return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session


# ---------------------------------------------------------------------------- subscriptions


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://hooks.example.com/x", True),
        ("https://hooks.example.com:8443/x?tenant=7", True),
        ("http://127.0.0.1:8000/hooks", True),
        ("http://localhost/hooks", True),
        ("http://[::1]:9000/hooks", True),
        ("http://hooks.example.com/x", False),  # plain http off this machine
        ("http://10.0.0.5/x", False),
        ("https://user:pass@hooks.example.com/x", False),  # credentials in the URL
        ("ftp://hooks.example.com/x", False),
        ("javascript:alert(1)", False),
        ("https:///nohost", False),
        ("", False),
        ("https://hooks.example.com/" + "a" * webhooks.URL_MAX_LENGTH, False),
    ],
)
def test_an_endpoint_must_be_https_or_this_machine_and_carry_no_credentials(url, accepted):
    if accepted:
        assert webhooks.checked_url(url) == url
    else:
        with pytest.raises(WebhookConfigError):
            webhooks.checked_url(url)


def test_event_types_default_to_all_and_unknown_ones_are_refused():
    assert webhooks.checked_event_types(None) == tuple(t.value for t in EventType)
    assert webhooks.checked_event_types(["session.revoked", " session.started "]) == ("session.started", "session.revoked")
    with pytest.raises(WebhookConfigError, match="session.hijacked"):
        webhooks.checked_event_types(["session.started", "session.hijacked"])


def test_a_subscription_gets_a_fresh_secret_shown_once_and_is_audited_without_it(ctx):
    made = subscribe(ctx, url="https://hooks.example.com/in?token=abc", event_types=["session.revoked"], account="acme", description="ACME's SIEM")
    other = subscribe(ctx)
    assert made.secret.startswith("whsec_") and made.secret != other.secret
    assert len(base64.b64decode(made.secret.removeprefix("whsec_"), validate=True)) == webhooks.SECRET_BYTES
    assert made.secret not in repr(made)
    (event, _) = audit_of(ctx, "webhook.subscribed")
    details = json.loads(event.details)
    # the query string may carry a token: the audit log keeps only where it points
    assert details == {"subscription": made.id, "url": "https://hooks.example.com/in", "events": ["session.revoked"], "description": "ACME's SIEM"}
    assert (event.account, event.actor_email) == ("acme", "ops@corp.example")
    assert made.secret not in event.details
    listed = {s.id: s for s in webhooks.subscriptions(ctx.sessions)}[made.id]
    assert (listed.id, listed.event_types, listed.account, listed.created_by) == (made.id, ("session.revoked",), "acme", "ops@corp.example")


def test_a_removed_subscription_is_audited_listed_only_on_request_and_gets_nothing_more(directory):
    ctx = directory
    made = subscribe(ctx)
    assert webhooks.remove(ctx.sessions, made.id, actor=OPERATOR) is True
    assert webhooks.remove(ctx.sessions, made.id, actor=OPERATOR) is False
    assert len(audit_of(ctx, "webhook.removed")) == 1
    assert webhooks.subscriptions(ctx.sessions) == []
    assert [s.id for s in webhooks.subscriptions(ctx.sessions, include_removed=True)] == [made.id]
    live_session(ctx)
    assert owed(ctx) == [] and events(ctx) == []


# ---------------------------------------------------------------------------- raising


def test_no_subscriber_no_event_stored(directory):
    live_session(directory)
    assert events(directory) == [] and owed(directory) == []


def test_each_event_goes_to_every_subscription_that_wants_it_for_that_account_only(directory):
    ctx = directory
    everything = subscribe(ctx).id
    revocations = subscribe(ctx, event_types=["session.revoked"]).id
    acme = subscribe(ctx, account="acme").id
    globex = subscribe(ctx, account="globex").id
    session = live_session(ctx)
    assert owed(ctx) == [("session.started", everything), ("session.started", acme)]
    revocation.revoke_session(ctx, session.id, actor_slack_id="USECURITY1", source="command")
    assert sorted(owed(ctx)[2:]) == sorted([("session.revoked", everything), ("session.revoked", revocations), ("session.revoked", acme)])
    assert globex not in {recipient for _, recipient in owed(ctx)}
    # one stored body per event, however many subscriptions it is owed to
    assert [e["type"] for e in events(ctx)] == ["session.started", "session.revoked"]


@freeze_time(T0)
def test_session_events_say_who_what_and_when(directory):
    ctx = directory
    subscribe(ctx)
    session = live_session(ctx)
    started = events(ctx)[0]
    assert started == {
        "type": "session.started",
        "timestamp": "2030-01-07T09:00:00.000000Z",
        "data": {
            "session_id": session.id,
            "request_id": session.request.id,
            "account": "acme",
            "customer_user": "u-bob",
            "agent": "agent1@corp.example",
            "scope": "read_only",
            "reason": REASON,
            "ticket": "SUP-1",
            "started_at": "2030-01-07T09:00:00.000000Z",
            "expires_at": "2030-01-07T09:30:00.000000Z",
        },
    }
    with freeze_time(T0 + timedelta(minutes=10)):
        sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")
    ended = events(ctx)[1]
    assert ended["type"] == "session.ended"
    assert {k: ended["data"][k] for k in ("session_id", "end_reason", "ended_by", "ended_at")} == {
        "session_id": session.id, "end_reason": "ended", "ended_by": "agent1@corp.example", "ended_at": "2030-01-07T09:10:00.000000Z",
    }


def test_an_expiry_is_a_session_ended_event_at_the_sessions_end(directory):
    ctx = directory
    subscribe(ctx)
    session = live_session(ctx)
    assert watch.expire_sessions(ctx, now=session.expires_at + timedelta(minutes=3)) == 1
    ended = events(ctx)[1]
    assert (ended["type"], ended["data"]["end_reason"], ended["data"]["ended_by"]) == ("session.ended", "expired", "clock")
    assert ended["data"]["ended_at"] == session.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_revocation_is_a_session_revoked_event(directory):
    ctx = directory
    subscribe(ctx)
    session = live_session(ctx)
    revocation.revoke_session(ctx, session.id, actor_slack_id="USECURITY1", source="command")
    revoked = events(ctx)[1]
    assert (revoked["type"], revoked["data"]["end_reason"], revoked["data"]["ended_by"]) == ("session.revoked", "revoked", "USECURITY1")


def test_an_approvers_denial_is_a_request_denied_event(directory):
    ctx = directory
    subscribe(ctx)
    pending = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form("globex", "u-carol"))
    assert isinstance(pending, requests.Pending)
    assert events(ctx) == []  # asking is not news to the customer; the outcome is
    approvals.deny_request(ctx, pending.request.id, clicker_slack_id="UMANAGER1", reason="not justified by ticket")
    (denied,) = events(ctx)
    assert denied["type"] == "request.denied"
    assert denied["data"] == {
        "request_id": pending.request.id, "account": "globex", "customer_user": "u-carol",
        "agent": "agent1@corp.example", "denied_by": "approver", "cause": None,
    }


def test_a_policy_refusal_that_protects_the_customer_is_told_and_a_typo_is_not(directory):
    ctx = directory
    subscribe(ctx)
    assert isinstance(requests.submit_request(ctx, AgentIdentity("UAGENT1"), form("acme", reason="short")), requests.Blocked)
    assert events(ctx) == []
    blocked = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form("umbrella", "u-eve"))
    assert isinstance(blocked, requests.Blocked) and blocked.cause.value == "opted_out"
    (denied,) = events(ctx)
    assert (denied["type"], denied["data"]["denied_by"], denied["data"]["cause"], denied["data"]["request_id"]) == ("request.denied", "policy", "opted_out", None)


def test_the_event_commits_with_its_change_or_not_at_all(directory):
    ctx = directory
    subscribe(ctx)
    with pytest.raises(RuntimeError), ctx.sessions() as db, db.begin():
        webhooks.raise_event(db, EventType.SESSION_STARTED, account="acme", data={"session_id": "s-1"}, now=T0)
        raise RuntimeError("the change failed")
    assert events(ctx) == [] and owed(ctx) == []


# ---------------------------------------------------------------------------- the outbox


def owe_one(ctx) -> str:
    sub = subscribe(ctx).id
    with ctx.sessions() as db, db.begin():
        webhooks.raise_event(db, EventType.SESSION_STARTED, account="acme", data={"session_id": "s-1"}, now=T0)
    return sub


def test_webhook_rows_wait_for_a_process_that_can_send_them(ctx):
    owe_one(ctx)
    slack = FakeCourier()
    assert outbox.deliver_due(ctx, slack, now=T0).attempted == 0
    assert slack.deliveries == [] and [r.state for r in outbox.rows(ctx)] == ["pending"]
    ctx.webhook_sender = FakeCourier([Delivered(204)])
    report = outbox.deliver_due(ctx, slack, now=T0)
    assert report.sent == 1 and slack.deliveries == []
    (row,) = outbox.rows(ctx)
    assert (row.state, row.attempts) == ("sent", 1)


def test_a_failing_endpoint_is_retried_on_the_webhook_schedule_then_audited(ctx):
    sub = owe_one(ctx)
    attempts = len(outbox.WEBHOOK_RETRY_DELAYS) + 1
    ctx.webhook_sender = sender = FakeCourier([Transient("http_503")] * attempts)
    now = T0
    for n in range(attempts):
        assert outbox.deliver_due(ctx, FakeCourier(), now=now).attempted == 1
        (row,) = outbox.rows(ctx)
        if n < attempts - 1:
            wait = row.due_at - now
            # the schedule's step, stretched by at most a tenth
            assert outbox.WEBHOOK_RETRY_DELAYS[n] <= wait <= outbox.WEBHOOK_RETRY_DELAYS[n] * 1.1
            assert outbox.deliver_due(ctx, FakeCourier(), now=row.due_at - timedelta(seconds=1)).attempted == 0
            now = row.due_at
    assert (row.state, row.attempts, row.last_error) == ("failed", attempts, "http_503")
    assert len(sender.deliveries) == attempts
    assert {d.subject_id for d in sender.deliveries} == {row.subject_id}
    (failed,) = audit_of(ctx, "notify.failed")
    details = json.loads(failed.details)
    assert (details["kind"], details["recipient"], details["error"], details["attempts"]) == ("webhook", sub, "http_503", attempts)


def test_a_permanent_refusal_fails_at_once_and_is_audited(ctx):
    owe_one(ctx)
    ctx.webhook_sender = FakeCourier([Permanent("http_410_gone")])
    outbox.deliver_due(ctx, FakeCourier(), now=T0)
    (row,) = outbox.rows(ctx)
    assert (row.state, row.attempts) == ("failed", 1)
    assert len(audit_of(ctx, "notify.failed")) == 1
