"""Revocation from Slack: the **Revoke session** button on an alert or the
feed, and `/impersonate revoke <session>`. The power is re-checked at the click; the agent is
told at once (the listener delivers the outbox rows the revocation wrote)."""
from __future__ import annotations

import threading

import pytest

from bot.domain import sessions
from bot.domain.sessions import SessionStatus
from bot.slack.ids import ActionId, BlockId
from tests.fakes.directory_data import load_directory
from tests.slack.conftest import audit_events, response_json
from tests.slack.listeners.flow import start_live_session
from tests.slack.signed import block_action, signed, slash_command
from tests.conftest import allow_many_open_accesses


@pytest.fixture
def live(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    return start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000001")


def answer_text(response) -> str:
    """What the command's runner reads: Bolt answers `ack(text=…)` with that text as the body
    (Slack shows a slash command's direct answer to its runner only)."""
    return response_json(response)["text"] if response.body.startswith("{") else response.body


def click_revoke(send, session_id, *, user_id, block=BlockId.FEED_ACTIONS):
    return send(block_action(ActionId.REVOKE_SESSION.value, session_id, block_id=block.value, user_id=user_id, channel="CSECURITY1", message_ts="1700000000.000900"))


def test_security_revokes_from_the_feed_and_the_agent_is_told_at_once(send, slack_client, ctx, session_factory, live):
    assert click_revoke(send, live.id, user_id="USECURITY1").status == 200
    assert sessions.check_session(ctx, live.id).status is SessionStatus.REVOKED
    # the agent's session DM loses its buttons, and a new DM notifies them
    (update,) = [u for u in slack_client.calls_to("chat.update") if u["channel"] == "DAGENT1"]
    assert update["ts"] == "1700000000.000001" and update["blocks"][0]["text"]["text"].startswith("Session was revoked at ")
    (notice,) = [p for p in slack_client.calls_to("chat.postMessage") if p["channel"] == "UAGENT1"]
    assert notice["blocks"][0]["text"]["text"] == "Your session was revoked" and notice["unfurl_links"] is False
    (answer,) = slack_client.calls_to("chat.postEphemeral")
    assert answer["user"] == "USECURITY1" and answer["text"].startswith("Revoked <@UAGENT1>'s session")
    (event,) = audit_events(session_factory, "session.revoked")
    assert '"source":"feed"' in event.details


def test_someone_without_can_revoke_is_refused_privately_and_it_is_audited(send, slack_client, ctx, session_factory, live):
    click_revoke(send, live.id, user_id="UMANAGER1", block=BlockId.APPROVAL_ACTIONS)
    assert sessions.check_session(ctx, live.id).live
    assert slack_client.calls_to("chat.update") == [] and slack_client.calls_to("chat.postMessage") == []
    (answer,) = slack_client.calls_to("chat.postEphemeral")
    assert answer["user"] == "UMANAGER1" and "cannot revoke" not in answer["text"] and "role that can revoke" in answer["text"]
    (event,) = audit_events(session_factory, "session.revoke_refused")
    assert '"source":"alert"' in event.details and '"cause":"not_permitted"' in event.details


def test_a_second_click_on_a_revoked_session_changes_nothing(send, slack_client, live):
    click_revoke(send, live.id, user_id="USECURITY1")
    calls = len(slack_client.calls)
    click_revoke(send, live.id, user_id="USECURITY1")
    new = slack_client.calls[calls:]
    assert [c.method for c in new] == ["chat.postEphemeral"]
    assert "already over" in new[0].args["text"]


def test_the_revoke_command_revokes_and_answers_privately(send, slack_client, ctx, live):
    response = send(slash_command(f"revoke {live.id}", user_id="USECURITY1"))
    assert response.status == 200
    assert answer_text(response).startswith("Revoked <@UAGENT1>'s session")
    assert sessions.check_session(ctx, live.id).status is SessionStatus.REVOKED
    assert slack_client.calls_to("views.open") == []
    # the notice to the agent, and the feed's message (never posted before here) showing it revoked
    assert sorted(p["channel"] for p in slack_client.calls_to("chat.postMessage")) == ["CSECURITY1", "UAGENT1"]


def test_the_revoke_command_answers_before_any_slack_message_is_sent(slack_app, after_response, slack_client, ctx, live):
    """The messages the revocation owes go out from the background thread after the answer
    (Bolt sends a slash command's answer only when its listener returns)."""
    busy = threading.Event()
    after_response.submit(lambda: busy.wait(5))  # the background thread is still sending
    response = slack_app.dispatch(signed(slash_command(f"revoke {live.id}", user_id="USECURITY1")))
    assert answer_text(response).startswith("Revoked <@UAGENT1>'s session")
    assert slack_client.calls_to("chat.postMessage") == [] and slack_client.calls_to("chat.update") == []
    busy.set()
    assert after_response.wait_idle()
    assert sorted(p["channel"] for p in slack_client.calls_to("chat.postMessage")) == ["CSECURITY1", "UAGENT1"]


@pytest.mark.parametrize("text", ["revoke", "revoke not-a-session", "REVOKE 1 2"])
def test_a_revoke_command_without_a_session_id_is_refused(send, slack_client, session_factory, live, text):
    response = send(slash_command(text, user_id="USECURITY1"))
    assert answer_text(response).startswith("There is no session with that id.")
    assert slack_client.calls_to("views.open") == []
    assert len(audit_events(session_factory, "session.revoke_refused")) == 1


def test_the_revoke_command_by_an_agent_is_refused(send, ctx, live):
    response = send(slash_command(f"revoke {live.id}", user_id="UAGENT1"))
    assert answer_text(response).startswith("You do not hold a role that can revoke sessions.")
    assert "`/impersonate help` lists what you can do" in answer_text(response)  # what they can do instead
    assert sessions.check_session(ctx, live.id).live


def test_an_account_named_in_the_command_still_opens_the_modal(send, slack_client, live):
    send(slash_command("acme", user_id="UAGENT1"))
    assert len(slack_client.calls_to("views.open")) == 1


# --- Revoke all, on an alert about more live sessions than it shows ---------------------------


@pytest.fixture
def burst(ctx, session_factory, live):
    """Six live sessions on acme and the account_burst alert the sixth request raised (more
    than the policy's default 5 in 24 h)."""
    from sqlalchemy import select

    from bot.db.models import Alert

    allow_many_open_accesses(ctx)  # six open sessions of one agent with one user
    others = [start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts=f"1700000000.00010{n}") for n in range(5)]
    with session_factory() as db:
        (alert_id,) = db.execute(select(Alert.id).where(Alert.rule == "account_burst", Alert.account == "acme")).scalars()
    return alert_id, [live.id, *[o.id for o in others]]


