"""/metrics (bot/web/metrics.py): not public, Prometheus text, per-route request series with no
secret in a label, and database-derived gauges that follow the state."""
from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from bot.db.models import OutboxMessage
from bot.domain import audit, outbox
from bot.domain.audit import EventDraft
from bot.domain.clock import utcnow
from bot.web.app import REFUSALS_EXTENSION, create_web_app
from bot.web.metrics import CHECKPOINT_EVENT

TOKEN = "metrics-test-token-0123456789"


@pytest.fixture
def metrics_app(ctx, csrf_secret):
    app = create_web_app(ctx, csrf_secret=csrf_secret, metrics_token=TOKEN)
    app.testing = True
    yield app
    app.extensions[REFUSALS_EXTENSION].close()


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")  # the Prometheus text format
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_without_a_token_configured_there_is_no_metrics_endpoint(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_a_scrape_without_the_bearer_token_is_refused(metrics_app, header):
    headers = {"Authorization": header} if header else {}
    response = metrics_app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert b"impbot_" not in response.data


def test_requests_are_counted_by_route_never_by_path(metrics_app):
    client = metrics_app.test_client()
    before = scrape(client)
    key = ("impbot_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    link = ("impbot_http_requests_total", (("method", "GET"), ("route", "/l/<token>"), ("status", "404")))
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/l/secret-link-token-abcdefghijklmnop").status_code == 404
    after = scrape(client)
    assert after[key] - before.get(key, 0) == 3
    assert after[link] - before.get(link, 0) == 1
    assert not any("secret-link-token" in str(labels) for _, labels in after)
    count = ("impbot_http_request_duration_seconds_count", (("route", "/healthz"),))
    assert after[count] - before.get(count, 0) == 3


def test_database_gauges_follow_the_state(metrics_app, session_factory):
    client = metrics_app.test_client()
    empty = scrape(client)
    assert empty[("impbot_outbox_depth", ())] == 0
    assert empty[("impbot_outbox_oldest_age_seconds", ())] == 0
    assert ("impbot_last_checkpoint_age_seconds", ()) not in empty
    start = utcnow()
    with session_factory() as db, db.begin():
        outbox.enqueue(db, outbox.Kind.DIGEST, "2026Q1", now=start)
        outbox.enqueue(db, outbox.Kind.DIGEST, "2026Q2", now=start)
        outbox.enqueue(db, outbox.Kind.DIGEST, "2026Q3", now=start)
        db.execute(
            update(OutboxMessage).where(OutboxMessage.subject_id == "2026Q3").values(state=outbox.FAILED, finished_at=start)
        )
        audit.append(db, EventDraft(type=CHECKPOINT_EVENT, details={}))
    with freeze_time(start + timedelta(minutes=10)):
        samples = scrape(client)
    assert samples[("impbot_outbox_depth", ())] == 2
    assert samples[("impbot_outbox_oldest_age_seconds", ())] == pytest.approx(600, abs=1)
    assert samples[("impbot_outbox_finished_last_hour", (("outcome", "failed"),))] == 1
    assert samples[("impbot_last_checkpoint_age_seconds", ())] >= 599
    assert samples[("impbot_audit_events_appended_total", ())] == empty[("impbot_audit_events_appended_total", ())] + 1
    assert samples[("impbot_live_sessions", ())] == 0 and samples[("impbot_pending_requests", ())] == 0
    assert ("impbot_alerts_raised_total", ()) in samples
