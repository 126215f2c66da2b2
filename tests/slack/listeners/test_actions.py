"""Buttons: **End session** by the agent, by someone else, and too late;
**Approve** / **Deny** / **Cancel request**, more time and re-initiation."""
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import ImpersonationRequest
from bot.domain import links, outbox, requests, sessions, watch
from bot.domain.clock import utcnow
from bot.domain.outbox import InlineDeliverer
from bot.domain.ports import Person, StaticPeople
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.courier import SlackCourier
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import format_local_time
from tests.fakes.directory_data import load_directory
from tests.slack.block_rules import mrkdwn_texts, problems
from tests.slack.conftest import audit_events
from tests.slack.listeners.flow import (
    MANAGERS,
    approver_messages,
    click,
    headline,
    posts_to,
    redeem_live_session,
    start_live_session,
    submit_denial,
    submit_extension,
    submit_request,
    update_of,
    updates_of,
)
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
    # End and its other buttons are gone; what is left is asking again
    (again,) = [e for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (again["action_id"], again["value"]) == (ActionId.START_NEW_REQUEST.value, live_session.id)
    assert sessions.check_session(ctx, live_session.id).status is sessions.SessionStatus.ENDED
    (event,) = audit_events(session_factory, "session.ended")
    assert event.actor_slack_id == "UAGENT1" and event.session_id == live_session.id


def test_ending_a_session_edits_the_security_feed_at_once(send, slack_client, ctx, live_session):
    """The feed message that said "live" says "ended" with the answer's delivery, not at the
    scheduler's next run (the scheduler does not run in this test)."""
    assert outbox.deliver_due(ctx, SlackCourier(ctx, slack_client)).failed == 0
    (feed_post,) = [c for c in slack_client.calls_to("chat.postMessage") if c["channel"] == "CSECURITY1"]
    click_end(send, live_session.id, user_id="UAGENT1")
    feed_edits = [c for c in slack_client.calls_to("chat.update") if c["channel"] == "CSECURITY1"]
    assert [headline(edit) for edit in feed_edits] == ["Impersonation ended"]
    assert outbox.rows(ctx) and {r.state for r in outbox.rows(ctx)} <= {"sent", "merged", "skipped"}


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


# ---------------------------------------------------------------------------- approvals


@pytest.fixture
def gated(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["regulated"]})


@pytest.fixture
def ask(send, ctx, gated):
    """ask(account, user) → the id of a pending request submitted by UAGENT1 through the app;
    its "approval needed" DM is DAGENT1 / 1700000000.000001."""

    def _ask(account="globex", user="u-carol", agent="UAGENT1"):
        submit_request(send, user_id=agent, account=account, user=user)
        (request,) = [r for r in requests_of(ctx) if r.state == "pending"]
        return request.id

    return _ask


def requests_of(ctx):
    with ctx.sessions() as db:
        return list(db.execute(select(ImpersonationRequest)).scalars())


def test_one_approval_decides_edits_every_message_once_and_sends_the_link(send, slack_client, ctx, session_factory, ask):
    request_id = ask()
    recorded = approver_messages(ctx, request_id)
    posted_before = len(slack_client.calls_to("chat.postMessage"))
    response = click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER1", at=recorded["UMANAGER1"])
    assert response.status == 200
    # every approver's DM and the agent's DM, each edited exactly once
    assert sorted(updates_of(slack_client)) == sorted([(m.channel, m.ts) for m in recorded.values()] + [("DAGENT1", "1700000000.000001")])
    for manager in MANAGERS:
        edited = update_of(slack_client, recorded[manager].channel)
        assert edited["blocks"][1]["text"]["text"].startswith("*Approved* by <@UMANAGER1> at ")
        assert not [b for b in edited["blocks"] if b["type"] == "actions"]
        assert problems(edited["blocks"], surface="message") == []
    assert headline(update_of(slack_client, "DAGENT1")) == "Request approved"
    # the link comes exactly as for an ungated grant: a new DM, unfurling off, then remembered
    # (the grant's security feed message is owed too, and sent after the link DM)
    link_dm, feed = slack_client.calls_to("chat.postMessage")[posted_before:]
    assert feed["channel"] == "CSECURITY1"
    assert link_dm["channel"] == "UAGENT1" and link_dm["unfurl_links"] is False and link_dm["unfurl_media"] is False
    assert [t for t in mrkdwn_texts(link_dm["blocks"]) if t.startswith("<http://bot.test/l/")]
    assert "Approved by <@UMANAGER1>." in "\n".join(mrkdwn_texts(link_dm["blocks"]))
    assert requests.load_request(ctx, request_id).agent_message_ts == "1700000000.000005"
    assert slack_client.calls_to("chat.postEphemeral") == []
    assert len(audit_events(session_factory, "approval.granted")) == 1