def click_revoke_all(send, alert_id, *, user_id):
    return send(block_action(ActionId.REVOKE_ALERT_SESSIONS.value, alert_id, block_id=BlockId.ALERT_ACTIONS.value, user_id=user_id, channel="CSECURITY1", message_ts="1700000000.000900"))


def test_a_burst_alert_shows_three_sessions_counts_the_rest_and_offers_revoke_all(ctx, burst):
    from bot.domain import anomalies
    from bot.slack import limits
    from bot.slack.blocks.watch import alert_message, alert_summary_message

    alert_id, _ = burst
    (view,) = anomalies.alert_views(ctx, [alert_id])
    _text, blocks = alert_message(view)
    assert len(blocks) <= limits.MESSAGE_BLOCKS_MAX
    assert len([b for b in blocks if b.get("accessory", {}).get("action_id") == ActionId.REVOKE_SESSION.value]) == anomalies.LIVE_SHOWN
    assert any(b["type"] == "context" and "…and 3 more live sessions" in b["elements"][0]["text"] for b in blocks)
    (actions,) = [b for b in blocks if b.get("block_id") == BlockId.ALERT_ACTIONS.value]
    (button,) = actions["elements"]
    assert button["action_id"] == ActionId.REVOKE_ALERT_SESSIONS.value and button["value"] == alert_id
    assert button["text"]["text"] == "Revoke all 6 live sessions" and len(button["text"]["text"]) <= limits.BUTTON_TEXT_MAX
    assert "confirm" in button
    # in a summary of several alerts, the one accessory an alert has is the one covering them all
    _text, summary = alert_summary_message([view, view])
    assert [b["accessory"]["action_id"] for b in summary if "accessory" in b] == [ActionId.REVOKE_ALERT_SESSIONS.value] * 2


def test_revoke_all_revokes_every_live_session_of_the_alert_and_tells_each_agent(send, slack_client, ctx, session_factory, burst):
    alert_id, session_ids = burst
    assert click_revoke_all(send, alert_id, user_id="USECURITY1").status == 200
    assert [sessions.check_session(ctx, sid).status for sid in session_ids] == [SessionStatus.REVOKED] * 6
    events = audit_events(session_factory, "session.revoked")
    assert sorted(e.session_id for e in events) == sorted(session_ids)
    assert all('"source":"alert"' in e.details and e.actor_slack_id == "USECURITY1" for e in events)
    notices = [p for p in slack_client.calls_to("chat.postMessage") if p["channel"] == "UAGENT1"]
    assert len(notices) == 6
    (answer,) = slack_client.calls_to("chat.postEphemeral")
    assert answer["user"] == "USECURITY1" and answer["text"].startswith("Revoked 6 live sessions")

    # a second click finds nothing live: refused, audited, nothing changes
    click_revoke_all(send, alert_id, user_id="USECURITY1")
    (refused,) = audit_events(session_factory, "session.revoke_refused")
    assert '"cause":"none_live"' in refused.details and len(audit_events(session_factory, "session.revoked")) == 6


def test_revoke_all_by_someone_without_can_revoke_is_refused_and_audited(send, slack_client, ctx, session_factory, burst):
    alert_id, session_ids = burst
    click_revoke_all(send, alert_id, user_id="UMANAGER1")
    assert all(sessions.check_session(ctx, sid).live for sid in session_ids)
    (answer,) = slack_client.calls_to("chat.postEphemeral")
    assert "role that can revoke" in answer["text"]
    (event,) = audit_events(session_factory, "session.revoke_refused")
    assert '"cause":"not_permitted"' in event.details and f'"alert_id":"{alert_id}"' in event.details


def test_revoke_all_with_a_forged_alert_id_is_refused_and_audited(send, slack_client, session_factory, burst):
    click_revoke_all(send, "00000000-0000-4000-8000-000000000000", user_id="USECURITY1")
    (event,) = audit_events(session_factory, "session.revoke_refused")
    assert '"cause":"unknown_alert"' in event.details
    assert audit_events(session_factory, "session.revoked") == []
