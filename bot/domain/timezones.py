"""Reading a UTC moment on someone's own clock (their Slack time zone, `users.info` → `tz`)."""
from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(tz_name: str | None) -> tzinfo:
    """The IANA zone, or UTC when Slack gave none or one this machine does not know."""
    if not tz_name:
        return UTC
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: malformed keys such as "../x"
        return UTC


def local(moment: datetime, tz_name: str | None) -> datetime:
    return moment.astimezone(zone(tz_name))
