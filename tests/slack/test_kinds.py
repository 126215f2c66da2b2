"""bot/slack/kinds.py: every kind of outbox row is registered exactly once, and the one kind
that is not Slack's is sent by its own sender, never by the Slack courier."""
from __future__ import annotations

from collections import Counter

import pytest

from bot.domain import outbox
from bot.domain.messages import Delivery, Kind, Permanent
from bot.slack.courier import SlackCourier
from bot.slack.kinds import KINDS, REGISTRATIONS, NotSlack, Post, one_each
from tests.fakes.courier import FakeCourier


def test_every_kind_has_exactly_one_registration():
    assert Counter(kind for kind, _ in REGISTRATIONS) == Counter(set(Kind))
    assert set(KINDS) == set(Kind)


def test_a_kind_left_out_or_registered_twice_is_refused():
    # Guard: the check the module runs at import can fail.
    post = Post(load=lambda row: None, build=lambda state: None)
    with pytest.raises(ValueError, match="registered twice"):
        one_each([*REGISTRATIONS, (Kind.FEED, post)])
    with pytest.raises(ValueError, match="without a registration: feed"):
        one_each([(kind, registration) for kind, registration in REGISTRATIONS if kind is not Kind.FEED])


def test_only_webhooks_are_not_slack_s_and_the_slack_courier_refuses_them(ctx, slack_client):
    assert [kind for kind, registration in KINDS.items() if isinstance(registration, NotSlack)] == [Kind.WEBHOOK]
    outcome = SlackCourier(ctx, slack_client).deliver(Delivery(1, Kind.WEBHOOK, "event-1", "subscription-1", 1, "t"))
    assert outcome == Permanent("not_a_slack_kind")
    assert slack_client.calls == []


def test_the_outbox_hands_webhook_rows_to_the_webhook_sender_and_the_rest_to_the_courier(ctx):
    with ctx.sessions() as db, db.begin():
        outbox.enqueue(db, Kind.WEBHOOK, "event-1", recipient="subscription-1")
        outbox.enqueue(db, Kind.CHECKPOINT, "7")
    courier, sender = FakeCourier(), FakeCourier()
    ctx.webhook_sender = sender
    outbox.deliver_due(ctx, courier)
    assert [d.kind for d in sender.deliveries] == [Kind.WEBHOOK]
    assert [d.kind for d in courier.deliveries] == [Kind.CHECKPOINT]


def test_a_row_that_can_never_be_shown_fails_for_good(ctx, slack_client):
    # a digest row naming a period the policy cannot read: failed and audited, not retried
    outcome = SlackCourier(ctx, slack_client).deliver(Delivery(1, Kind.DIGEST, "no-such-period", "CSECURITY1", 1, "t"))
    assert outcome == Permanent("unknown_period")
    assert slack_client.calls == []

