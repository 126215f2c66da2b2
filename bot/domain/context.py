"""What every domain service needs, assembled once at start-up (bot/wiring.py) or by tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.keys import SigningKey
from bot.domain.policy import PolicyConfig
from bot.domain.ports import Courier, GroupDirectory, NoGroups, PeopleDirectory, StaticPeople

DEFAULT_OUTBOX_DAYS = 30
DEFAULT_LINK_DAYS = 90


@dataclass(frozen=True)
class Retention:
    """How long operational rows are kept (RETENTION_OUTBOX_DAYS, RETENTION_LINK_DAYS); the
    job that applies it is bot/domain/retention.py."""

    #: finished outbox rows (sent, skipped, merged, failed), counted from when they finished;
    #: webhook events, counted from when they were raised, once none is still owed
    outbox: timedelta = timedelta(days=DEFAULT_OUTBOX_DAYS)
    #: one-time links, counted from their expiry
    links: timedelta = timedelta(days=DEFAULT_LINK_DAYS)


@dataclass
class DomainContext:
    sessions: sessionmaker[Session]
    policy: PolicyConfig
    signing_key: SigningKey
    public_base_url: str
    product_launch_url: str | None
    groups: GroupDirectory = field(default_factory=NoGroups)
    people: PeopleDirectory = field(default_factory=StaticPeople)
    #: sends the outbox's rows for the scheduler (bot.slack.courier.SlackCourier); None where
    #: no Slack is configured (then rows wait in the outbox)
    courier: Courier | None = None
    #: sends the outbox's notification webhooks (bot.webhooks.sender.WebhookSender); None in a
    #: process that does not send them (then they wait for one that does)
    webhook_sender: Courier | None = None
    #: where signed audit checkpoints are appended (AUDIT_CHECKPOINT_FILE); None: Slack only
    checkpoint_file: Path | None = None
    #: how long operational rows are kept (RETENTION_OUTBOX_DAYS, RETENTION_LINK_DAYS)
    retention: Retention = field(default_factory=Retention)

    @property
    def issuer(self) -> str:
        return self.public_base_url