def test_two_approvers_needed_on_a_regulated_account(send, slack_client, ctx, session_factory, ask):
    request_id = ask("initech", "u-dave")
    recorded = approver_messages(ctx, request_id)
    agent_dm = posts_to(slack_client, "UAGENT1")[0]
    assert "it needs 2 different approvers" in "\n".join(mrkdwn_texts(agent_dm["blocks"]))

    click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER1", at=recorded["UMANAGER1"])
    (counted,) = slack_client.calls_to("chat.postEphemeral")
    assert (counted["channel"], counted["user"]) == (recorded["UMANAGER1"].channel, "UMANAGER1")
    assert counted["text"] == "Your approval is recorded: 1 of 2. It waits for one more approver."
    # a double click (or a second device) counts once
    click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER1", at=recorded["UMANAGER1"])
    assert slack_client.calls_to("chat.postEphemeral")[1]["text"].startswith("Your decision on this request was already counted.")
    assert slack_client.calls_to("chat.update") == []
    assert requests.load_request(ctx, request_id).state == "pending"

    click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER2", at=recorded["UMANAGER2"])
    assert len(updates_of(slack_client)) == len(MANAGERS) + 1
    assert update_of(slack_client, recorded["UMANAGER1"].channel)["blocks"][1]["text"]["text"].startswith("*Approved* by <@UMANAGER2> at ")
    assert requests.load_request(ctx, request_id).state == "granted"
    assert len(slack_client.calls_to("chat.postEphemeral")) == 2


def test_a_late_click_is_told_who_decided_in_its_own_time_zone_and_edits_nothing(send, slack_client, ctx, session_factory, ask):
    ctx.people = StaticPeople({"UMANAGER3": Person("UMANAGER3", tz="Asia/Tokyo")})
    with freeze_time("2026-01-15 09:00:00"):
        request_id = ask()
        recorded = approver_messages(ctx, request_id)
        click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER1", at=recorded["UMANAGER1"])
    calls = {method: len(slack_client.calls_to(method)) for method in ("chat.update", "chat.postMessage")}
    for late in (ActionId.APPROVE_REQUEST, ActionId.CANCEL_REQUEST):
        user = "UMANAGER3" if late is ActionId.APPROVE_REQUEST else "UAGENT1"
        click(send, late, request_id, user_id=user, at=recorded["UMANAGER3"])
    late_approve, late_cancel = slack_client.calls_to("chat.postEphemeral")
    assert late_approve["user"] == "UMANAGER3"
    assert late_approve["text"].startswith("This request was already approved by <@UMANAGER1> at 18:00 JST.")
    assert late_cancel["text"].startswith("This request was already approved by <@UMANAGER1> at 09:00 UTC.")
    assert {method: len(slack_client.calls_to(method)) for method in calls} == calls
    assert len(audit_events(session_factory, "approval.granted")) == 1


def test_the_requester_cannot_approve_their_own_request(send, slack_client, ctx, session_factory, ask):
    request_id = ask(agent="UMANAGER1")
    assert sorted(approver_messages(ctx, request_id)) == ["UMANAGER2", "UMANAGER3"]
    click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER1", at=("DMANAGER1", "1700000000.000001"))
    (refused,) = slack_client.calls_to("chat.postEphemeral")
    assert refused["user"] == "UMANAGER1" and refused["text"].startswith("You cannot approve or deny your own request.")
    assert slack_client.calls_to("chat.update") == []
    assert requests.load_request(ctx, request_id).state == "pending"
    (event,) = audit_events(session_factory, "approval.refused")
    assert json.loads(event.details)["cause"] == "self_approval"


