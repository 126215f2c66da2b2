"""Each request Slack delivers acts once.

A signed request stays valid for Slack's 5-minute window ("Verifying requests from Slack":
reject a timestamp more than five minutes from the local clock), so whoever captured one (a
proxy log, a browser extension on a laptop that relays it) could send it again and act twice,
and Slack itself re-sends Events API deliveries it thinks failed (`X-Slack-Retry-Num`, the
same `event_id`). The first delivery of a key is recorded before any listener runs; a later
one is acknowledged and does nothing.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update

from bot.db.base import affected_rows
from bot.db.models import SlackDelivery
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.once import insert_once

log = logging.getLogger(__name__)

#: Slack's verification accepts timestamps up to 5 minutes before or after the clock, so a
#: request can verify until 10 minutes after it arrived; kept a minute longer for clock skew
#: between web processes.
KEEP_FOR = timedelta(minutes=11)


@dataclass(frozen=True)
class Delivery:
    """What identifies one delivery, and what the audit log may say about a replay of it
    (all of it from the verified body, cut to the columns' sizes)."""

    key: str
    kind: str
    route: str
    user: str | None
    team: str | None
    #: Slack itself re-sent it (a retry is expected and not a refusal)
    retry: bool = False


def delivery_key(identity: str) -> str:
    """The stored key: SHA-256 of the signature or event id (never the raw value)."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def first_delivery(ctx: DomainContext, delivery: Delivery, *, now: datetime | None = None) -> bool:
    """True for the first delivery of its key (the request goes on to its listener); False
    for a replay, which changes nothing but a counter — and, the first time a request is
    replayed by someone other than Slack's retry logic, one `slack.replay_refused` event.
    A flood of replays of one request therefore writes one audit event, not one each."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        if insert_once(db, SlackDelivery, {"key": delivery.key, "received_at": now, "replays": 0}):
            return True
        replays = db.execute(
            update(SlackDelivery)
            .where(SlackDelivery.key == delivery.key)
            .values(replays=SlackDelivery.replays + 1)
            .returning(SlackDelivery.replays)
        ).scalar_one_or_none()
        if delivery.retry:
            log.info("slack %s %s: Slack's retry of a delivery already handled; ignored", delivery.kind, delivery.route)
        elif replays == 1:
            audit.append(
                db,
                EventDraft(
                    type="slack.replay_refused",
                    actor=Actor(slack_id=delivery.user, role="slack"),
                    details={"kind": delivery.kind, "route": delivery.route, "team": delivery.team},
                ),
                now=now,
            )
        return False


def prune(ctx: DomainContext, *, now: datetime | None = None) -> int:
    """Forget deliveries no replay of which can pass verification any more."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        return affected_rows(db, delete(SlackDelivery).where(SlackDelivery.received_at < now - KEEP_FOR))
