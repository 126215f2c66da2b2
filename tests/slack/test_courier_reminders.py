"""The courier's reminders (Kind.REMINDER): a new DM while the ask is pending, edited to the
outcome once decided, and never posted late once the ask is decided."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from slack_sdk import WebClient

from bot.domain import approvals, outbox, requests, watch
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.courier import SlackCourier
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack, FakeUser

BOT_TOKEN = "xoxb-fake-bot-token"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
MANAGERS = ("UMANAGER1", "UMANAGER2", "UMANAGER3")


@pytest.fixture
def slack():
    users = [FakeUser("UAGENT1", tz="Europe/Paris"), *(FakeUser(m) for m in MANAGERS)]
    with FakeSlack(bot_token=BOT_TOKEN, users=users) as fake:
        yield fake


@pytest.fixture
def reminded(ctx, session_factory, tmp_path):
    """A request on a sensitive account, its asks sent, reminded at half its TTL."""
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})
    form = RequestForm(account="globex", user="u-carol", reason="customer cannot see invoices", ticket="SUP-1", duration_minutes=30, scope="read_only")
    with freeze_time(T0):
        pending = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    with freeze_time(T0 + timedelta(minutes=15)):
        assert watch.nudge_pending_approvals(ctx) == 1
    return pending.request.id


def _deliver(ctx, slack, at):
    with freeze_time(at):
        outbox.deliver_due(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=slack.url)), now=at)


def _reminders(slack):
    return [m for m in slack.messages.values() if m.blocks[0]["text"]["text"].startswith("Reminder")]


def test_a_reminder_is_a_new_dm_then_edited_to_the_outcome(ctx, slack, reminded):
    _deliver(ctx, slack, T0 + timedelta(minutes=15))
    shown = _reminders(slack)
    assert sorted(m.channel for m in shown) == sorted(slack.dm_channel(m) for m in MANAGERS)
    assert all(any(b["type"] == "actions" for b in m.blocks) for m in shown)
    with freeze_time(T0 + timedelta(minutes=16)):
        decided = approvals.approve_request(ctx, reminded, clicker_slack_id="UMANAGER2")
    assert isinstance(decided, approvals.Decided)
    _deliver(ctx, slack, T0 + timedelta(minutes=16))
    for message in shown:  # edited in place, buttons gone
        assert message.blocks[0]["text"]["text"] == "Approved: impersonation" and len(message.history) == 1
        assert not [b for b in message.blocks if b["type"] == "actions"]
    slack.assert_no_violations()


def test_a_reminder_still_owed_when_the_ask_is_decided_is_never_posted(ctx, slack, reminded):
    with freeze_time(T0 + timedelta(minutes=15, seconds=1)):
        approvals.deny_request(ctx, reminded, clicker_slack_id="UMANAGER1", reason="not for this ticket")
    _deliver(ctx, slack, T0 + timedelta(minutes=15, seconds=1))
    assert _reminders(slack) == []
    assert {r.state for r in outbox.rows(ctx, kinds=[outbox.Kind.REMINDER])} <= {"skipped", "merged"}
    slack.assert_no_violations()
