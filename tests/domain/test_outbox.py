"""The Slack outbox (bot/domain/outbox.py): rows commit with the change that
owes them, are claimed once however many deliverers run, go out in order per message, are
retried after 429 / with backoff after server errors, and fail loudly (audited) otherwise."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent, MessageRef
from bot.domain import outbox
from bot.domain.outbox import Kind, Permanent, RetryAfter, Sent, Skipped, Transient
from tests.fakes.courier import FakeCourier

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def owe(ctx, kind: Kind, subject: str, *, recipient: str = outbox.SECURITY, now: datetime = T0) -> str:
    with ctx.sessions() as db, db.begin():
        return outbox.enqueue(db, kind, subject, recipient=recipient, now=now)


def states(ctx) -> list[tuple[str, str]]:
    return [(r.subject_id, r.state) for r in outbox.rows(ctx)]


def audit_of(ctx, event_type: str) -> list[AuditEvent]:
    with ctx.sessions() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == event_type).order_by(AuditEvent.seq)).scalars())


def test_a_row_commits_with_the_change_or_not_at_all(ctx):
    with pytest.raises(RuntimeError), ctx.sessions() as db, db.begin():
        outbox.enqueue(db, Kind.NOTICE, "s-1", recipient="UAGENT1", now=T0)
        raise RuntimeError("the state change failed")
    assert outbox.rows(ctx) == []
    owe(ctx, Kind.NOTICE, "s-2", recipient="UAGENT1")
    assert states(ctx) == [("s-2", "pending")]


def test_a_delivered_row_keeps_the_message_ts_and_later_rows_edit_it(ctx):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    courier = FakeCourier([Sent("DAGENT1", "1700000000.000042")])
    report = outbox.deliver_due(ctx, courier, now=T0)
    assert (report.sent, courier.deliveries[0].ref) == (1, None)
    with ctx.sessions() as db:
        (ref,) = db.execute(select(MessageRef)).scalars()
    assert (ref.subject_id, ref.purpose, ref.recipient, ref.channel, ref.ts) == ("s-1", "notice", "UAGENT1", "DAGENT1", "1700000000.000042")

    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1", now=T0 + SECOND)
    outbox.deliver_due(ctx, courier, now=T0 + SECOND)
    assert courier.deliveries[1].ref == outbox.MessageRef_("DAGENT1", "1700000000.000042")
    assert outbox.deliver_due(ctx, courier, now=T0 + 2 * SECOND).attempted == 0


def test_rows_about_one_message_are_sent_as_one_delivery(ctx):
    for n in range(3):
        owe(ctx, Kind.NOTICE, "r-1", recipient="UAGENT1", now=T0 + n * SECOND)
    owe(ctx, Kind.NOTICE, "r-2", recipient="UAGENT1", now=T0)
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0 + 5 * SECOND)
    assert sorted(courier.subjects()) == ["r-1", "r-2"]
    assert [r.state for r in outbox.rows(ctx)] == ["sent", "merged", "merged", "sent"]


def test_a_security_row_goes_to_the_policy_channel_and_is_skipped_without_one(ctx):
    owe(ctx, Kind.FEED, "r-1")
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0)
    assert courier.deliveries[0].recipient == "CSECURITY1"

    ctx.policy = ctx.policy.model_copy(update={"alerts": ctx.policy.alerts.model_copy(update={"security_channel": None})})
    owe(ctx, Kind.FEED, "r-2")
    outbox.deliver_due(ctx, FakeCourier([Skipped("no_security_channel")]), now=T0 + 5 * SECOND)
    assert states(ctx)[-1] == ("r-2", "skipped")


def test_rate_limited_rows_wait_for_retry_after_and_spend_no_attempt(ctx):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    courier = FakeCourier([RetryAfter(30)])
    outbox.deliver_due(ctx, courier, now=T0)
    (row,) = outbox.rows(ctx)
    assert (row.state, row.attempts, row.due_at, row.last_error) == ("pending", 0, T0 + timedelta(seconds=30), "ratelimited")
    assert outbox.deliver_due(ctx, courier, now=T0 + 29 * SECOND).attempted == 0
    assert outbox.deliver_due(ctx, courier, now=T0 + 30 * SECOND).sent == 1
    assert len(courier.deliveries) == 2


def test_server_errors_back_off_then_fail_and_are_audited(ctx):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    courier = FakeCourier([Transient("internal_error")] * outbox.MAX_ATTEMPTS)
    now = T0
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        outbox.deliver_due(ctx, courier, now=now)
        (row,) = outbox.rows(ctx)
        wait = row.due_at - now
        full = min(outbox.BACKOFF_BASE * 2 ** (attempt - 1), outbox.BACKOFF_CAP)
        assert (row.state, row.attempts) == ("pending", attempt)
        assert full / 2 <= wait <= full, (attempt, wait)
        assert outbox.deliver_due(ctx, courier, now=row.due_at - SECOND).attempted == 0
        now = row.due_at
    outbox.deliver_due(ctx, courier, now=now)
    assert states(ctx) == [("s-1", "failed")]
    (event,) = audit_of(ctx, "notify.failed")
    details = json.loads(event.details)
    assert (details["kind"], details["error"], details["attempts"], event.session_id) == ("notice", "internal_error", outbox.MAX_ATTEMPTS, "s-1")


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived", "user_not_found"])
def test_a_permanent_error_is_logged_and_audited_never_dropped_silently(ctx, caplog, error):
    owe(ctx, Kind.FEED, "r-1")
    owe(ctx, Kind.FEED, "r-1", now=T0 + SECOND)  # covered by the same delivery
    outbox.deliver_due(ctx, FakeCourier([Permanent(error)]), now=T0 + SECOND)
    assert [r.state for r in outbox.rows(ctx)] == ["failed", "merged"]
    (event,) = audit_of(ctx, "notify.failed")
    details = json.loads(event.details)
    assert (details["error"], details["recipient"], details["covered"], event.request_id) == (error, "CSECURITY1", [2], None)
    assert error in caplog.text


def test_a_courier_that_raises_is_retried_later(ctx, caplog):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")

    def broken(_delivery):
        raise ConnectionResetError("peer reset")

    outbox.deliver_due(ctx, FakeCourier([broken]), now=T0)
    (row,) = outbox.rows(ctx)
    assert (row.state, row.last_error) == ("pending", "ConnectionResetError")


def test_a_database_error_on_one_row_does_not_stop_the_others(ctx, monkeypatch, caplog):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    owe(ctx, Kind.NOTICE, "s-2", recipient="UAGENT2")
    first = outbox.rows(ctx)[0].id
    real_claim = outbox._claim

    def claim(ctx_, row_id, now):
        if row_id == first:
            raise RuntimeError("database is down")
        return real_claim(ctx_, row_id, now)

    monkeypatch.setattr(outbox, "_claim", claim)
    courier = FakeCourier()
    assert outbox.deliver_due(ctx, courier, now=T0).sent == 1
    assert states(ctx) == [("s-1", "pending"), ("s-2", "sent")]
    assert "delivery failed; it stays owed" in caplog.text


def test_each_claim_counts_an_attempt(ctx):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    courier = FakeCourier([Transient("internal_error"), Transient("internal_error"), Sent("D1", "1")])
    outbox.deliver_due(ctx, courier, now=T0)
    outbox.deliver_due(ctx, courier, now=T0 + timedelta(hours=1))
    outbox.deliver_due(ctx, courier, now=T0 + timedelta(hours=2))
    assert [d.attempts for d in courier.deliveries] == [1, 2, 3]


def test_a_later_row_waits_for_an_earlier_one_of_the_same_message(ctx):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    outbox.deliver_due(ctx, FakeCourier([RetryAfter(60)]), now=T0)
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1", now=T0 + SECOND)
    # the second row is due, but the first (same message) still waits: order is kept
    assert outbox.deliver_due(ctx, FakeCourier(), now=T0 + 2 * SECOND).attempted == 0
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0 + 60 * SECOND)
    assert len(courier.deliveries) == 1 and [r.state for r in outbox.rows(ctx)] == ["sent", "merged"]


def test_a_row_whose_sender_died_is_taken_again_after_its_lease(ctx):
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    claimed = outbox._claim(ctx, outbox.rows(ctx)[0].id, T0)  # a sender that then died
    assert claimed is not None and states(ctx) == [("s-1", "sending")]
    courier = FakeCourier()
    assert outbox.deliver_due(ctx, courier, now=T0 + outbox.LEASE - SECOND).attempted == 0
    assert outbox.deliver_due(ctx, courier, now=T0 + outbox.LEASE + SECOND).sent == 1
    # the dead sender's late completion changes nothing (its claim token is stale)
    outbox._complete(ctx, claimed, Sent("DX", "1"), now=T0 + outbox.LEASE + 2 * SECOND)
    assert states(ctx) == [("s-1", "sent")]


def test_a_digest_claim_lasts_longer_than_one_call_s(ctx):
    """A digest uploads its report files before posting (several calls): its claim lasts
    DIGEST_LEASE. Every other kind makes one Slack call and is taken again after LEASE, well
    inside the default 5-minute redeem window (a link DM whose sender died in the send)."""
    assert outbox.LEASE < timedelta(minutes=5) < outbox.DIGEST_LEASE
    owe(ctx, Kind.DIGEST, "2030-W01")
    assert outbox._claim(ctx, outbox.rows(ctx)[0].id, T0) is not None  # a sender that then died
    courier = FakeCourier()
    assert outbox.deliver_due(ctx, courier, now=T0 + outbox.LEASE + SECOND).attempted == 0
    assert outbox.deliver_due(ctx, courier, now=T0 + outbox.DIGEST_LEASE - SECOND).attempted == 0
    assert outbox.deliver_due(ctx, courier, now=T0 + outbox.DIGEST_LEASE + SECOND).sent == 1


def test_concurrent_deliverers_send_each_row_once(ctx):
    for n in range(40):
        owe(ctx, Kind.NOTICE, f"s-{n}", recipient="UAGENT1")
    courier = FakeCourier(pause=0.005)
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        outbox.deliver_due(ctx, courier, now=T0)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(courier.subjects()) == sorted(f"s-{n}" for n in range(40))
    assert {r.state for r in outbox.rows(ctx)} == {"sent"}


def test_new_messages_in_a_channel_are_paced_to_one_per_second(ctx):
    owe(ctx, Kind.FEED, "r-1")
    owe(ctx, Kind.FEED, "r-2")
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0)
    assert courier.subjects() == ["r-1"]
    outbox.deliver_due(ctx, courier, now=T0 + SECOND / 2)
    assert courier.subjects() == ["r-1"]
    outbox.deliver_due(ctx, courier, now=T0 + SECOND)
    assert courier.subjects() == ["r-1", "r-2"]
    # edits are not new messages: they are not held back
    owe(ctx, Kind.FEED, "r-1", now=T0 + SECOND)
    outbox.deliver_due(ctx, courier, now=T0 + SECOND)
    assert courier.subjects() == ["r-1", "r-2", "r-1"] and courier.deliveries[-1].ref is not None


def test_pending_alerts_go_out_together_as_one_summary(ctx):
    for n in range(outbox.ALERT_BATCH_MAX + 5):
        owe(ctx, Kind.ALERT, f"a-{n:03d}")
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0)
    (first,) = courier.deliveries
    assert first.batch == tuple(f"a-{n:03d}" for n in range(outbox.ALERT_BATCH_MAX))
    outbox.deliver_due(ctx, courier, now=T0 + SECOND)
    assert courier.deliveries[1].batch == tuple(f"a-{n:03d}" for n in range(outbox.ALERT_BATCH_MAX, outbox.ALERT_BATCH_MAX + 5))
    with ctx.sessions() as db:
        refs = db.execute(select(MessageRef.subject_id).where(MessageRef.purpose == "alert")).scalars().all()
    assert sorted(refs) == [f"a-{n:03d}" for n in range(outbox.ALERT_BATCH_MAX + 5)]


def test_backoff_doubles_is_capped_and_jittered():
    assert outbox.backoff(1, rng=lambda a, b: 1.0) == outbox.BACKOFF_BASE
    assert outbox.backoff(1, rng=lambda a, b: 0.0) == outbox.BACKOFF_BASE / 2
    assert outbox.backoff(3, rng=lambda a, b: 1.0) == outbox.BACKOFF_BASE * 4
    assert outbox.backoff(30, rng=lambda a, b: 1.0) == outbox.BACKOFF_CAP


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class TimedCourier(FakeCourier):
    """Records when (on the fake clock) each delivery was made."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.sent_at: list[tuple[str, str, float]] = []
        self._clock = clock

    def deliver(self, delivery):
        self.sent_at.append((delivery.kind.value, delivery.subject_id, (self._clock.now() - T0).total_seconds()))
        return super().deliver(delivery)


