"""The scheduler (bot/jobs/scheduler.py): one job registry, UTC, no overlapping runs, and a
clock process that stops cleanly on SIGTERM."""
from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timedelta, timezone

from apscheduler.triggers.interval import IntervalTrigger

from bot.jobs import scheduler as jobs
from bot.jobs.scheduler import JOB_DEFAULTS, ScheduledJob

CTX = object()  # the scheduler only hands the context to its jobs


def noop(_ctx) -> None:
    return None


def soon_then_hourly() -> IntervalTrigger:
    # Periodic like every real job (APScheduler 3 races on shutdown with one-shot DateTriggers).
    return IntervalTrigger(hours=1, start_date=datetime.now(timezone.utc) + timedelta(milliseconds=10))


def test_jobs_are_registered_with_the_context():
    spec = ScheduledJob(id="tidy", run=noop, trigger=IntervalTrigger(minutes=5))
    scheduler = jobs.background_scheduler(CTX, jobs=[spec])
    scheduler.start(paused=True)
    try:
        [job] = scheduler.get_jobs()
        assert (job.id, job.func, job.args) == ("tidy", noop, (CTX,))
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == JOB_DEFAULTS["misfire_grace_time"]
    finally:
        scheduler.shutdown(wait=False)


def test_the_scheduler_runs_in_utc():
    assert jobs.background_scheduler(CTX).timezone == timezone.utc


def test_the_registry_is_what_the_schedulers_run():
    scheduler = jobs.background_scheduler(CTX)
    scheduler.start(paused=True)
    try:
        assert sorted(job.id for job in scheduler.get_jobs()) == sorted(spec.id for spec in jobs.JOBS)
    finally:
        scheduler.shutdown(wait=False)


def test_the_clock_process_runs_jobs_and_stops_on_sigterm():
    seen: list[object] = []

    def job(ctx) -> None:
        seen.append(ctx)
        os.kill(os.getpid(), signal.SIGTERM)  # what Heroku / systemd send to stop the process

    spec = ScheduledJob(id="once", run=job, trigger=soon_then_hourly())
    scheduler = jobs.background_scheduler(CTX, jobs=[spec])
    before = signal.getsignal(signal.SIGTERM)
    jobs.run_until_stopped(scheduler, poll_seconds=0.01)
    assert seen == [CTX]
    assert not scheduler.running
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_running_job_finishes_before_the_clock_process_exits():
    finished = threading.Event()

    def slow_job(_ctx) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        finished.wait(0.2)  # still working when the stop is requested
        finished.set()

    spec = ScheduledJob(id="slow", run=slow_job, trigger=soon_then_hourly())
    jobs.run_until_stopped(jobs.background_scheduler(CTX, jobs=[spec]), poll_seconds=0.01)
    assert finished.is_set()
