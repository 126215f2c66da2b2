"""bench/exactly_once.py judges a multi-process run: it passes a run where every change was made
once and every message sent once, and names each way a run can fall short of that."""
from __future__ import annotations

from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import delete

from bench import exactly_once
from bench.exactly_once import REDEEM, SUBMIT, Answered
from bot.db.models import MessageRef
from bot.domain import links, outbox, requests
from bot.domain.clock import utcnow
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.courier import SlackCourier
from tests.fakes.attacker import rewrite
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack, FakeUser

BOT_TOKEN = "xoxb-fake-bot-token"


@pytest.fixture
def fake():
    with FakeSlack(bot_token=BOT_TOKEN, users=[FakeUser("UAGENT1", email="agent1@corp.example")], channels=["CSECURITY1"]) as fake:
        yield fake


@pytest.fixture
def run(ctx, session_factory, tmp_path, fake):
    """A granted request, its link redeemed, every message it owed delivered: the answered
    requests and the stand-in's calls, as a run hands them over."""
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    token = granted.link.url.rsplit("/", 1)[1]
    deliver(ctx, fake)
    links.redeem(ctx, token)
    deliver(ctx, fake)
    return [Answered(SUBMIT, ("UAGENT1", "acme", "u-bob")), Answered(REDEEM, token)]


def deliver(ctx, fake) -> None:
    report = outbox.deliver_due(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=fake.url)))
    assert report.failed == 0


def judge(session_factory, answered, fake, **kwargs):
    calls = exactly_once.slack_calls((c.method, c.args, c.response, c.time) for c in fake.calls)
    return exactly_once.check(session_factory, answered, calls, **kwargs)


def test_a_run_that_did_everything_once_passes(session_factory, run, fake):
    verdict = judge(session_factory, run, fake)
    assert verdict.problems == [] and verdict.orphan_posts == []
    assert verdict.answered == {SUBMIT: 1, REDEEM: 1}
    # the agent's DM and the security feed, each posted once and edited when the session began
    assert (verdict.posts, verdict.posted_targets) == (2, 2) and verdict.edits >= 2
    assert verdict.chain_ok and verdict.audit_events >= 4


def test_a_message_posted_again_is_an_orphan_post(session_factory, run, fake):
    WebClient(token=BOT_TOKEN, base_url=fake.url).chat_postMessage(channel="UAGENT1", text="the link DM once more")
    verdict = judge(session_factory, run, fake)
    (orphan,) = verdict.orphan_posts
    assert orphan.method == "chat.postMessage" and orphan.channel == fake.dm_channel("UAGENT1")
    assert verdict.duplicates == 1


def test_an_answered_request_whose_change_is_missing_is_named(session_factory, run, fake):
    verdict = judge(session_factory, [*run, Answered(SUBMIT, ("UAGENT1", "acme", "u-alice")), Answered(REDEEM, "not-a-token")], fake)
    assert len(verdict.problems) == 2
    assert "('UAGENT1', 'acme', 'u-alice') answered 200: 0 requests stored" in verdict.problems[0]
    assert "link not stored" in verdict.problems[1]


def test_a_row_still_owed_is_named_and_one_due_later_is_not(ctx, session_factory, run, fake):
    now = utcnow()
    with session_factory() as db, db.begin():
        outbox.enqueue(db, outbox.Kind.FEED, "req-owed", now=now)
        outbox.enqueue(db, outbox.Kind.FEED, "req-later", now=now + timedelta(minutes=5))
    verdict = judge(session_factory, run, fake, now=now + timedelta(seconds=1))
    assert verdict.problems == ["1 feed outbox row(s) still pending"]
    assert verdict.not_yet_due == 1


def test_a_sent_message_whose_ts_was_not_kept_is_named(session_factory, run, fake):
    with session_factory() as db, db.begin():
        db.execute(delete(MessageRef))  # the feed message's ts, lost
    verdict = judge(session_factory, run, fake)
    assert any("feed row about" in p and "no posted message kept" in p for p in verdict.problems), verdict.problems
    assert len(verdict.orphan_posts) == 1
    assert any("edit(s) of messages never posted" not in p for p in verdict.problems)


def test_a_broken_audit_chain_is_named(engine, session_factory, run, fake):
    rewrite(engine, "UPDATE audit_events SET details = :details WHERE seq = 2", details='{"tampered": true}')
    verdict = judge(session_factory, run, fake)
    assert not verdict.chain_ok
    assert any(p.startswith("audit chain broken at seq 2") for p in verdict.problems), verdict.problems