def test_an_alert_raised_behind_routine_feed_posts_is_posted_first_then_one_post_a_second(ctx):
    for n in range(6):
        owe(ctx, Kind.FEED, f"r-{n}", now=T0 - SECOND)
    owe(ctx, Kind.ALERT, "a-1")
    clock = FakeClock(T0)
    courier = TimedCourier(clock)

    report = outbox.deliver_due(ctx, courier, clock=clock.now, sleep=clock.sleep, pace_wait=timedelta(seconds=10))

    assert report.sent == 7
    assert courier.sent_at == [("alert", "a-1", 0.0)] + [("feed", f"r-{n}", n + 1.0) for n in range(6)]


def test_scheduler_runs_drain_a_channel_at_one_post_a_second_without_overlapping(ctx):
    from bot.jobs.work import OUTBOX_PACE_WAIT

    for n in range(4):
        owe(ctx, Kind.FEED, f"r-{n}")
    clock = FakeClock(T0)
    courier = TimedCourier(clock)
    tick = 2.0  # bot/jobs/scheduler.py: the outbox job's interval
    for run in range(2):
        clock.at = T0 + timedelta(seconds=run * tick)
        outbox.deliver_due(ctx, courier, clock=clock.now, sleep=clock.sleep, pace_wait=OUTBOX_PACE_WAIT)
        # a run ends before the next tick (APScheduler would skip a tick that finds it running)
        assert clock.now() - (T0 + timedelta(seconds=run * tick)) < timedelta(seconds=tick)

    assert [at for _, _, at in courier.sent_at] == [0.0, 1.0, 2.0, 3.0]


