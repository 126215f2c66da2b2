"""A signed Slack request replayed inside Slack's 5-minute window acts once: over real HTTP,
sent again in sequence and all at once, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import threading
import time

from sqlalchemy import func, select

from bot.db.models import AuditEvent, ImpersonationRequest, SlackDelivery
from bot.domain.audit import verify_chain
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.listeners.flow import request_state
from tests.slack.signed import block_suggestion, view_submission


def _count(session_factory, model, *where) -> int:
    with session_factory() as db:
        return db.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _link_dms(fake) -> int:
    return len([c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "UAGENT1"])


def test_a_replayed_submission_creates_one_request_and_one_link(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    body = view_submission(request_state(), callback_id=CallbackId.IMPERSONATE_REQUEST.value)
    ts = int(time.time())
    replies = [bot.send(body, timestamp=ts) for _ in range(3)]
    bot.delivered()
    assert [r.status for r in replies] == [200, 200, 200]
    assert _count(session_factory, ImpersonationRequest) == 1
    assert _link_dms(fake) == 1
    # the replays are refused once in the audit log, and counted
    (refused,) = [e for e in _events(session_factory) if e.type == "slack.replay_refused"]
    assert refused.actor_slack_id == "UAGENT1"
    assert json.loads(refused.details) == {"kind": "view_submission", "route": CallbackId.IMPERSONATE_REQUEST.value, "team": "T1"}
    with session_factory() as db:
        assert db.execute(select(SlackDelivery.replays)).scalars().all() == [2]
        assert verify_chain(db)[1] is None


def test_concurrent_replays_act_exactly_once(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    body = view_submission(request_state(), callback_id=CallbackId.IMPERSONATE_REQUEST.value)
    ts = int(time.time())
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        statuses.append(bot.send(body, timestamp=ts).status)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bot.delivered()
    assert statuses == [200] * 12
    assert _count(session_factory, ImpersonationRequest) == 1
    assert _link_dms(fake) == 1
    assert _count(session_factory, AuditEvent, AuditEvent.type == "request.created") == 1
    assert _count(session_factory, AuditEvent, AuditEvent.type == "slack.replay_refused") == 1


def test_slacks_own_retry_is_ignored_without_a_refusal(running_bot, session_factory):
    bot = running_bot
    body = view_submission(request_state(), callback_id=CallbackId.IMPERSONATE_REQUEST.value)
    ts = int(time.time())
    assert bot.send(body, timestamp=ts).status == 200
    assert bot.send(body, timestamp=ts, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}).status == 200
    bot.delivered()
    assert _count(session_factory, ImpersonationRequest) == 1
    assert _count(session_factory, AuditEvent, AuditEvent.type == "slack.replay_refused") == 0


def test_two_submissions_of_the_same_form_are_two_requests(running_bot, session_factory):
    """Slack signs each delivery anew (its own trigger_id and timestamp): only replays are dropped."""
    bot = running_bot
    for user in ("u-bob", "u-alice"):
        assert bot.send(view_submission(request_state(user=user), callback_id=CallbackId.IMPERSONATE_REQUEST.value)).status == 200
    bot.delivered()
    assert _count(session_factory, ImpersonationRequest) >= 1
    assert _count(session_factory, AuditEvent, AuditEvent.type == "slack.replay_refused") == 0
    assert _count(session_factory, SlackDelivery) == 2


def test_a_typeahead_asked_again_answers_again(running_bot, session_factory):
    bot = running_bot
    body = block_suggestion(ActionId.ACCOUNT_SELECT.value, "glo", block_id=BlockId.ACCOUNT.value)
    ts = int(time.time())
    answers = [bot.send(body, timestamp=ts) for _ in range(2)]
    assert [a.json()["options"][0]["value"] for a in answers] == ["globex", "globex"]
    assert _count(session_factory, SlackDelivery) == 0


def _events(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        return list(db.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
