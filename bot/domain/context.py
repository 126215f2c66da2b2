"""What every domain service needs, assembled once at start-up (bot/wiring.py) or by tests."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.keys import SigningKey
from bot.domain.policy import GroupDirectory, NoGroups, PolicyConfig
from bot.domain.ports import PeopleDirectory, StaticPeople


@dataclass
class DomainContext:
    sessions: sessionmaker[Session]
    policy: PolicyConfig
    signing_key: SigningKey
    public_base_url: str
    product_launch_url: str | None
    groups: GroupDirectory = field(default_factory=NoGroups)
    people: PeopleDirectory = field(default_factory=StaticPeople)

    @property
    def issuer(self) -> str:
        return self.public_base_url
