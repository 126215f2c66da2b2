"""The one place the app reads the time, so tests can freeze it (freezegun patches datetime)."""
from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
