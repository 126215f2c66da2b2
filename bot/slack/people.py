"""Who someone is in Slack, for the domain's ports (bot.domain.ports).

`SlackPeople` answers PeopleDirectory from `users.info` (e-mail for the audit log, time zone
for messages, the Enterprise Grid user id); `SlackGroups` answers GroupDirectory from
`usergroups.list` and `usergroups.users.list` so that policy roles may name `@handles`.
Both cache for a short TTL, because every request and every option
lookup asks, and Slack rate-limits these methods (Tier 2–4); both are safe to share between
threads (gunicorn threads, the scheduler).

Failures are logged with Slack's error code only — never the client, its token or the
request — and answered conservatively: an unknown person is a bare record (no e-mail, UTC),
and a group that cannot be read has no members, so a Slack outage never widens a role.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain.ports import Person

log = logging.getLogger(__name__)

Clock = Callable[[], float]
T = TypeVar("T")

#: failures answered with a safe default: Slack said no, the client failed, or the network did
_SLACK_FAILURES = (SlackApiError, SlackClientError, OSError)


def _failure(error: Exception) -> str:
    """A loggable description of a failed call: Slack's error code, or the exception type."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or "unknown_error")
    return type(error).__name__


class _TtlCache(Generic[T]):
    """A small thread-safe map whose entries expire `ttl` seconds after they were stored."""

    def __init__(self, ttl_seconds: float, clock: Clock, *, max_entries: int = 10_000) -> None:
        self._ttl, self._clock, self._max = ttl_seconds, clock, max_entries
        self._entries: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            return value

    def put(self, key: str, value: T) -> None:
        now = self._clock()
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[key] = (now + self._ttl, value)


class SlackPeople:
    """PeopleDirectory over `users.info` (scopes users:read and users:read.email)."""

    def __init__(self, client: WebClient, *, ttl_seconds: float = 300.0, clock: Clock = time.monotonic) -> None:
        self._client = client
        self._cache: _TtlCache[Person] = _TtlCache(ttl_seconds, clock)

    def person(self, slack_id: str) -> Person:
        cached = self._cache.get(slack_id)
        if cached is not None:
            return cached
        try:
            user = self._client.users_info(user=slack_id)["user"]
        except _SLACK_FAILURES as error:
            # Not cached: the next request asks again instead of keeping a bare record.
            log.warning("users.info failed for %s: %s", slack_id, _failure(error))
            return Person(slack_id=slack_id, resolved=False)
        profile = user.get("profile") or {}
        enterprise = user.get("enterprise_user") or {}
        person = Person(
            slack_id=slack_id,
            email=profile.get("email") or None,
            tz=user.get("tz") or None,
            enterprise_user_id=enterprise.get("id") or None,
        )
        self._cache.put(slack_id, person)
        return person


class SlackGroups:
    """GroupDirectory over Slack user groups (scope usergroups:read).

    `usergroups.list` maps handles to ids (disabled groups are not listed by default, so a
    disabled group grants nothing); `usergroups.users.list` gives a group's members.
    """

    _HANDLES = "handles"

    def __init__(self, client: WebClient, *, ttl_seconds: float = 60.0, clock: Clock = time.monotonic) -> None:
        self._client = client
        self._handles: _TtlCache[dict[str, str]] = _TtlCache(ttl_seconds, clock)
        self._members: _TtlCache[frozenset[str]] = _TtlCache(ttl_seconds, clock)

    def members_of(self, handle: str) -> frozenset[str]:
        handle = handle.removeprefix("@")
        cached = self._members.get(handle)
        if cached is not None:
            return cached
        handles = self._group_ids()
        if handles is None:
            return frozenset()
        group_id = handles.get(handle)
        if group_id is None:
            log.warning("no enabled Slack user group with handle @%s", handle)
            members: frozenset[str] = frozenset()
        else:
            try:
                users = self._client.usergroups_users_list(usergroup=group_id)["users"]
            except _SLACK_FAILURES as error:
                log.warning("usergroups.users.list failed for @%s: %s", handle, _failure(error))
                return frozenset()
            members = frozenset(u for u in users if isinstance(u, str))
        self._members.put(handle, members)
        return members

    def _group_ids(self) -> dict[str, str] | None:
        cached = self._handles.get(self._HANDLES)
        if cached is not None:
            return cached
        try:
            groups = self._client.usergroups_list()["usergroups"]
        except _SLACK_FAILURES as error:
            log.warning("usergroups.list failed: %s", _failure(error))
            return None
        handles = {g["handle"]: g["id"] for g in groups if g.get("handle") and g.get("id") and not g.get("date_delete")}
        self._handles.put(self._HANDLES, handles)
        return handles
