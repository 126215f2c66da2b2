"""Nothing lost, nothing doubled, when the process sending webhooks dies: real processes
(tests/jobs/outbox_child.py) against one database, SIGKILL so no cleanup runs, and a real
HTTP endpoint. A retry after a send that may have reached the endpoint carries the same
`webhook-id`, which is how the receiver (the integration kit's verifier) recognises it."""
from __future__ import annotations

import json

import pytest

from bot.domain import outbox, revocation, webhooks
from bot.domain.audit import Actor
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.jobs.test_outbox_kill import child, fake_slack, first_line, live_session, run_to_end, sigkill  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("fake_slack")


@pytest.fixture
def receiver():
    with WebhookReceiver() as endpoint:
        yield endpoint


def subscribe(ctx, url: str) -> None:
    webhooks.subscribe(ctx.sessions, url=url, event_types=["session.revoked"], actor=Actor(slack_id="UOPS1", role="cli"))


def test_a_revocation_committed_by_a_process_killed_before_it_sent_reaches_the_endpoint_once(
    db_url, ctx, live_session, fake_slack, receiver, tmp_path  # noqa: F811
):
    subscribe(ctx, receiver.url)
    key = tmp_path / "child-key.pem"
    revoker = child("revoke", db_url, fake_slack, key, live_session.id)
    assert first_line(revoker) == "committed"
    sigkill(revoker)
    assert receiver.received == [], "the killed process sent nothing"

    run_to_end("deliver", db_url, fake_slack, key)  # the scheduler's next run, in a fresh process
    (got,) = receiver.received
    event = json.loads(got.body)
    assert (event["type"], event["data"]["session_id"]) == ("session.revoked", live_session.id)

    run_to_end("deliver", db_url, fake_slack, key)
    assert len(receiver.received) == 1


def test_a_webhook_whose_sender_died_mid_post_is_sent_again_after_the_lease_under_the_same_id(
    db_url, ctx, live_session, fake_slack, receiver, tmp_path  # noqa: F811
):
    subscribe(ctx, receiver.url)
    key = tmp_path / "child-key.pem"
    assert isinstance(revocation.revoke_session(ctx, live_session.id, actor_slack_id="USECURITY1", source="command"), revocation.Revoked)
    receiver.hold.set()
    sender = child("hang-in-webhook", db_url, fake_slack, key)
    assert receiver.holding.wait(60), "the child never reached the endpoint"
    sigkill(sender)
    receiver.hold.clear()
    assert len(receiver.received) == 1  # it arrived; the answer never got back

    # Within the lease nobody sends it again (its sender might still be waiting for an answer)…
    run_to_end("deliver", db_url, fake_slack, key)
    assert len(receiver.received) == 1
    # … after it, a fresh process does: the same id and body, so the receiver can tell.
    lease = str(outbox.LEASE.total_seconds() + 5)
    run_to_end("deliver", db_url, fake_slack, key, lease)
    first, again = receiver.received
    assert first.headers["webhook-id"] == again.headers["webhook-id"] and first.body == again.body
    (row,) = outbox.rows(ctx, kinds=[outbox.Kind.WEBHOOK])
    assert (row.state, row.attempts) == ("sent", 2)
    run_to_end("deliver", db_url, fake_slack, key, lease)
    assert len(receiver.received) == 2
