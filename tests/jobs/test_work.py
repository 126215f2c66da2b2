"""The scheduler's jobs end to end: expiry warnings, expiry, pending TTL,
lapsed links, digests and checkpoints, delivered through the outbox to the project's fake
Slack over HTTP. Two schedulers at once send each notice once; a scheduler that was down
catches up overdue work once. The clock is frozen and moved by hand."""
from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from slack_sdk import WebClient
from sqlalchemy import select

from bot.db.engine import make_engine, make_session_factory
from bot.db.models import AuditEvent
from bot.domain import approvals, asks, extensions, links, requests, sessions
from bot.domain.context import DomainContext
from bot.domain.requests import AgentIdentity, RequestForm
from bot.jobs import work
from bot.domain.outbox import InlineDeliverer
from bot.slack.courier import SlackCourier
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack, FakeUser

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)  # a Monday, the weekly digest's slot
BOT_TOKEN = "xoxb-fake-bot-token"
PEOPLE = ["UAGENT1", "UAGENT2", "USENIOR1", "UMANAGER1", "UMANAGER2", "UMANAGER3", "USECURITY1"]


@pytest.fixture
def fake_slack():
    with FakeSlack(bot_token=BOT_TOKEN, users=[FakeUser(u) for u in PEOPLE], channels=["CSECURITY1"]) as fake:
        yield fake


def with_courier(ctx: DomainContext, fake: FakeSlack) -> DomainContext:
    ctx.courier = SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=fake.url))
    return ctx


def second_scheduler(ctx: DomainContext, db_url: str, fake: FakeSlack) -> DomainContext:
    """Another scheduler process's context: its own engine and connections."""
    engine = make_engine(db_url)
    other = DomainContext(
        sessions=make_session_factory(engine),
        policy=ctx.policy,
        signing_key=ctx.signing_key,
        public_base_url=ctx.public_base_url,
        product_launch_url=ctx.product_launch_url,
        groups=ctx.groups,
        people=ctx.people,
    )
    return with_courier(other, fake)


def form(account: str, user: str, minutes: int = 15) -> RequestForm:
    return RequestForm(account=account, user=user, reason="customer ticket about billing", ticket="SUP-1", duration_minutes=minutes, scope="read_only")


@pytest.fixture
def scenario(ctx, session_factory, tmp_path, fake_slack):
    """At T0: two live sessions (A: 15 min, B: 30 min), a pending request (P, TTL 30 min) and
    a grant whose link is never opened (G, window 5 min), each with its DMs in Slack."""
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})
    with_courier(ctx, fake_slack)
    deliverer = InlineDeliverer(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=fake_slack.url)))
    with freeze_time(T0):
        made = {}
        for name, agent, (account, user, minutes) in (
            ("A", "UAGENT1", ("acme", "u-bob", 15)),
            ("B", "USENIOR1", ("umbrella", "u-eve", 30)),
            ("P", "UAGENT1", ("globex", "u-carol", 15)),
            ("G", "UAGENT1", ("initech", "u-dave", 15)),
        ):
            result = requests.submit_request(ctx, AgentIdentity(agent), form(account, user, minutes))
            deliverer.deliver(result.targets)
            made[name] = result
        for name in ("A", "B"):
            redeemed = links.redeem(ctx, made[name].link.url.rsplit("/", 1)[1])
            made[name] = redeemed.session
    assert isinstance(made["P"], requests.Pending) and isinstance(made["G"], requests.Granted)
    return made


def run_jobs(*contexts: DomainContext) -> None:
    """Every job once in each context, the contexts side by side (threads)."""
    barrier = threading.Barrier(len(contexts))
    errors: list[BaseException] = []

    def scheduler(ctx):
        barrier.wait()
        try:
            for job in work.ALL:
                job(ctx)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scheduler, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def headers(fake: FakeSlack, method: str) -> Counter:
    """How many calls of `method` carried each message headline."""
    return Counter(c.args["blocks"][0]["text"]["text"] for c in fake.calls_to(method) if c.ok and c.args.get("blocks"))


def assert_no_message_shown_twice_in_a_row(fake: FakeSlack) -> None:
    """A notice sent twice would show as the same version of a message twice in a row."""
    for message in fake.messages.values():
        versions = [v["blocks"] for v in message.history] + [message.blocks]
        assert all(a != b for a, b in zip(versions, versions[1:])), message.blocks[0]


