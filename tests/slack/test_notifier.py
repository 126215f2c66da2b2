"""The agent's DM is edited in place when their link is redeemed (issue 2 point 14)."""
import logging

import pytest

from bot.domain import links, requests, sessions
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.ids import ActionId
from bot.slack.notifier import SlackSessionNotifier
from tests.fakes.directory_data import load_directory
from tests.slack.block_rules import problems, walk
from tests.slack.recording_client import BOT_TOKEN


@pytest.fixture
def redeemed(ctx, session_factory, tmp_path):
    """grant → (optionally) remember the DM → redeem; returns a function doing that."""
    load_directory(session_factory, tmp_path)

    def _redeem(*, record_dm: bool = True):
        form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
        granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
        if record_dm:
            requests.record_agent_message(ctx, granted.request.id, channel="DAGENT1", ts="1700000000.000099")
        return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session

    return _redeem


def test_session_started_edits_the_grant_dm_in_place(ctx, slack_client, redeemed):
    session = redeemed()
    SlackSessionNotifier(ctx, slack_client).session_started(session.id)
    (update,) = slack_client.calls_to("chat.update")
    assert (update["channel"], update["ts"]) == ("DAGENT1", "1700000000.000099")
    assert update["blocks"][0]["text"]["text"].startswith("Session active until ")
    assert update["blocks"][0]["text"]["text"].endswith(("CET", "CEST"))  # UAGENT1 is in Europe/Paris
    buttons = [obj for _, obj in walk(update["blocks"]) if obj.get("type") == "button"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(ActionId.END_SESSION.value, session.id)]
    assert problems(update["blocks"], surface="message") == []
    assert slack_client.calls_to("chat.postMessage") == []


def test_without_a_recorded_dm_a_new_one_is_posted_and_remembered(ctx, slack_client, redeemed):
    session = redeemed(record_dm=False)
    SlackSessionNotifier(ctx, slack_client).session_started(session.id)
    (posted,) = slack_client.calls_to("chat.postMessage")
    assert posted["channel"] == "UAGENT1" and posted["unfurl_links"] is False
    request = requests.load_request(ctx, session.request.id)
    assert request.agent_channel == "DAGENT1" and request.agent_message_ts


def test_a_session_already_over_is_shown_as_over(ctx, slack_client, redeemed):
    session = redeemed()
    sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")
    SlackSessionNotifier(ctx, slack_client).session_started(session.id)
    (update,) = slack_client.calls_to("chat.update")
    assert update["blocks"][0]["text"]["text"].startswith("Session ended at ")
    assert not [obj for _, obj in walk(update["blocks"]) if obj.get("type") == "button"]


def test_slack_failures_are_logged_and_never_raised(ctx, slack_client, redeemed, caplog):
    session = redeemed()
    slack_client.fail("chat.update", "message_not_found")
    with caplog.at_level(logging.WARNING):
        SlackSessionNotifier(ctx, slack_client).session_started(session.id)
    assert "message_not_found" in caplog.text
    assert BOT_TOKEN not in caplog.text


def test_other_failures_are_logged_and_never_raised(ctx, slack_client, redeemed, caplog, monkeypatch):
    session = redeemed()

    def broken(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(sessions, "check_session", broken)
    with caplog.at_level(logging.ERROR):
        SlackSessionNotifier(ctx, slack_client).session_started(session.id)
    assert "RuntimeError" in caplog.text
    assert slack_client.calls_to("chat.update") == []


def test_an_unknown_session_sends_nothing(ctx, slack_client, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    SlackSessionNotifier(ctx, slack_client).session_started("00000000-0000-0000-0000-000000000000")
    assert slack_client.calls_to("chat.update") == [] and slack_client.calls_to("chat.postMessage") == []
