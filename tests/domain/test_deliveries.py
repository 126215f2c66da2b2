"""bot/domain/deliveries.py: the first delivery of a key acts, replays are counted, one refusal
is audited per replayed request, and keys are forgotten once no replay can verify."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent, SlackDelivery
from bot.domain import deliveries
from bot.domain.deliveries import Delivery

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


def _delivery(identity: str = "signature:v0=abc", **kw) -> Delivery:
    return Delivery(key=deliveries.delivery_key(identity), kind="block_actions", route="approve_request", user="UMANAGER1", team="T1", **kw)


def test_the_key_is_a_digest_never_the_signature():
    key = deliveries.delivery_key("signature:v0=abc")
    assert len(key) == 64 and "abc" not in key


def test_first_delivery_acts_and_replays_do_not(ctx, session_factory):
    assert deliveries.first_delivery(ctx, _delivery(), now=T0) is True
    for n in range(5):
        assert deliveries.first_delivery(ctx, _delivery(), now=T0 + timedelta(seconds=n)) is False
    with session_factory() as db:
        assert db.execute(select(SlackDelivery.replays)).scalar_one() == 5
        refusals = db.execute(select(AuditEvent).where(AuditEvent.type == "slack.replay_refused")).scalars().all()
    assert len(refusals) == 1 and refusals[0].actor_slack_id == "UMANAGER1"


def test_a_retry_is_not_a_refusal(ctx, session_factory):
    assert deliveries.first_delivery(ctx, _delivery("event:Ev1"), now=T0)
    assert not deliveries.first_delivery(ctx, _delivery("event:Ev1", retry=True), now=T0)
    with session_factory() as db:
        assert db.execute(select(AuditEvent).where(AuditEvent.type == "slack.replay_refused")).first() is None


@freeze_time(T0)
def test_keys_are_pruned_only_after_no_replay_can_pass_verification(ctx, session_factory):
    deliveries.first_delivery(ctx, _delivery("signature:old"), now=T0 - deliveries.KEEP_FOR - timedelta(seconds=1))
    deliveries.first_delivery(ctx, _delivery("signature:recent"), now=T0 - timedelta(minutes=10))
    assert deliveries.prune(ctx) == 1
    with session_factory() as db:
        assert db.execute(select(SlackDelivery.key)).scalars().all() == [deliveries.delivery_key("signature:recent")]
    # Bolt accepts a timestamp up to 5 minutes either side of its clock: kept at least 10 minutes
    assert deliveries.KEEP_FOR >= timedelta(minutes=10)