def test_two_schedulers_at_once_send_each_notice_once(ctx, db_url, scenario, fake_slack):
    other = second_scheduler(ctx, db_url, fake_slack)
    posts_before = Counter(headers(fake_slack, "chat.postMessage"))
    with freeze_time(T0 + timedelta(minutes=12)) as clock:
        for _ in range(6):  # a few ticks: the security channel takes one new message a second
            run_jobs(ctx, other)
            clock.tick(timedelta(seconds=1))
        clock.move_to(T0 + timedelta(minutes=40))
        for _ in range(6):
            run_jobs(ctx, other)
            clock.tick(timedelta(seconds=1))

    posts = headers(fake_slack, "chat.postMessage") - posts_before
    assert posts["Your session ends in 3 minutes"] == 1  # A, warned once at T0+12m
    assert not [h for h in posts if h.startswith("Your session ends in") and h != "Your session ends in 3 minutes"]
    # the feed, one message per grant: A's went out with its grant (the submission delivers
    # what it owed; the channel takes one new message a second), B's once live, G's once it
    # had lapsed (rendered from the state)
    assert posts_before["Impersonation granted"] + posts["Impersonation live"] == 2 and posts["Impersonation link lapsed"] == 1
    assert posts["Access review: week-2030-01-07"] == 1 and posts["Access review: 2029Q4"] == 1
    assert posts["Audit checkpoint"] == 1
    updates = headers(fake_slack, "chat.update")
    assert updates["Link expired unused"] == 1  # G lapsed
    assert updates["Expired: impersonation"] == 3  # P: each approver's DM
    assert updates["Request expired"] == 1  # P: the agent's DM
    assert sum(n for h, n in updates.items() if h.startswith("Session expired at")) == 3  # A's and B's DMs, and A's warning
    assert len(fake_slack.files) == 6 and all(f.completed for f in fake_slack.files.values())
    assert_no_message_shown_twice_in_a_row(fake_slack)
    fake_slack.assert_no_violations()


def test_a_restart_after_downtime_catches_up_overdue_work_once(ctx, scenario, fake_slack):
    posts_before = Counter(headers(fake_slack, "chat.postMessage"))
    # The scheduler was down from T0 until T0 + 2 h: everything fell due meanwhile.
    with freeze_time(T0 + timedelta(hours=2)) as clock:
        for _ in range(8):
            run_jobs(ctx)  # the first run catches up; later runs find nothing new
            clock.tick(timedelta(seconds=1))
    posts = headers(fake_slack, "chat.postMessage") - posts_before
    # Sessions already over get no late warning: they are recorded as expired.
    assert not [h for h in posts if h.startswith("Your session ends in")]
    updates = headers(fake_slack, "chat.update")
    assert sum(n for h, n in updates.items() if h.startswith("Session expired at")) == 2
    assert updates["Expired: impersonation"] == 3 and updates["Request expired"] == 1
    assert updates["Link expired unused"] == 1
    assert posts["Access review: week-2030-01-07"] == 1 and posts["Access review: 2029Q4"] == 1
    assert posts["Audit checkpoint"] == 1
    assert_no_message_shown_twice_in_a_row(fake_slack)
    fake_slack.assert_no_violations()


def test_an_extended_session_is_warned_again_before_its_new_end(ctx, session_factory, tmp_path, fake_slack):
    load_directory(session_factory, tmp_path)
    with_courier(ctx, fake_slack)
    with freeze_time(T0) as clock:
        granted = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form("umbrella", "u-eve", 30))
        session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
        clock.move_to(T0 + timedelta(minutes=26))
        run_jobs(ctx)
        asked = extensions.request_extension(ctx, session.id, agent_slack_id="USENIOR1", minutes=30, reason="still reproducing the bug")
        extensions.decide_extension(ctx, asked.ask.extension.id, clicker_slack_id="UMANAGER1", approve=True)
        run_jobs(ctx)  # the new end is 30 minutes away: nothing to say yet
        clock.move_to(T0 + timedelta(minutes=56))
        run_jobs(ctx)
    # One warning message, shown again (edited in place, with its buttons) for the new end.
    (warning,) = [m for m in fake_slack.messages.values() if m.blocks[0]["text"]["text"].startswith("Your session ends in")]
    assert len(warning.history) == 1
    assert "09:30 UTC" in warning.history[0]["blocks"][1]["text"]["text"]
    assert "10:00 UTC" in warning.blocks[1]["text"]["text"]
    assert [e["action_id"] for e in warning.blocks[2]["elements"]] == ["end_session", "request_extension"]
    # the security feed shows the new end too
    (feed,) = [m for m in fake_slack.messages_in("CSECURITY1") if m.blocks[0]["text"]["text"].startswith("Impersonation")]
    new_end = int((T0 + timedelta(minutes=60)).timestamp())
    assert f"<!date^{new_end}^" in json.dumps(feed.blocks) and "Ending soon" in json.dumps(feed.blocks)


