"""The interfaces through which the domain reaches the outside world (DESIGN.md "Layers"), all
in this one module: who people are (PeopleDirectory, GroupDirectory), how an owed message is
sent (Courier) and how the messages one change owed are handed over for sending (Deliverer).

`bot/slack/` and `bot/webhooks/` implement them; `bot/wiring.py` injects the implementations;
tests use fakes. The domain never imports Slack code.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.domain.messages import Delivery, Outcome

__all__ = [
    "Courier",
    "Deliverer",
    "GroupDirectory",
    "NoGroups",
    "PeopleDirectory",
    "Person",
    "StaticPeople",
]


@dataclass(frozen=True)
class Person:
    """A Slack user as the domain needs them: for audit (e-mail), display (time zone) and,
    on Enterprise Grid, the one canonical id behind several (`U…`/`W…`)."""

    slack_id: str
    email: str | None = None
    tz: str | None = None
    enterprise_user_id: str | None = None
    #: False when the directory could not be asked (Slack error or timeout): the record then
    #: says nothing about the person's other ids, so it must not decide who they are.
    resolved: bool = True


class PeopleDirectory(Protocol):
    def person(self, slack_id: str) -> Person: ...


class StaticPeople:
    """A directory that knows only what it is told; unknown users get bare records."""

    def __init__(self, people: dict[str, Person] | None = None) -> None:
        self._people = dict(people or {})

    def person(self, slack_id: str) -> Person:
        return self._people.get(slack_id, Person(slack_id=slack_id))


class GroupDirectory(Protocol):
    """Resolves Slack user-group handles (`@support`) to member user ids.
    The Slack implementation (bot/slack/people.py) calls usergroups.list and
    usergroups.users.list and caches the answer for a short TTL."""

    def members_of(self, handle: str) -> frozenset[str]: ...


class NoGroups:
    def members_of(self, handle: str) -> frozenset[str]:
        return frozenset()


class Courier(Protocol):
    """Sends one claimed outbox row: renders it from the state as it is now and makes the call
    (bot.slack.courier.SlackCourier for Slack's kinds, bot.webhooks.sender.WebhookSender for
    webhooks). Must not raise for the receiver's answers; anything it raises is treated as a
    transient failure."""

    def deliver(self, delivery: Delivery) -> Outcome: ...


class Deliverer(Protocol):
    """Sends, soon, the outbox rows one committed change owed. Every domain operation that
    owes messages names their targets in its result (`Granted.targets`, `Decided.targets`,
    `Redemption.targets` …); the adapter that made the call — a Slack listener, the landing
    page, the product API — hands them here once the change has committed.

    In the running app this is bot.web.background.BackgroundDeliverer over
    bot.domain.outbox.InlineDeliverer: sent after the response, by one thread per process,
    with the outbox's claims (whoever claims a row first sends it, never both). Whatever is not
    sent — the process died, Slack failed — the scheduler's outbox job sends. Never raises."""

    def deliver(self, targets: Sequence[str]) -> None: ...