def test_someone_without_the_approver_role_is_refused(send, slack_client, ctx, ask):
    request_id = ask()
    click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UAGENT2", at=("DAGENT2", "1700000000.000009"))
    (refused,) = slack_client.calls_to("chat.postEphemeral")
    assert refused["text"].startswith("You no longer hold a role that can approve impersonation requests.")
    assert slack_client.calls_to("chat.update") == []


def test_deny_opens_a_modal_carrying_only_the_request_id(send, slack_client, ctx, ask):
    request_id = ask()
    click(send, ActionId.DENY_REQUEST, request_id, user_id="UMANAGER2", at=approver_messages(ctx, request_id)["UMANAGER2"])
    (opened,) = slack_client.calls_to("views.open")
    assert re.fullmatch(r"1337\.\d+\.trigger-secret", opened["trigger_id"])  # the click's own trigger
    view = opened["view"]
    assert view["callback_id"] == CallbackId.DENY_REQUEST.value and view["private_metadata"] == request_id
    assert problems(view, surface="modal") == []
    assert requests.load_request(ctx, request_id).state == "pending"  # nothing decided yet
    assert slack_client.calls_to("chat.update") == []


def test_an_approval_past_the_ttl_expires_the_request_everywhere(send, slack_client, ctx, session_factory, ask):
    with freeze_time("2026-01-15 09:00:00"):
        request_id = ask()
    recorded = approver_messages(ctx, request_id)
    with freeze_time("2026-01-15 09:30:00"):
        click(send, ActionId.APPROVE_REQUEST, request_id, user_id="UMANAGER1", at=recorded["UMANAGER1"])
    for manager in MANAGERS:
        assert update_of(slack_client, recorded[manager].channel)["blocks"][1]["text"]["text"] == (
            "*Expired* at 09:30 UTC: no decision in the time allowed."
        )
    assert headline(update_of(slack_client, "DAGENT1")) == "Request expired"
    assert len(posts_to(slack_client, "UAGENT1")) == 1  # no link
    assert len(audit_events(session_factory, "request.expired")) == 1


def test_the_agent_cancels_their_pending_request(send, slack_client, ctx, session_factory, ask):
    request_id = ask()
    recorded = approver_messages(ctx, request_id)
    click(send, ActionId.CANCEL_REQUEST, request_id, user_id="UAGENT1")
    for manager in MANAGERS:
        assert update_of(slack_client, recorded[manager].channel)["blocks"][1]["text"]["text"].startswith("*Cancelled by the agent* at ")
    assert headline(update_of(slack_client, "DAGENT1")) == "Request cancelled"
    assert len(updates_of(slack_client)) == len(MANAGERS) + 1
    assert requests.load_request(ctx, request_id).state == "cancelled"
    assert len(audit_events(session_factory, "request.cancelled")) == 1


def test_only_the_agent_can_cancel(send, slack_client, ctx, session_factory, ask):
    request_id = ask()
    click(send, ActionId.CANCEL_REQUEST, request_id, user_id="UMANAGER1", at=approver_messages(ctx, request_id)["UMANAGER1"])
    (refused,) = slack_client.calls_to("chat.postEphemeral")
    assert refused["text"] == "Only the agent who made this request can cancel it."
    assert slack_client.calls_to("chat.update") == []
    assert requests.load_request(ctx, request_id).state == "pending"


# ---------------------------------------------------------------------------- more time


