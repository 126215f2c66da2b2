"""Refusals that anyone on the internet can cause, written to the audit log at a bounded rate.

Every refusal is audited, but an append-only log must not be writable at an attacker's speed:
`POST /l/<anything>` without a cookie, or a product API call with a junk key, costs the
sender one request and would cost us one permanent row. So these refusals pass a
`RefusalThrottle` first: per fixed window (a minute), at most `per_client` events per cause
and client address and at most `per_cause` per cause in all (whatever the number of
addresses). What is left out is not lost: it is counted, and once the window is over one
`refusals.suppressed` event says how many of which cause, from how many addresses, and the
busiest few. That event is written by the first refusal after the window or, when none
comes, by the throttle's own timer (`RefusalAuditor`), so a burst that stops is still
summarised within about a window.

Memory is bounded as well: causes come from fixed enums, and at most `max_clients` addresses
are tracked per window (refusals from further addresses are counted, never written).
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext

log = logging.getLogger(__name__)

SUMMARY_EVENT = "refusals.suppressed"
#: how many of the busiest addresses a summary names
SUMMARY_TOP_CLIENTS = 5
UNKNOWN_CLIENT = "-"


@dataclass(frozen=True)
class Suppressed:
    """What one window left out: the content of a `refusals.suppressed` event."""

    window_start: datetime
    window_end: datetime
    by_cause: dict[str, int]
    clients: int
    top_clients: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_cause.values())

    def draft(self) -> EventDraft:
        return EventDraft(
            type=SUMMARY_EVENT,
            actor=Actor.system("refusal_throttle"),
            details={
                "window_start": audit.format_time(self.window_start),
                "window_end": audit.format_time(self.window_end),
                "suppressed": self.total,
                "by_cause": dict(sorted(self.by_cause.items())),
                "clients": self.clients,
                "top_clients": self.top_clients,
            },
        )


@dataclass(frozen=True)
class Admission:
    #: write this refusal's own event
    write: bool
    #: a finished window's summary, to be written now (with or without the refusal)
    summary: Suppressed | None = None


@dataclass
class _Window:
    start: datetime
    written_by_cause: Counter[str] = field(default_factory=Counter)
    written_by_client: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressed_by_cause: Counter[str] = field(default_factory=Counter)
    suppressed_by_client: Counter[str] = field(default_factory=Counter)
    untracked_clients: bool = False


class RefusalThrottle:
    """Decides which refusals are written; thread-safe (gunicorn threads share one per
    process). `cause` names the event type and its cause, e.g. `link.csrf_refused:missing_cookie`."""

    def __init__(
        self,
        *,
        per_client: int = 5,
        per_cause: int = 30,
        window: timedelta = timedelta(minutes=1),
        max_clients: int = 4096,
    ) -> None:
        self.per_client, self.per_cause, self.window, self.max_clients = per_client, per_cause, window, max_clients
        self._lock = threading.Lock()
        self._current: _Window | None = None

    def admit(self, cause: str, client: str | None, now: datetime) -> Admission:
        client = client or UNKNOWN_CLIENT
        with self._lock:
            summary = self._roll(now)
            if self._current is None:
                self._current = _Window(start=now)
            window = self._current
            key = (cause, client)
            tracked = key in window.written_by_client or client in window.suppressed_by_client or (
                len(window.written_by_client) + len(window.suppressed_by_client) < self.max_clients
            )
            if (
                tracked
                and window.written_by_cause[cause] < self.per_cause
                and window.written_by_client[key] < self.per_client
            ):
                window.written_by_cause[cause] += 1
                window.written_by_client[key] += 1
                return Admission(write=True, summary=summary)
            window.suppressed_by_cause[cause] += 1
            if tracked:
                window.suppressed_by_client[client] += 1
            else:
                window.untracked_clients = True
            return Admission(write=False, summary=summary)

    def pending(self) -> bool:
        """Whether the current window has left anything out (a summary is owed)."""
        with self._lock:
            return self._current is not None and bool(self._current.suppressed_by_cause)

    def window_end(self) -> datetime | None:
        with self._lock:
            return self._current.start + self.window if self._current is not None else None

    def flush(self, now: datetime, *, force: bool = False) -> Suppressed | None:
        """The summary of the current window if it is over (or `force`: at shutdown)."""
        with self._lock:
            if force and self._current is not None:
                start = self._current.start
                return self._close(self._current, min(max(now, start), start + self.window))
            return self._roll(now)

    def _roll(self, now: datetime) -> Suppressed | None:
        window = self._current
        if window is None or (window.start <= now < window.start + self.window):
            return None
        # a clock set back before the window began ends it where the clock now is
        return self._close(window, window.start + self.window if now >= window.start else now)

    def _close(self, window: _Window, end: datetime) -> Suppressed | None:
        self._current = None
        if not window.suppressed_by_cause:
            return None
        clients = len(window.suppressed_by_client) + (1 if window.untracked_clients else 0)
        top = dict(window.suppressed_by_client.most_common(SUMMARY_TOP_CLIENTS))
        return Suppressed(
            window_start=window.start,
            window_end=end,
            by_cause=dict(window.suppressed_by_cause),
            clients=clients,
            top_clients=top,
        )


class RefusalAuditor:
    """The one way to audit an unauthenticated refusal: through a throttle, with the summary
    of what it left out written by the next refusal or by a timer when the window ends."""

    def __init__(self, ctx: DomainContext, throttle: RefusalThrottle | None = None, *, timer: bool = True) -> None:
        self.ctx = ctx
        self.throttle = throttle or RefusalThrottle()
        self._timer_enabled = timer
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._closed = False

    def refuse(
        self,
        cause: str,
        client: str | None,
        build: Callable[[Session], EventDraft],
        *,
        now: datetime | None = None,
    ) -> bool:
        """Audit one refusal if the throttle admits it: `build(db)` makes its event inside
        the transaction that appends it. True when it was written."""
        now = now or utcnow()
        admission = self.throttle.admit(cause, client, now)
        if admission.write or admission.summary is not None:
            with self.ctx.sessions() as db, db.begin():
                if admission.summary is not None:
                    audit.append(db, admission.summary.draft(), now=now)
                if admission.write:
                    audit.append(db, build(db), now=now)
        if admission.summary is not None:
            _log_summary(admission.summary)
        if not admission.write:
            self._arm_timer(now)
        return admission.write

    def flush(self, *, now: datetime | None = None, force: bool = False) -> Suppressed | None:
        """Write the summary of a finished window (or, with `force`, of the current one)."""
        summary = self.throttle.flush(now or utcnow(), force=force)
        if summary is not None:
            with self.ctx.sessions() as db, db.begin():
                audit.append(db, summary.draft(), now=now or utcnow())
            _log_summary(summary)
        return summary

    def close(self) -> None:
        """Shutdown: cancel the timer and write what the current window left out."""
        with self._timer_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            self.flush(force=True)
        except Exception:  # noqa: BLE001 - shutdown goes on; the count is in the log
            log.exception("could not write the summary of suppressed refusals at shutdown")

    def _arm_timer(self, now: datetime) -> None:
        if not self._timer_enabled:
            return
        end = self.throttle.window_end()
        if end is None:
            return
        with self._timer_lock:
            if self._closed or (self._timer is not None and self._timer.is_alive()):
                return
            delay = max((end - now).total_seconds(), 0.0) + 0.05
            self._timer = threading.Timer(delay, self._on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _on_timer(self) -> None:
        with self._timer_lock:
            self._timer = None
            if self._closed:
                return
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the next refusal writes the summary instead
            log.exception("could not write the summary of suppressed refusals")
            return
        if self.throttle.pending():  # the clock had not reached the window's end yet
            self._arm_timer(utcnow())


def _log_summary(summary: Suppressed) -> None:
    log.warning(
        "left %d refusals out of the audit log between %s and %s (%d addresses); see the %s event",
        summary.total,
        audit.format_time(summary.window_start),
        audit.format_time(summary.window_end),
        summary.clients,
        SUMMARY_EVENT,
    )
