"""A GroupDirectory fake: user-group handle → members, as configured by the test."""
from __future__ import annotations


class StaticGroups:
    def __init__(self, groups: dict[str, set[str]] | None = None) -> None:
        self.groups = {k: frozenset(v) for k, v in (groups or {}).items()}
        self.lookups = 0

    def members_of(self, handle: str) -> frozenset[str]:
        self.lookups += 1
        return self.groups.get(handle, frozenset())
