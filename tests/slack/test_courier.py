"""The outbox's Slack side (bot/slack/courier.py, bot/slack/errors.py): rows rendered from the
current state and sent to the project's fake Slack over HTTP; Slack's 429, 5xx and permanent
errors become the outbox's retry, backoff and audited failure."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from sqlalchemy import update

from bot.db.models import ImpersonationRequest
from bot.domain import approvals, extensions, links, outbox, requests, revocation, sessions
from bot.domain.outbox import InlineDeliverer, Permanent, RetryAfter, Transient
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.courier import SlackCourier
from bot.slack.errors import classify
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack, FakeUser
from tests.slack.conftest import audit_events, recorded_approver_dms
from tests.slack.listeners.flow import BREAK_GLASS_REASON, with_break_glass

BOT_TOKEN = "xoxb-fake-bot-token"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)


def failed_call(status: int, body: dict, headers: dict | None = None) -> SlackApiError:
    response = SlackResponse(client=None, http_verb="POST", api_url="https://slack.invalid/api/chat.postMessage", req_args={}, data=body, headers=headers or {}, status_code=status)
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}, RetryAfter(7.0, "ratelimited")),
        (429, {"ok": False, "error": "ratelimited"}, {"retry-after": ["12"]}, RetryAfter(12.0, "ratelimited")),
        (429, {"ok": False, "error": "ratelimited"}, {}, RetryAfter(1.0, "ratelimited")),
        (200, {"ok": False, "error": "ratelimited"}, {"Retry-After": "junk"}, RetryAfter(1.0, "ratelimited")),
        (503, {"ok": False, "error": "service_unavailable"}, {}, Transient("service_unavailable")),
        (500, {"ok": False}, {}, Transient("http_500")),
        (200, {"ok": False, "error": "internal_error"}, {}, Transient("internal_error")),
        (200, {"ok": False, "error": "channel_not_found"}, {}, Permanent("channel_not_found")),
        (200, {"ok": False, "error": "not_in_channel"}, {}, Permanent("not_in_channel")),
        (200, {"ok": False, "error": "is_archived"}, {}, Permanent("is_archived")),
        (200, {"ok": False, "error": "user_not_found"}, {}, Permanent("user_not_found")),
        (200, {"ok": False, "error": "invalid_blocks"}, {}, Permanent("invalid_blocks")),
    ],
)
def test_slacks_answers_become_outbox_outcomes(status, body, headers, expected):
    assert classify(failed_call(status, body, headers)) == expected


@pytest.fixture
def fake_slack():
    users = [FakeUser("UAGENT1", tz="Europe/Paris"), FakeUser("USENIOR1"), FakeUser("USECURITY1"), FakeUser("UMANAGER1")]
    with FakeSlack(bot_token=BOT_TOKEN, users=users, channels=["CSECURITY1"]) as fake:
        yield fake


@pytest.fixture
def courier(ctx, fake_slack):
    return SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=fake_slack.url))


@pytest.fixture
def granted(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    with freeze_time(T0):
        form = RequestForm(account="initech", user="u-dave", reason="customer <!channel> ticket", ticket="SUP-1", duration_minutes=30, scope="read_only")
        result = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form)
    assert isinstance(result, requests.Granted)
    return result


def feed_of(granted) -> list[str]:
    """The grant's feed message alone (the grant owes the agent's link DM too)."""
    return [outbox.target_of(outbox.Kind.FEED, granted.request.id, outbox.SECURITY)]


def test_a_rate_limited_feed_post_is_retried_after_retry_after_and_sent_once(ctx, courier, granted, fake_slack):
    fake_slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=7)
    outbox.deliver_due(ctx, courier, now=T0, targets=feed_of(granted))
    (row,) = outbox.rows(ctx, kinds=[outbox.Kind.FEED])
    assert (row.state, row.due_at) == ("pending", T0 + timedelta(seconds=7))
    outbox.deliver_due(ctx, courier, now=T0 + timedelta(seconds=6), targets=feed_of(granted))
    outbox.deliver_due(ctx, courier, now=T0 + timedelta(seconds=7), targets=feed_of(granted))
    posts = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [429, 200]
    (feed,) = fake_slack.messages_in("CSECURITY1")
    assert feed.blocks[0]["text"]["text"] == "Impersonation granted"
    assert "<!channel>" not in json.dumps(feed.blocks) and "&lt;!channel&gt;" in json.dumps(feed.blocks)
    fake_slack.assert_no_violations()


def test_a_server_error_is_retried_with_backoff(ctx, courier, granted, fake_slack):
    fake_slack.fail_next("chat.postMessage", "service_unavailable", status=503)
    outbox.deliver_due(ctx, courier, now=T0, targets=feed_of(granted))
    (row,) = outbox.rows(ctx, kinds=[outbox.Kind.FEED])
    assert row.state == "pending" and outbox.BACKOFF_BASE / 2 <= row.due_at - T0 <= outbox.BACKOFF_BASE
    outbox.deliver_due(ctx, courier, now=row.due_at, targets=feed_of(granted))
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [503, 200]


def test_a_channel_the_bot_cannot_post_in_is_audited_as_notify_failed(ctx, courier, granted, fake_slack, session_factory):
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    outbox.deliver_due(ctx, courier, now=T0, targets=feed_of(granted))
    assert [r.state for r in outbox.rows(ctx, kinds=[outbox.Kind.FEED])] == ["failed"]
    (event,) = audit_events(session_factory, "notify.failed")
    details = json.loads(event.details)
    assert (details["kind"], details["error"], event.request_id) == ("feed", "not_in_channel", granted.request.id)
    assert BOT_TOKEN not in event.details and "/l/" not in event.details


def test_the_agents_dm_shows_the_state_at_delivery(ctx, courier, granted, fake_slack):
    with freeze_time(T0):
        session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
        sessions.end_session(ctx, session.id, actor_slack_id="USENIOR1")
        outbox.deliver_due(ctx, courier)
    # redeemed and ended before any delivery: one DM, already showing the end; its one
    # button asks again (a re-initiation), never End or more time
    (dm,) = fake_slack.messages_in(fake_slack.dm_channel("USENIOR1"))
    assert dm.blocks[0]["text"]["text"].startswith("Session ended at ") and not dm.history
    assert [(e["action_id"], e["value"]) for b in dm.blocks if b["type"] == "actions" for e in b["elements"]] == [
        ("start_new_request", session.id)
    ]
    (feed,) = fake_slack.messages_in("CSECURITY1")
    assert feed.blocks[0]["text"]["text"] == "Impersonation ended"
    fake_slack.assert_no_violations()


def test_a_revocation_notifies_the_agent_and_edits_the_feed(ctx, courier, session_factory, tmp_path, fake_slack):
    load_directory(session_factory, tmp_path)
    with freeze_time(T0):
        result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only"))
        session = links.redeem(ctx, result.link.url.rsplit("/", 1)[1]).session
        outbox.deliver_due(ctx, courier)
        revoked = revocation.revoke_session(ctx, session.id, actor_slack_id="USECURITY1", source="feed")
        assert isinstance(revoked, revocation.Revoked)
        outbox.deliver_due(ctx, courier, targets=revoked.targets)
    dm = fake_slack.dm_channel("UAGENT1")
    headlines = sorted(m.blocks[0]["text"]["text"] for m in fake_slack.messages_in(dm))
    assert headlines[0].startswith("Session was revoked at ") and headlines[1] == "Your session was revoked"
    (feed,) = fake_slack.messages_in("CSECURITY1")
    assert feed.blocks[0]["text"]["text"] == "Impersonation revoked"
    assert "<@USECURITY1>" in feed.blocks[1]["text"]["text"]
    assert not [b for b in feed.blocks if b["type"] == "actions"]
    fake_slack.assert_no_violations()


# ---------------------------------------------------------------------------- approvers' DMs

APPROVERS = ("UMANAGER1", "UMANAGER2", "UMANAGER3")


@pytest.fixture
def approvers_slack():
    users = [FakeUser("UAGENT1"), *(FakeUser(a) for a in APPROVERS)]
    with FakeSlack(bot_token=BOT_TOKEN, users=users, channels=["CSECURITY1"]) as fake:
        yield fake


@pytest.fixture
def crashed_pending(ctx, session_factory, tmp_path):
    """A gated request committed, and the process gone before it sent anything: its
    approvers' DMs exist only as outbox rows."""
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})
    with freeze_time(T0):
        form = RequestForm(account="globex", user="u-carol", reason="customer cannot see invoices", ticket="SUP-1", duration_minutes=30, scope="read_only")
        result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, requests.Pending) and result.ask.approvers == APPROVERS
    return result