def test_a_fixed_clock_or_an_immediate_delivery_never_waits_for_a_slot(ctx):
    for n in range(3):
        owe(ctx, Kind.FEED, f"r-{n}")
    naps: list[float] = []
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0, sleep=naps.append, pace_wait=timedelta(seconds=10))
    outbox.deliver_due(ctx, courier, clock=lambda: T0, sleep=naps.append, targets=[outbox.target_of(Kind.FEED, "r-1", outbox.SECURITY)])
    assert (courier.subjects(), naps) == (["r-0"], [])


def test_revocation_notices_and_alerts_are_claimed_before_routine_rows(ctx):
    owe(ctx, Kind.AGENT, "r-1", recipient="UAGENT1", now=T0 - 2 * SECOND)
    owe(ctx, Kind.FEED, "r-1", now=T0 - 2 * SECOND)
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1", now=T0 - SECOND)
    owe(ctx, Kind.BREAK_GLASS, "r-2", now=T0)
    courier = FakeCourier()
    outbox.deliver_due(ctx, courier, now=T0)
    # the break-glass alert takes the channel's slot; the feed post waits for the next one
    assert [(d.kind.value, d.subject_id) for d in courier.deliveries] == [("notice", "s-1"), ("break_glass", "r-2"), ("agent", "r-1")]


