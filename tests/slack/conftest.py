"""Fixtures for the Slack face: a recording WebClient, the Bolt app built on it, and a
helper to send it requests signed as Slack signs them."""
from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.response import BoltResponse
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import AuditEvent
from bot.domain.approver_dms import MessageView, recorded_dms
from bot.domain.context import DomainContext
from bot.domain.outbox import InlineDeliverer
from bot.slack.app import build_slack_app
from bot.slack.courier import SlackCourier
from bot.web.background import AfterResponse, BackgroundDeliverer
from tests.slack.recording_client import RecordingWebClient
from tests.slack.signed import SIGNING_SECRET, signed


@pytest.fixture
def slack_client() -> RecordingWebClient:
    return RecordingWebClient()


@pytest.fixture
def after_response():
    """The background thread that sends what a listener's change owed, as in the running app."""
    worker = AfterResponse(name="after-response-test")
    yield worker
    worker.shutdown()


@pytest.fixture
def slack_app(ctx, slack_client, after_response) -> App:
    deliverer = BackgroundDeliverer(InlineDeliverer(ctx, SlackCourier(ctx, slack_client)), after_response)
    return build_slack_app(ctx, client=slack_client, signing_secret=SIGNING_SECRET, deliverer=deliverer)


@pytest.fixture
def send(slack_app, after_response):
    """send(body) → BoltResponse: dispatch a correctly signed request to the app, then wait
    until the background thread has delivered everything the request's change owed."""

    def _send(body: str) -> BoltResponse:
        response = slack_app.dispatch(signed(body))
        assert after_response.wait_idle(), "the background deliveries did not finish"
        return response

    return _send


def response_json(response: BoltResponse) -> dict[str, Any]:
    return json.loads(response.body) if response.body else {}


def recorded_approver_dms(ctx: DomainContext, subject_id: str) -> tuple[MessageView, ...]:
    """The approvers' DMs about a request or an extension that the outbox recorded as sent."""
    with reading(ctx.sessions) as db:
        return recorded_dms(db, subject_id)


def audit_events(session_factory, event_type: str | None = None) -> list[AuditEvent]:
    with session_factory() as db:
        statement = select(AuditEvent).order_by(AuditEvent.seq)
        if event_type is not None:
            statement = statement.where(AuditEvent.type == event_type)
        return list(db.execute(statement).scalars())