def test_an_extension_end_to_end(send, slack_client, ctx, session_factory, gated):
    redeemed = redeem_live_session(ctx, agent="USENIOR1", channel="DSENIOR1", ts="1700000000.000900")
    session = redeemed.session
    InlineDeliverer(ctx, SlackCourier(ctx, slack_client)).deliver(redeemed.targets)
    active = slack_client.calls_to("chat.update")[-1]
    more = [e for b in active["blocks"] if b["type"] == "actions" for e in b["elements"]][1]
    assert (more["action_id"], more["value"]) == (ActionId.REQUEST_EXTENSION.value, session.id)

    # the button opens the modal: policy choices, a fresh reason, the session id only
    click(send, ActionId.REQUEST_EXTENSION, session.id, user_id="USENIOR1", at=("DSENIOR1", "1700000000.000900"))
    (opened,) = slack_client.calls_to("views.open")
    assert opened["view"]["callback_id"] == CallbackId.REQUEST_EXTENSION.value
    assert opened["view"]["private_metadata"] == session.id
    assert problems(opened["view"], surface="modal") == []

    # submitting asks every approver, labelled as more time, recorded against the extension
    response = submit_extension(send, session.id, minutes="30", reason="Still reproducing the invoice bug", user_id="USENIOR1")
    assert response.status == 200 and response.body == ""
    extension = watch.agent_news(ctx, session.request.id).extension_ask.extension  # what the agent's DM shows
    assert extension is not None and extension.minutes == 30
    recorded = approver_messages(ctx, extension.id)
    assert sorted(recorded) == list(MANAGERS)
    for manager in MANAGERS:
        (dm,) = posts_to(slack_client, manager)
        assert headline(dm) == "Approval needed: more time"
        assert {e["value"] for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]} == {extension.id}
    waiting = slack_client.calls_to("chat.update")[-1]
    assert (waiting["channel"], waiting["ts"]) == ("DSENIOR1", "1700000000.000900")
    assert "You asked for 30 minutes more." in waiting["blocks"][1]["text"]["text"]

    edits_before = len(slack_client.calls_to("chat.update"))
    click(send, ActionId.APPROVE_EXTENSION, extension.id, user_id="UMANAGER2", at=recorded["UMANAGER2"])
    edits = slack_client.calls_to("chat.update")[edits_before:]
    # the security channel's feed message (posted when the session started) shows the new end
    assert [e["text"] for e in edits if e["channel"] == "CSECURITY1"] == ["Impersonation live: <@USENIOR1> as Bob Builder in ACME Corp."]
    edits = [e for e in edits if e["channel"] != "CSECURITY1"]
    assert sorted((e["channel"], e["ts"]) for e in edits) == sorted([(m.channel, m.ts) for m in recorded.values()] + [("DSENIOR1", "1700000000.000900")])
    extended = sessions.check_session(ctx, session.id).session
    assert extended.expires_at == session.expires_at + timedelta(minutes=30)
    agent_edit = next(e for e in edits if e["channel"] == "DSENIOR1")
    assert headline(agent_edit) == f"Session active until {format_local_time(extended.expires_at, 'UTC')}"
    assert agent_edit["blocks"][1]["text"]["text"].startswith("Your request for 30 minutes more was approved by <@UMANAGER2>")
    assert next(e for e in edits if e["channel"] == recorded["UMANAGER1"].channel)["blocks"][1]["text"]["text"].startswith("*Approved* by <@UMANAGER2>")
    assert len(audit_events(session_factory, "extension.granted")) == 1

    # a late click on the decided extension edits nothing
    click(send, ActionId.APPROVE_EXTENSION, extension.id, user_id="UMANAGER3", at=recorded["UMANAGER3"])
    (late,) = slack_client.calls_to("chat.postEphemeral")
    assert late["text"].startswith("This request for more time was already approved by <@UMANAGER2> at ")
    assert len(slack_client.calls_to("chat.update")) == edits_before + len(edits) + 1  # + the feed's edit


def test_an_extension_denied_through_the_modal(send, slack_client, ctx, session_factory, gated):
    session = start_live_session(ctx, agent="USENIOR1", channel="DSENIOR1", ts="1700000000.000900")
    submit_extension(send, session.id, user_id="USENIOR1")
    extension = watch.agent_news(ctx, session.request.id).extension_ask.extension
    recorded = approver_messages(ctx, extension.id)
    click(send, ActionId.DENY_EXTENSION, extension.id, user_id="UMANAGER1", at=recorded["UMANAGER1"])
    (opened,) = slack_client.calls_to("views.open")
    assert opened["view"]["callback_id"] == CallbackId.DENY_EXTENSION.value and opened["view"]["private_metadata"] == extension.id
    edits_before = len(slack_client.calls_to("chat.update"))
    response = submit_denial(send, extension.id, "Wrap it up in a new request", user_id="UMANAGER1", extension=True)
    assert response.status == 200 and response.body == ""
    edits = slack_client.calls_to("chat.update")[edits_before:]
    assert len(edits) == len(MANAGERS) + 1
    agent_edit = next(e for e in edits if e["channel"] == "DSENIOR1")
    assert agent_edit["blocks"][1]["text"]["text"].endswith(": Wrap it up in a new request")
    assert sessions.check_session(ctx, session.id).session.expires_at == session.expires_at
    assert len(audit_events(session_factory, "extension.denied")) == 1


