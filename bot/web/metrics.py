"""`/metrics` in the Prometheus text format (prometheus-client), for the web process.

Two kinds of series:

- **Per request**, counted in the process that served it: requests by route, method and
  status, and their duration (for `/slack/events` this is the time to Slack's ack). Under
  gunicorn every worker counts its own; with PROMETHEUS_MULTIPROC_DIR set (the CLI's `serve`
  and `web` set it to a fresh directory when it is unset) prometheus-client keeps them in files
  there and `/metrics` sums every worker's (prometheus-client "Multiprocess Mode"; gunicorn's
  `child_exit` hook marks a dead worker's gauges, bot/web/gunicorn_conf.py). The route label
  is Flask's URL rule (`/l/<token>`), never the path: a link's token is a secret, and paths
  would give a series per token.
- **From the database at scrape time**, the same whichever worker answers and however many
  scheduler or web processes there are: the outbox's depth and its oldest row's age, the
  outbox rows finished in the last hour by outcome, live sessions, pending requests, alerts
  raised, audit events appended, and the age of the newest signed checkpoint.

Not public: without METRICS_TOKEN `/metrics` is a 404; with it, the request must carry
`Authorization: Bearer <METRICS_TOKEN>` (compared in constant time) or gets a 401.
"""
from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from datetime import timedelta

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select

from bot.db.engine import reading
from bot.db.models import Alert, AuditEvent, AuditHead, ImpersonationRequest, ImpersonationSession, OutboxMessage, RequestState
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext

METRICS_PATH = "/metrics"
#: Slack wants its ack within 3 s (https://api.slack.com/interactivity/handling#acknowledgment_response);
#: the buckets are fine below that and stop shortly after
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
#: the window of "rows finished by outcome" (a gauge: outbox rows are pruned, so totals shrink)
FINISHED_WINDOW = timedelta(hours=1)
CHECKPOINT_EVENT = "audit.checkpoint"

REQUESTS = Counter(
    "impbot_http_requests", "HTTP requests answered, by Flask route, method and status", ["route", "method", "status"]
)
DURATION = Histogram(
    "impbot_http_request_duration_seconds",
    "time from receiving a request to its response, by route (/slack/events: the ack to Slack)",
    ["route"],
    buckets=LATENCY_BUCKETS,
)


class DatabaseCollector(Collector):
    """Gauges and counters read from the database when Prometheus scrapes."""

    def __init__(self, ctx: DomainContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from bot.domain.outbox import PENDING, SENDING

        now = utcnow()
        with reading(self._ctx.sessions) as db:
            waiting = db.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.state.in_((PENDING, SENDING)))
            ).one()
            finished = db.execute(
                select(OutboxMessage.state, func.count())
                .where(OutboxMessage.finished_at >= now - FINISHED_WINDOW)
                .group_by(OutboxMessage.state)
            ).all()
            live = db.execute(
                select(func.count()).select_from(ImpersonationSession).where(
                    ImpersonationSession.ended_at.is_(None), ImpersonationSession.expires_at > now
                )
            ).scalar_one()
            pending = db.execute(
                select(func.count()).select_from(ImpersonationRequest).where(
                    ImpersonationRequest.state == RequestState.PENDING.value
                )
            ).scalar_one()
            alerts = db.execute(select(func.count()).select_from(Alert)).scalar_one()
            appended = db.execute(select(AuditHead.seq)).scalar()
            checkpoint = db.execute(
                select(func.max(AuditEvent.occurred_at)).where(AuditEvent.type == CHECKPOINT_EVENT)
            ).scalar()

        yield GaugeMetricFamily("impbot_outbox_depth", "Slack messages owed and not yet delivered (pending or sending)", value=waiting[0])
        oldest = GaugeMetricFamily(
            "impbot_outbox_oldest_age_seconds", "age of the oldest message still owed to Slack; 0 when none is"
        )
        oldest.add_metric([], (now - waiting[1]).total_seconds() if waiting[1] is not None else 0.0)
        yield oldest
        outcomes = GaugeMetricFamily(
            "impbot_outbox_finished_last_hour", "outbox rows that finished in the last hour, by outcome", labels=["outcome"]
        )
        for state, count in finished:
            outcomes.add_metric([state], count)
        yield outcomes
        yield GaugeMetricFamily("impbot_live_sessions", "impersonation sessions open now", value=live)
        yield GaugeMetricFamily("impbot_pending_requests", "requests waiting for approval", value=pending)
        yield CounterMetricFamily("impbot_alerts_raised", "alerts raised to the security channel, ever", value=alerts)
        yield CounterMetricFamily("impbot_audit_events_appended", "audit events in the hash chain", value=appended or 0)
        age = GaugeMetricFamily(
            "impbot_last_checkpoint_age_seconds", "age of the newest signed audit checkpoint; absent before the first"
        )
        if checkpoint is not None:
            age.add_metric([], (now - checkpoint).total_seconds())
        yield age


def install_metrics(app: Flask, ctx: DomainContext, *, token: str | None) -> None:
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(ctx))

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None and request.path != METRICS_PATH:
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            REQUESTS.labels(route, request.method, str(response.status_code)).inc()
            DURATION.labels(route).observe(time.perf_counter() - started)
        return response

    @app.get(METRICS_PATH)
    def metrics() -> Response:
        if not token:
            return Response("Not Found\n", status=404, mimetype="text/plain")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("Unauthorized\n", status=401, mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})
        body = generate_latest(_request_registry()) + generate_latest(database)
        response = Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)
        response.headers["Cache-Control"] = "no-store"
        return response


def _request_registry() -> CollectorRegistry:
    # prometheus-client chose where this process's values live when it was imported (its
    # values.ValueClass); follow that choice, not the environment as it is now
    if values.ValueClass is not values.MutexValue and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY
