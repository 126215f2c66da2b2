"""What every domain service needs, assembled once at start-up (bot/wiring.py) or by tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.keys import SigningKey
from bot.domain.policy import GroupDirectory, NoGroups, PolicyConfig
from bot.domain.ports import PeopleDirectory, StaticPeople
from bot.domain.retention import Retention

if TYPE_CHECKING:
    from bot.domain.outbox import Courier


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