def approver_dms(fake_slack):
    return {a: fake_slack.messages_in(fake_slack.dm_channel(a)) for a in APPROVERS}


def test_after_a_crash_each_approver_gets_one_ask_which_the_decision_edits(ctx, approvers_slack, crashed_pending):
    courier = SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=approvers_slack.url))
    with freeze_time(T0 + timedelta(seconds=5)):
        outbox.deliver_due(ctx, courier)
        outbox.deliver_due(ctx, courier)  # a second run finds nothing left to send
    asks = approver_dms(approvers_slack)
    assert all(len(dms) == 1 for dms in asks.values())
    for dm in (dms[0] for dms in asks.values()):
        assert dm.blocks[0]["text"]["text"] == "Approval needed: impersonation"
        assert [b["value"] for b in next(b for b in dm.blocks if b["type"] == "actions")["elements"]] == [crashed_pending.request.id] * 2
    # recorded as approver messages, so that every decision finds them
    assert sorted(m.recipient for m in recorded_approver_dms(ctx, crashed_pending.request.id)) == list(APPROVERS)
    with freeze_time(T0 + timedelta(minutes=1)):
        decided = approvals.deny_request(ctx, crashed_pending.request.id, clicker_slack_id="UMANAGER2", reason="not for this ticket")
        assert isinstance(decided, approvals.Decided)
        InlineDeliverer(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=approvers_slack.url))).deliver(decided.targets)
    for dms in approver_dms(approvers_slack).values():
        (dm,) = dms  # edited in place, never posted again
        assert dm.blocks[0]["text"]["text"] == "Denied: impersonation" and len(dm.history) == 1
        assert not [b for b in dm.blocks if b["type"] == "actions"]
    assert len(approvers_slack.calls_to("chat.update")) >= len(APPROVERS)
    approvers_slack.assert_no_violations()


