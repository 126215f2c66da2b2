"""The scheduler: one registry of jobs, run in the `clock` process (`impersonation-bot
scheduler`) or inside `impersonation-bot serve` (in gunicorn's master process, so it runs
once however many web workers there are). Both use APScheduler's BackgroundScheduler.

Every job is a function of the DomainContext and must be idempotent: it claims its rows with
conditional updates, so a job that runs twice, or in two scheduler processes at once, never
double-sends (DESIGN.md "Scale"). The scheduler itself keeps no state (in-memory job store);
what is due is always read from the database.
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.domain.context import DomainContext
from bot.jobs import work

#: APScheduler job defaults. `coalesce`: after a pause, run a missed job once, not once per
#: missed tick. `max_instances=1`: a slow run is never overlapped by the next tick of the same
#: job. `misfire_grace_time`: a tick missed by up to 5 minutes (busy host, restart) still runs.
JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}


@dataclass(frozen=True)
class ScheduledJob:
    """One periodic job: `run(ctx)` fired by `trigger`. `id` names it in logs."""

    id: str
    run: Callable[[DomainContext], object]
    trigger: BaseTrigger


#: The jobs the scheduler runs (bot/jobs/work.py). Expiry itself is decided
#: at every use; these tell people and tidy up. Ticks are frequent and cheap: each job reads
#: what is due and does nothing otherwise, and the periodic ones (sweeps, digests,
#: checkpoints) claim their period once, so the tick only bounds how late they can be.
JOBS: tuple[ScheduledJob, ...] = (
    ScheduledJob("outbox.deliver", work.deliver_outbox, IntervalTrigger(seconds=2)),
    ScheduledJob("requests.expire_pending", work.expire_pending_requests, IntervalTrigger(seconds=30)),
    ScheduledJob("extensions.expire_pending", work.expire_pending_extensions, IntervalTrigger(seconds=30)),
    ScheduledJob("approvals.nudge", work.nudge_pending_approvals, IntervalTrigger(seconds=30)),
    ScheduledJob("links.lapse", work.lapse_links, IntervalTrigger(seconds=30)),
    ScheduledJob("sessions.expire", work.expire_sessions, IntervalTrigger(seconds=15)),
    ScheduledJob("sessions.warn", work.warn_expiring, IntervalTrigger(seconds=15)),
    ScheduledJob("anomalies.sweep", work.sweep_anomalies, IntervalTrigger(minutes=1)),
    ScheduledJob("digests.post", work.post_digests, IntervalTrigger(minutes=5)),
    ScheduledJob("audit.checkpoint", work.make_checkpoint, IntervalTrigger(minutes=5)),
    ScheduledJob("slack.prune_deliveries", work.prune_slack_deliveries, IntervalTrigger(minutes=1)),
    ScheduledJob("retention.prune", work.prune_operational_rows, IntervalTrigger(hours=1)),
    ScheduledJob("privacy.retention", work.erase_expired_personal_data, IntervalTrigger(hours=1)),
)


SchedulerT = TypeVar("SchedulerT", bound=BaseScheduler)
log = logging.getLogger(__name__)


def start(scheduler: BackgroundScheduler) -> None:
    """Start, and say so in one line (APScheduler's own per-job lines are kept below INFO:
    bot/wiring.py QUIET_LOGGERS)."""
    scheduler.start()
    jobs = scheduler.get_jobs()
    log.info("scheduler started: %d jobs (%s)", len(jobs), ", ".join(job.id for job in jobs))


def stop(scheduler: BackgroundScheduler) -> None:
    """Stop after the running jobs finish."""
    if scheduler.running:
        scheduler.shutdown(wait=True)
        log.info("scheduler stopped")


def add_jobs(scheduler: SchedulerT, ctx: DomainContext, jobs: Iterable[ScheduledJob]) -> SchedulerT:
    for job in jobs:
        scheduler.add_job(job.run, job.trigger, args=(ctx,), id=job.id, name=job.id, replace_existing=True)
    return scheduler


def background_scheduler(ctx: DomainContext, jobs: Iterable[ScheduledJob] = JOBS) -> BackgroundScheduler:
    """The scheduler with every job registered, not yet started. It runs in its own threads:
    beside gunicorn in `serve`, or alone in the clock process (`run_until_stopped`)."""
    return add_jobs(BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS), ctx, jobs)


def run_until_stopped(scheduler: BackgroundScheduler, *, poll_seconds: float = 1.0) -> None:
    """The clock process: run the scheduler until SIGTERM or SIGINT, then shut it down and let
    a running job finish (every job commits its own transaction; none is cut in half).

    Why not APScheduler's BlockingScheduler: it runs its loop in the main thread, where the
    signal handler also runs. Shutting down from the handler can deadlock on a lock the
    interrupted loop holds (the executor's, while a job is being submitted), and an exception
    raised from the handler is swallowed by the loop's `except BaseException` around job
    submission. So the scheduler runs in its own threads and the handler only sets a flag,
    which the main thread polls; the shutdown then runs in plain code, outside any handler.
    """
    stop_signals: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stop_signals.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        start(scheduler)
        while not stop_signals:
            time.sleep(poll_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop(scheduler)
