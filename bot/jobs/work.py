"""The scheduler's jobs. Each is `run(ctx)` over the domain; each is
idempotent and safe in two schedulers at once, because the domain claims its rows with
conditional updates and one-time claims (bot/domain/watch.py, outbox.py, once.py). None keeps
state between runs: what is due is always read from the database, so a restart catches up.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.domain import anomalies, checkpoint_job, deliveries, digests, outbox, privacy, retention, watch
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.once import claim_once

log = logging.getLogger(__name__)


#: how long one run of the outbox job (every 2 s, bot/jobs/scheduler.py) waits for channels'
#: next posting slots: a queue of new posts to one channel drains at one a second
#: (outbox.PACE_SECONDS), not one per tick. Shorter than the tick, so runs never overlap
#: (APScheduler would skip, and log, the tick that finds the previous run still going).
OUTBOX_PACE_WAIT = timedelta(seconds=1.5)


def deliver_outbox(ctx: DomainContext) -> None:
    if ctx.courier is None:
        log.warning("no Slack courier is configured: outbox rows wait until one is")
        return
    outbox.deliver_due(ctx, ctx.courier, pace_wait=OUTBOX_PACE_WAIT)


def warn_expiring(ctx: DomainContext) -> None:
    watch.warn_expiring(ctx)


def expire_sessions(ctx: DomainContext) -> None:
    watch.expire_sessions(ctx)


def expire_pending_requests(ctx: DomainContext) -> None:
    watch.expire_pending_requests(ctx)


def expire_pending_extensions(ctx: DomainContext) -> None:
    watch.expire_pending_extensions(ctx)


def nudge_pending_approvals(ctx: DomainContext) -> None:
    watch.nudge_pending_approvals(ctx)


def lapse_links(ctx: DomainContext) -> None:
    watch.lapse_links(ctx)


def sweep_key(now: datetime, every_minutes: int) -> str:
    """The sweep period `now` falls in: one sweep per period across every scheduler."""
    return str(int(now.timestamp()) // (60 * every_minutes))


def sweep_anomalies(ctx: DomainContext, *, now: datetime | None = None) -> list[str]:
    """Every `alerts.sweep_minutes` (the job ticks each minute; the period is claimed once).
    The sweep itself is idempotent too (alerts are deduplicated), the claim only saves work."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        if not claim_once(db, "anomaly_sweep", sweep_key(now, ctx.policy.alerts.sweep_minutes), now=now):
            return []
    return anomalies.sweep(ctx, now=now)


def prune_slack_deliveries(ctx: DomainContext) -> None:
    deliveries.prune(ctx)


def prune_operational_rows(ctx: DomainContext) -> None:
    retention.prune(ctx)


def erase_expired_personal_data(ctx: DomainContext) -> None:
    privacy.erase_expired(ctx)


def post_digests(ctx: DomainContext) -> None:
    digests.run_due(ctx)


def make_checkpoint(ctx: DomainContext) -> None:
    checkpoint_job.run_due(ctx)


#: every job, in the order a catch-up after downtime should run them: state first (expire
#: before warning, so an overdue session is expired, not warned), then what tells people
ALL = (
    expire_pending_requests,
    lapse_links,
    expire_sessions,
    expire_pending_extensions,
    nudge_pending_approvals,
    warn_expiring,
    sweep_anomalies,
    post_digests,
    make_checkpoint,
    prune_slack_deliveries,
    prune_operational_rows,
    erase_expired_personal_data,
    deliver_outbox,
)