def test_asks_still_owed_when_the_request_is_decided_are_sent_as_decided(ctx, approvers_slack, crashed_pending):
    # No ask was delivered, yet UMANAGER1 decides (e.g. from another ask's retry): the
    # approvers then get one DM each, already showing the outcome, with no button to click.
    with freeze_time(T0 + timedelta(minutes=1)):
        decided = approvals.approve_request(ctx, crashed_pending.request.id, clicker_slack_id="UMANAGER1")
        if not isinstance(decided, approvals.Decided):
            decided = approvals.approve_request(ctx, crashed_pending.request.id, clicker_slack_id="UMANAGER3")
        assert isinstance(decided, approvals.Decided) and decided.outcome == "approved"
        InlineDeliverer(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=approvers_slack.url))).deliver(decided.targets)
        outbox.deliver_due(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=approvers_slack.url)))
    for dms in approver_dms(approvers_slack).values():
        (dm,) = dms
        assert dm.blocks[0]["text"]["text"] == "Approved: impersonation" and not dm.history
        assert not [b for b in dm.blocks if b["type"] == "actions"]
    assert approvers_slack.calls_to("chat.update") == []
    assert {r.state for r in outbox.rows(ctx, kinds=[outbox.Kind.APPROVER])} <= {"sent", "merged"}
    approvers_slack.assert_no_violations()


