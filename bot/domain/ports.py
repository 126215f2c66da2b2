"""The small interfaces through which the domain reaches the outside world (DESIGN.md "Layers").

`bot/slack/` implements them over the Slack Web API; tests use fakes. The domain never
imports Slack code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.domain.policy import GroupDirectory, NoGroups  # re-exported: one home for ports

__all__ = ["GroupDirectory", "NoGroups", "Person", "PeopleDirectory", "StaticPeople", "SessionNotifier"]


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


class SessionNotifier(Protocol):
    """Tells the agent about their session outside a Slack interaction (e.g. after the link
    is redeemed in the browser): the agent's DM is edited in place."""

    def session_started(self, session_id: str) -> None: ...