def test_an_ask_for_more_time_nobody_decided_is_expired_once(ctx, db_url, session_factory, tmp_path, fake_slack):
    """Like a pending request: past its TTL the scheduler expires it, audited
    by the clock, and every approver's DM and the agent's session DM say so; two schedulers
    at once, and later runs, change nothing more."""
    load_directory(session_factory, tmp_path)
    with_courier(ctx, fake_slack)
    deliverer = InlineDeliverer(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=fake_slack.url)))
    ttl = timedelta(minutes=ctx.policy.gating.pending_ttl_minutes)
    with freeze_time(T0) as clock:
        granted = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form("umbrella", "u-eve", 60))
        deliverer.deliver(granted.targets)
        session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
        asked = extensions.request_extension(ctx, session.id, agent_slack_id="USENIOR1", minutes=30, reason="still reproducing the bug")
        deliverer.deliver(asked.targets)
        run_jobs(ctx)
        clock.move_to(T0 + ttl - timedelta(seconds=1))
        run_jobs(ctx)  # not yet due
        assert isinstance(asks.approver_message_state(ctx, asked.ask.extension.id), approvals.ApprovalAsk)  # still pending
        clock.move_to(T0 + ttl)
        other = second_scheduler(ctx, db_url, fake_slack)
        for _ in range(3):
            run_jobs(ctx, other)
            clock.tick(timedelta(seconds=1))
    assert extensions.last_extension_outcome(ctx, session.id).outcome == "expired"
    with session_factory() as db:
        events = [e for e in db.execute(select(AuditEvent).where(AuditEvent.type == "extension.expired")).scalars()]
    assert len(events) == 1 and (events[0].actor_slack_id, events[0].actor_role) == (None, "clock")
    assert json.loads(events[0].details)["session_live"] is True
    updates = headers(fake_slack, "chat.update")
    asked_approvers = len(asked.ask.approvers)
    assert asked_approvers >= 1
    # every approver's ask, and the reminder each got halfway through the TTL, loses its buttons
    for approver in asked.ask.approvers:
        dms = [m for m in fake_slack.messages.values() if m.channel == fake_slack.dm_channel(approver)]
        assert len(dms) == 2
        for dm in dms:
            assert not [b for b in dm.blocks if b["type"] == "actions"]
    # the agent's session DM no longer says it is waiting for approvers
    (agent_dm,) = [m for m in fake_slack.messages.values() if m.channel == fake_slack.dm_channel("USENIOR1") and m.blocks[0]["text"]["text"].startswith("Session active")]
    assert "waiting" not in json.dumps(agent_dm.blocks).lower()
    assert updates  # the edits went out as chat.update
    assert_no_message_shown_twice_in_a_row(fake_slack)
    fake_slack.assert_no_violations()


def test_an_ask_for_more_time_on_a_session_that_ended_is_expired(ctx, session_factory, tmp_path, fake_slack):
    load_directory(session_factory, tmp_path)
    with_courier(ctx, fake_slack)
    with freeze_time(T0) as clock:
        granted = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form("umbrella", "u-eve", 60))
        session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
        extensions.request_extension(ctx, session.id, agent_slack_id="USENIOR1", minutes=30, reason="still reproducing the bug")
        clock.tick(timedelta(minutes=2))
        sessions.end_session(ctx, session.id, actor_slack_id="USENIOR1")
        run_jobs(ctx)
    assert extensions.last_extension_outcome(ctx, session.id).outcome == "expired"
    with session_factory() as db:
        (event,) = db.execute(select(AuditEvent).where(AuditEvent.type == "extension.expired")).scalars()
    assert json.loads(event.details)["session_live"] is False
