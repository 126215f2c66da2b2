"""The refusal throttle: unauthenticated refusals reach the audit log at a bounded rate, and
what is left out is counted in one summarising event."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain.audit import Actor, EventDraft, verify_chain
from bot.domain.refusals import SUMMARY_EVENT, RefusalAuditor, RefusalThrottle

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def events(session_factory, type_: str | None = None) -> list[AuditEvent]:
    with session_factory() as db:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if type_:
            query = query.where(AuditEvent.type == type_)
        rows = list(db.execute(query).scalars())
        db.expunge_all()
        return rows


def refusal(db) -> EventDraft:
    return EventDraft(type="test.refused", actor=Actor(role="browser"), details={"cause": "x"})


def test_each_client_and_each_cause_has_its_bound():
    throttle = RefusalThrottle(per_client=2, per_cause=5)
    admitted = [throttle.admit("a", "10.0.0.1", T0 + n * SECOND).write for n in range(4)]
    assert admitted == [True, True, False, False]
    assert throttle.admit("b", "10.0.0.1", T0).write  # another cause
    assert throttle.admit("a", "10.0.0.2", T0).write  # another client
    # however many addresses send it, a cause writes at most per_cause events a window
    many = [throttle.admit("a", f"10.1.0.{n}", T0).write for n in range(20)]
    assert many.count(True) == 5 - 3


def test_a_window_that_left_something_out_ends_in_one_summary():
    throttle = RefusalThrottle(per_client=1, per_cause=100)
    for n in range(7):
        throttle.admit("link.csrf_refused:missing_cookie", "203.0.113.9", T0 + n * SECOND)
    for n in range(3):
        throttle.admit("api.refused:malformed", f"198.51.100.{n}", T0 + n * SECOND)
    throttle.admit("api.refused:malformed", "198.51.100.0", T0 + 5 * SECOND)
    assert throttle.admit("a", "x", T0 + 59 * SECOND).summary is None  # still the same window

    later = throttle.admit("link.csrf_refused:missing_cookie", "203.0.113.9", T0 + MINUTE)
    assert later.write  # a new window, a new allowance
    summary = later.summary
    assert summary is not None
    assert (summary.window_start, summary.window_end) == (T0, T0 + MINUTE)
    assert summary.by_cause == {"link.csrf_refused:missing_cookie": 6, "api.refused:malformed": 1}
    assert summary.clients == 2 and summary.top_clients == {"203.0.113.9": 6, "198.51.100.0": 1}
    # told once
    assert throttle.admit("a", "x", T0 + 2 * MINUTE).summary is None


def test_a_window_that_left_nothing_out_owes_no_summary():
    throttle = RefusalThrottle(per_client=5)
    throttle.admit("a", "x", T0)
    assert throttle.admit("a", "x", T0 + 2 * MINUTE).summary is None
    assert throttle.flush(T0 + 5 * MINUTE) is None


def test_memory_is_bounded_by_the_addresses_it_tracks():
    throttle = RefusalThrottle(per_client=1, per_cause=1000, max_clients=10)
    written = [throttle.admit("a", f"10.0.{n // 250}.{n % 250}", T0).write for n in range(1000)]
    assert written.count(True) == 10
    summary = throttle.flush(T0, force=True)
    assert summary.by_cause == {"a": 990}
    assert len(summary.top_clients) <= 5


def test_threads_sharing_a_throttle_write_exactly_the_bound():
    throttle = RefusalThrottle(per_client=5, per_cause=30)
    results: list[bool] = []
    lock = threading.Lock()

    def burst() -> None:
        mine = [throttle.admit("link.csrf_refused:missing_cookie", "127.0.0.1", T0).write for _ in range(50)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5
    assert throttle.flush(T0, force=True).by_cause == {"link.csrf_refused:missing_cookie": 400 - 5}


def test_the_auditor_writes_the_bound_then_one_summary_and_the_chain_holds(ctx, session_factory):
    auditor = RefusalAuditor(ctx, RefusalThrottle(per_client=3), timer=False)
    written = [auditor.refuse("test.refused:x", "203.0.113.9", refusal, now=T0 + n * SECOND / 10) for n in range(300)]
    assert written.count(True) == 3
    assert len(events(session_factory, "test.refused")) == 3 and events(session_factory, SUMMARY_EVENT) == []

    auditor.refuse("test.refused:x", "203.0.113.9", refusal, now=T0 + 2 * MINUTE)
    (summary,) = events(session_factory, SUMMARY_EVENT)
    details = json.loads(summary.details)
    assert details["suppressed"] == 297 and details["by_cause"] == {"test.refused:x": 297}
    assert details["top_clients"] == {"203.0.113.9": 297} and details["clients"] == 1
    assert summary.actor_role == "refusal_throttle"
    assert len(events(session_factory, "test.refused")) == 4
    with session_factory() as db:
        assert verify_chain(db)[1] is None


def test_the_timer_writes_the_summary_when_no_refusal_follows(ctx, session_factory):
    auditor = RefusalAuditor(ctx, RefusalThrottle(per_client=1, window=timedelta(milliseconds=200)))
    try:
        for _ in range(10):
            auditor.refuse("test.refused:x", "203.0.113.9", refusal)
        deadline = time.monotonic() + 10
        while not events(session_factory, SUMMARY_EVENT) and time.monotonic() < deadline:
            time.sleep(0.05)
        summaries = events(session_factory, SUMMARY_EVENT)
        assert sum(json.loads(s.details)["suppressed"] for s in summaries) >= 1
    finally:
        auditor.close()
    total = sum(json.loads(s.details)["suppressed"] for s in events(session_factory, SUMMARY_EVENT))
    assert total + len(events(session_factory, "test.refused")) == 10  # every refusal accounted for


def test_closing_writes_what_the_current_window_left_out(ctx, session_factory):
    auditor = RefusalAuditor(ctx, RefusalThrottle(per_client=1))
    for _ in range(4):
        auditor.refuse("test.refused:x", None, refusal)
    auditor.close()
    (summary,) = events(session_factory, SUMMARY_EVENT)
    assert json.loads(summary.details)["top_clients"] == {"-": 3}