def test_start_a_new_request_after_the_session_prefills_the_account_and_carries_the_session(send, slack_client, ctx, gated):
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")
    click(send, ActionId.START_NEW_REQUEST, session.id, user_id="UAGENT1")
    (opened,) = slack_client.calls_to("views.open")
    view = opened["view"]
    assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value
    assert view["private_metadata"] == session.id
    account = next(b for b in view["blocks"] if b.get("block_id") == BlockId.ACCOUNT.value)["element"]
    assert account["initial_option"]["value"] == "acme"
    assert problems(view, surface="modal") == []


def test_start_a_new_request_while_the_session_is_live_shows_it_instead(send, slack_client, ctx, gated):
    """One open access per customer user: the modal's submission could only be refused, so
    the click shows the live session with its End button at once."""
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    click(send, ActionId.START_NEW_REQUEST, session.id, user_id="UAGENT1")
    (opened,) = slack_client.calls_to("views.open")
    view = opened["view"]
    assert view["callback_id"] == CallbackId.IMPERSONATE_ALREADY_OPEN.value and "private_metadata" not in view
    (end,) = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (end["action_id"], end["value"]) == (ActionId.END_SESSION.value, session.id)
    assert problems(view, surface="modal") == []


def test_start_a_new_request_from_someone_elses_session_prefills_nothing_and_is_audited(send, slack_client, ctx, gated, session_factory):
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    for forged in (session.id, "not-an-id"):
        click(send, ActionId.START_NEW_REQUEST, forged, user_id="USENIOR1")
    for opened in slack_client.calls_to("views.open"):
        view = opened["view"]
        assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value
        assert "private_metadata" not in view
        assert "initial_option" not in next(b for b in view["blocks"] if b.get("block_id") == BlockId.ACCOUNT.value)["element"]
    (refused,) = audit_events(session_factory, "session.reinitiation_refused")
    assert (refused.actor_slack_id, refused.session_id) == ("USENIOR1", session.id)
    assert json.loads(refused.details) == {"cause": "not_the_agent"}


def test_concurrent_clicks_decide_once_and_edit_each_message_once(send, slack_client, ctx, session_factory, ask):
    """Exactly one decision at the Slack face: every approver clicks Approve twice while the agent
    clicks Cancel, all at once. One decision, one edit per message, and every other click is
    answered privately."""
    request_id = ask()
    recorded = approver_messages(ctx, request_id)
    clicks = [(ActionId.APPROVE_REQUEST, m, recorded[m]) for m in MANAGERS for _ in range(2)]
    clicks.append((ActionId.CANCEL_REQUEST, "UAGENT1", ("DAGENT1", "1700000000.000001")))
    start = threading.Barrier(len(clicks))

    def one(action, user, at):
        start.wait()
        return click(send, action, request_id, user_id=user, at=at).status

    with ThreadPoolExecutor(max_workers=len(clicks)) as pool:
        statuses = list(pool.map(lambda c: one(*c), clicks))
    assert statuses == [200] * len(clicks)
    edited = updates_of(slack_client)
    assert sorted(edited) == sorted([(m.channel, m.ts) for m in recorded.values()] + [("DAGENT1", "1700000000.000001")])
    assert len(slack_client.calls_to("chat.postEphemeral")) == len(clicks) - 1
    final = [e.type for e in audit_events(session_factory) if e.type in ("approval.granted", "request.cancelled")]
    assert len(final) == 1
    assert requests.load_request(ctx, request_id).state == ("granted" if final == ["approval.granted"] else "cancelled")