def test_a_break_glass_alert_is_owed_with_the_grant_and_sent_once(ctx, courier, fake_slack, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})
    with_break_glass(ctx)
    with freeze_time(T0):
        form = RequestForm(account="globex", user="u-carol", reason=BREAK_GLASS_REASON, ticket="SUP-1", duration_minutes=30, scope="read_only", break_glass=True)
        granted = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form)
        assert isinstance(granted, requests.Granted) and granted.bypassed
        # the agent's link DM, then the alert before the feed, so that it takes the channel's
        # posting slot
        assert [r.kind for r in outbox.rows(ctx)][:3] == ["agent", "break_glass", "feed"]  # then anomaly alerts
        outbox.deliver_due(ctx, courier, targets=[outbox.break_glass_target(granted.request.id)])
        outbox.deliver_due(ctx, courier, targets=[outbox.break_glass_target(granted.request.id)])
    (alert,) = fake_slack.messages_in("CSECURITY1")
    assert alert.blocks[0]["text"]["text"] == "Break-glass impersonation"
    assert "/l/" not in json.dumps(alert.blocks)
    fake_slack.assert_no_violations()


# ---------------------------------------------------------------------------- the agent's DMs


def link_of(message) -> str:
    (url,) = [t for b in message.blocks for t in [((b.get("text") or {}).get("text") or "")] if "|Open session>" in t]
    return url.split("|", 1)[0].lstrip("<")


def test_the_link_dm_is_rendered_at_delivery_and_a_redelivery_sends_the_same_link(ctx, courier, granted, fake_slack, session_factory):
    with freeze_time(T0 + timedelta(seconds=30)):
        outbox.deliver_due(ctx, courier)
    (dm,) = fake_slack.messages_in(fake_slack.dm_channel("USENIOR1"))
    assert link_of(dm) == granted.link.url
    assert dm.args["unfurl_links"] in (False, "0", "false") and granted.link.url not in (dm.text or "")
    # the process died after Slack took the DM and before its ts was stored: the row is sent
    # again, with the same link (a retry never silently replaces a link the agent may hold)
    with session_factory() as db, db.begin():
        db.execute(update(ImpersonationRequest).values(agent_channel=None, agent_message_ts=None))
        outbox.enqueue(db, outbox.Kind.AGENT, granted.request.id, recipient="USENIOR1", now=T0)
    with freeze_time(T0 + timedelta(seconds=31)):
        outbox.deliver_due(ctx, courier)
    first, again = fake_slack.messages_in(fake_slack.dm_channel("USENIOR1"))
    assert link_of(again) == link_of(first) == granted.link.url
    # once the window has passed unopened, the DM loses its link
    with freeze_time(granted.link.expires_at):
        assert courier.render(outbox.Delivery(0, outbox.Kind.AGENT, granted.request.id, "USENIOR1", 1, "t"))[0].endswith("expired unused.")
    fake_slack.assert_no_violations()


def test_the_agents_request_dm_waits_then_shows_the_approval_and_the_link_follows(ctx, approvers_slack, crashed_pending):
    courier = SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=approvers_slack.url))
    with freeze_time(T0 + timedelta(seconds=5)):
        outbox.deliver_due(ctx, courier)
    agent_dm = approvers_slack.dm_channel("UAGENT1")
    (waiting,) = approvers_slack.messages_in(agent_dm)
    assert waiting.blocks[0]["text"]["text"] == "Approval needed"
    with freeze_time(T0 + timedelta(minutes=1)):
        decided = approvals.approve_request(ctx, crashed_pending.request.id, clicker_slack_id="UMANAGER1")
        assert isinstance(decided, approvals.Decided)
        # the click's process died before sending anything: the scheduler sends what it owed
        outbox.deliver_due(ctx, courier)
    request_dm, link_dm = approvers_slack.messages_in(agent_dm)
    assert request_dm is waiting and waiting.blocks[0]["text"]["text"] == "Request approved" and len(waiting.history) == 1
    assert link_of(link_dm) == decided.link.url and not link_dm.history
    assert "Approved by <@UMANAGER1>." in json.dumps(link_dm.blocks)
    # redemption edits the link DM, never the request DM
    assert requests.load_request(ctx, crashed_pending.request.id).agent_message_ts == link_dm.ts
    approvers_slack.assert_no_violations()