def test_an_immediate_delivery_claims_the_changes_rows_together_before_sending_any(ctx):
    with ctx.sessions() as db, db.begin():
        targets = outbox.enqueue_all(
            db, [(Kind.APPROVER, "r-1", "UMANAGER1"), (Kind.APPROVER, "r-1", "UMANAGER2"), (Kind.AGENT_REQUEST, "r-1", "UAGENT1")], now=T0
        )
    claimed_when_sending: list[list[str]] = []

    def sending(delivery):
        claimed_when_sending.append([r.state for r in outbox.rows(ctx)])
        return Sent("D1", f"1700000000.00000{len(claimed_when_sending)}")

    courier = FakeCourier([sending, sending, sending])
    report = outbox.deliver_due(ctx, courier, targets=targets, now=T0)
    assert report.sent == 3 and [d.recipient for d in courier.deliveries] == ["UMANAGER1", "UMANAGER2", "UAGENT1"]
    # every row was claimed before the first was sent, so one read of the state serves them all
    assert claimed_when_sending[0] == ["sending", "sending", "sending"]
    (group,) = {d.claim_group for d in courier.deliveries}
    assert group is not None
    assert states(ctx) == [("r-1", "sent")] * 3
    # the scheduler's run claims rows one at a time
    owe(ctx, Kind.NOTICE, "s-1", recipient="UAGENT1")
    owe(ctx, Kind.NOTICE, "s-2", recipient="UAGENT1")
    outbox.deliver_due(ctx, courier, now=T0 + SECOND)
    assert [d.claim_group for d in courier.deliveries[3:]] == [None, None]


def test_a_row_of_a_group_whose_lease_the_sends_ahead_used_up_is_given_back_unsent(ctx):
    with ctx.sessions() as db, db.begin():
        targets = outbox.enqueue_all(db, [(Kind.NOTICE, "s-1", "UAGENT1"), (Kind.NOTICE, "s-2", "UAGENT1")], now=T0)
    clock = FakeClock(T0)

    def slow(delivery):
        clock.sleep((outbox.LEASE - outbox.SEND_TIMEOUT).total_seconds() + 1)
        return Sent("D1", "1700000000.000001")

    courier = FakeCourier([slow])
    outbox.deliver_due(ctx, courier, targets=targets, clock=clock.now, sleep=clock.sleep)
    assert courier.subjects() == ["s-1"]
    (first, second) = outbox.rows(ctx)
    assert (first.state, second.state, second.attempts, second.last_error) == ("sent", "pending", 0, "claim_ran_out")
    outbox.deliver_due(ctx, courier, now=clock.now())
    assert courier.subjects() == ["s-1", "s-2"]
