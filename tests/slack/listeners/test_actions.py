"""**End session** (issue 2 point 14): by the agent, by someone else, and too late."""
import json
from datetime import timedelta

import pytest
from freezegun import freeze_time

from bot.domain import links, requests, sessions
from bot.domain.clock import utcnow
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.ids import ActionId, BlockId
from tests.fakes.directory_data import load_directory
from tests.slack.conftest import audit_events
from tests.slack.signed import block_action


@pytest.fixture
def live_session(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    requests.record_agent_message(ctx, granted.request.id, channel="DAGENT1", ts="1700000000.000001")
    redemption = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])
    return redemption.session


def click_end(send, session_id, *, user_id):
    return send(block_action(ActionId.END_SESSION.value, session_id, block_id=BlockId.SESSION_ACTIONS.value, user_id=user_id))


def test_the_agent_ends_their_session_and_the_message_is_edited(send, slack_client, ctx, session_factory, live_session):
    response = click_end(send, live_session.id, user_id="UAGENT1")
    assert response.status == 200
    (update,) = slack_client.calls_to("chat.update")
    assert (update["channel"], update["ts"]) == ("DAGENT1", "1700000000.000001")
    assert update["blocks"][0]["text"]["text"].startswith("Session ended at ")
    assert "actions" not in [b["type"] for b in update["blocks"]]
    assert sessions.check_session(ctx, live_session.id).status is sessions.SessionStatus.ENDED
    (event,) = audit_events(session_factory, "session.ended")
    assert event.actor_slack_id == "UAGENT1" and event.session_id == live_session.id


def test_someone_else_cannot_end_it_is_told_privately_and_it_is_audited(send, slack_client, ctx, session_factory, live_session):
    response = click_end(send, live_session.id, user_id="UMANAGER1")
    assert response.status == 200
    assert slack_client.calls_to("chat.update") == []
    (ephemeral,) = slack_client.calls_to("chat.postEphemeral")
    assert ephemeral["user"] == "UMANAGER1" and ephemeral["channel"] == "DAGENT1"
    assert "Only the agent" in ephemeral["text"]
    assert sessions.check_session(ctx, live_session.id).live
    (event,) = audit_events(session_factory, "session.end_refused")
    assert event.actor_slack_id == "UMANAGER1"
    assert json.loads(event.details)["cause"] == "not_the_agent"


def test_a_forged_session_id_is_refused(send, slack_client, live_session):
    click_end(send, "00000000-0000-0000-0000-000000000000", user_id="UAGENT1")
    (ephemeral,) = slack_client.calls_to("chat.postEphemeral")
    assert "does not exist" in ephemeral["text"]


def test_ending_after_expiry_records_expiry_and_shows_it(send, slack_client, ctx, session_factory, live_session):
    with freeze_time(utcnow() + timedelta(minutes=31)):
        response = click_end(send, live_session.id, user_id="UAGENT1")
    assert response.status == 200
    (update,) = slack_client.calls_to("chat.update")
    assert update["blocks"][0]["text"]["text"].startswith("Session expired at ")
    assert audit_events(session_factory, "session.ended") == []
    assert len(audit_events(session_factory, "session.expired")) == 1


def test_a_second_click_on_a_stale_message_shows_the_truth(send, slack_client, live_session):
    click_end(send, live_session.id, user_id="UAGENT1")
    click_end(send, live_session.id, user_id="UAGENT1")
    first, second = slack_client.calls_to("chat.update")
    assert second["blocks"][0]["text"]["text"] == first["blocks"][0]["text"]["text"]
    assert slack_client.calls_to("chat.postEphemeral") == []