def test_an_extensions_outcome_reaches_the_session_dm_through_the_outbox(ctx, approvers_slack, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    courier = SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=approvers_slack.url))
    roles = dict(ctx.policy.roles)
    roles["support"] = roles["support"].model_copy(update={"can_request_extension": True})
    ctx.policy = ctx.policy.model_copy(update={"roles": roles})
    with freeze_time(T0):
        form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=15, scope="read_only")
        granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
        session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
        outbox.deliver_due(ctx, courier)
        asked = extensions.request_extension(ctx, session.id, agent_slack_id="UAGENT1", minutes=15, reason="still reproducing the bug")
        assert isinstance(asked, extensions.ExtensionAsked), asked
        outbox.deliver_due(ctx, courier)
        decided = extensions.decide_extension(ctx, asked.ask.extension.id, clicker_slack_id=asked.ask.approvers[0], approve=False, reason="open a new request")
        assert isinstance(decided, approvals.Decided)
        outbox.deliver_due(ctx, courier)
    (dm,) = approvers_slack.messages_in(approvers_slack.dm_channel("UAGENT1"))
    assert dm.blocks[0]["text"]["text"].startswith("Session active until")
    assert "was denied by" in json.dumps(dm.blocks) and "open a new request" in json.dumps(dm.blocks)
    approvers_slack.assert_no_violations()


# ---------------------------------------------------------------- the Home tab (views.publish)


def home_text(fake_slack, user) -> str:
    view = fake_slack.home_views[user]
    return json.dumps(view["blocks"])


def test_every_home_is_current_after_each_state_change(ctx, courier, fake_slack, session_factory, tmp_path):
    from bot.domain import home

    load_directory(session_factory, tmp_path, flags={"initech": ["sensitive"]})
    clock = [T0]

    def step(change=None):
        """One state change, then the outbox's delivery run a few seconds later (past every
        person's one-publish-a-second slot)."""
        clock[0] += timedelta(seconds=2)
        with freeze_time(clock[0]):
            result = change() if change is not None else None
            outbox.deliver_due(ctx, courier, now=clock[0])
        return result

    for person in ("USENIOR1", "UMANAGER1", "USECURITY1"):
        step(lambda person=person: home.opened(ctx, person))
    assert "No live session" in home_text(fake_slack, "USENIOR1") and "Nothing is waiting for you" in home_text(fake_slack, "UMANAGER1")

    form = RequestForm(account="initech", user="u-dave", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    pending = step(lambda: requests.submit_request(ctx, AgentIdentity("USENIOR1"), form))
    request_id = pending.request.id
    assert "waiting for approval" in home_text(fake_slack, "USENIOR1") and request_id in home_text(fake_slack, "USENIOR1")  # Cancel
    assert request_id in home_text(fake_slack, "UMANAGER1")  # Approve / Deny in the queue
    assert request_id not in home_text(fake_slack, "USECURITY1")

    decided = step(lambda: approvals.approve_request(ctx, request_id, clicker_slack_id="UMANAGER1"))
    assert "Nothing is waiting for you" in home_text(fake_slack, "UMANAGER1")
    assert "granted (link not opened yet)" in home_text(fake_slack, "USENIOR1")

    live = step(lambda: links.redeem(ctx, decided.link.url.rsplit("/", 1)[1]).session)
    assert live.id in home_text(fake_slack, "USENIOR1")  # End session / Ask for more time carry its id
    assert live.id in home_text(fake_slack, "USECURITY1") and "Live sessions across accounts (1)" in home_text(fake_slack, "USECURITY1")

    step(lambda: sessions.end_session(ctx, live.id, actor_slack_id="USENIOR1"))
    assert live.id not in home_text(fake_slack, "USENIOR1") and "No live session" in home_text(fake_slack, "USENIOR1")
    assert "Live sessions across accounts (0)" in home_text(fake_slack, "USECURITY1")
    assert "*ended*" in home_text(fake_slack, "USENIOR1")
    fake_slack.assert_no_violations()
    assert [c.args["user_id"] for c in fake_slack.calls_to("views.publish")].count("UMANAGER1") < len(fake_slack.calls_to("views.publish"))
