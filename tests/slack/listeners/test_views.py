"""Modal submissions: the request, the
approver's denial and the agent's ask for more time."""
import json

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import ImpersonationRequest, MessageRef
from bot.domain import approvals, outbox
from bot.domain import sessions as domain_sessions
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.fakes.directory_data import load_directory
from tests.slack.block_rules import mrkdwn_texts, problems
from tests.slack.conftest import audit_events, recorded_approver_dms, response_json
from tests.slack.listeners.flow import (
    BREAK_GLASS_REASON,
    MANAGERS,
    approver_messages,
    headline,
    posts_to,
    start_live_session,
    submit_denial,
    submit_extension,
    submit_request,
    update_of,
    updates_of,
    with_break_glass,
)


@pytest.fixture(autouse=True)
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["opted_out"]})


def submit(send, *, user_id="UAGENT1", **answers):
    return submit_request(send, user_id=user_id, **answers)


def stored_requests(session_factory):
    with session_factory() as db:
        return list(db.execute(select(ImpersonationRequest)).scalars())


@pytest.mark.parametrize(
    ("answers", "user_id", "block", "cause"),
    [
        ({"account": "initech", "user": "u-dave"}, "USENIOR1", BlockId.ACCOUNT, "opted_out"),  # absolute: even scope=any
        ({"account": "umbrella", "user": "u-eve"}, "UAGENT1", BlockId.ACCOUNT, "not_assigned"),
        ({}, "UNOBODY1", BlockId.ACCOUNT, "no_role"),
        ({"account": "nope"}, "UAGENT1", BlockId.ACCOUNT, "unknown_account"),
        ({"user": "u-carol"}, "UAGENT1", BlockId.USER, "unknown_user"),  # a globex user under acme
        ({"user": "u-alice"}, "UAGENT1", BlockId.USER, "protected_user"),
        ({"reason": "short"}, "UAGENT1", BlockId.REASON, "reason_too_short"),
        ({"ticket": None}, "UAGENT1", BlockId.TICKET, "ticket_required"),
        ({"duration": "120"}, "UAGENT1", BlockId.DURATION, "duration_over_cap"),
        ({"duration": "forged"}, "UAGENT1", BlockId.DURATION, "duration_over_cap"),
        ({"scope": "read_write"}, "UAGENT1", BlockId.SCOPE, "scope_not_allowed"),
    ],
)
def test_a_refusal_comes_back_on_its_field_and_is_audited(send, slack_client, session_factory, answers, user_id, block, cause):
    response = submit(send, user_id=user_id, **answers)
    assert response.status == 200
    body = response_json(response)
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [block.value]
    assert body["errors"][block.value]
    (event,) = audit_events(session_factory, "request.blocked")
    assert json.loads(event.details)["cause"] == cause
    assert event.actor_slack_id == user_id
    assert stored_requests(session_factory) == []
    assert slack_client.calls_to("chat.postMessage") == []


def test_a_grant_is_sent_as_a_dm_with_the_link_and_unfurling_off(send, slack_client, session_factory):
    response = submit(send)
    assert response.status == 200 and response.body == ""  # plain ack: the modal closes
    # the app's DM with the agent (the grant's security feed message is owed too)
    (posted,) = posts_to(slack_client, "UAGENT1")
    assert posted["unfurl_links"] is False and posted["unfurl_media"] is False
    assert problems(posted["blocks"], surface="message") == []
    links = [t for t in mrkdwn_texts(posted["blocks"]) if "|Open session>" in t]
    assert len(links) == 1 and links[0].startswith("<http://bot.test/l/")
    assert "http://bot.test/l/" not in posted["text"]
    (request,) = stored_requests(session_factory)
    assert request.state == "granted"
    # the DM is remembered so that redemption and ending edit it in place
    assert (request.agent_channel, request.agent_message_ts) == ("DAGENT1", "1700000000.000001")
    assert [e.type for e in audit_events(session_factory)][-3:] == ["request.created", "request.granted", "link.issued"]


def test_a_request_on_a_gated_account_is_pending_and_the_agent_is_told(send, slack_client, session_factory):
    response = submit(send, account="globex", user="u-carol")
    assert response.status == 200 and response.body == ""
    posted = slack_client.calls_to("chat.postMessage")[0]  # the agent's, before the approvers'
    assert posted["channel"] == "UAGENT1"
    assert posted["unfurl_links"] is False and posted["unfurl_media"] is False
    rendered = json.dumps(posted["blocks"])
    assert "Approval needed" in rendered and "sensitive" in rendered
    assert "/l/" not in rendered  # no link until approved
    (request,) = stored_requests(session_factory)
    assert request.state == "pending"
    # remembered as the request's "approval needed" DM, edited once decided; the agent's
    # access DM (the link, then the session) is a new message, so it is not taken yet
    assert request.agent_message_ts is None
    with session_factory() as db:
        (ref,) = db.execute(select(MessageRef).where(MessageRef.subject_id == request.id, MessageRef.purpose == outbox.Kind.AGENT_REQUEST.value)).scalars()
        assert (ref.recipient, ref.channel, ref.ts) == ("UAGENT1", "DAGENT1", "1700000000.000001")


def test_user_text_in_the_dm_is_escaped(send, slack_client):
    submit(send, reason="Please check <!channel> and <@U123> & <https://evil.example|this>", ticket="SUP-9")
    (posted,) = posts_to(slack_client, "UAGENT1")
    rendered = json.dumps(posted["blocks"])
    for raw in ("<!channel>", "<@U123>", "<https://evil.example|this>"):
        assert raw not in rendered
    assert "&lt;!channel&gt; and &lt;@U123&gt; &amp; &lt;https://evil.example|this&gt;" in rendered


def test_a_failed_dm_after_the_grant_still_answers_with_the_ack(send, slack_client, session_factory, caplog):
    slack_client.fail("chat.postMessage", "channel_not_found")
    response = submit(send)
    # Slack got the ack (modal closes) rather than a 500 that would invite a second submission
    assert response.status == 200 and response.body == ""
    assert "channel_not_found" in caplog.text
    (request,) = stored_requests(session_factory)
    assert request.agent_message_ts is None


# ---------------------------------------------------------------------------- approvals


def pending_request_id(session_factory) -> str:
    (request,) = [r for r in stored_requests(session_factory) if r.state == "pending"]
    return request.id


def test_a_pending_request_dms_every_approver_and_tells_the_agent_who_was_asked(send, slack_client, ctx, session_factory):
    submit(send, account="globex", user="u-carol")
    request_id = pending_request_id(session_factory)
    agent_dm, *approver_dms = slack_client.calls_to("chat.postMessage")
    assert agent_dm["channel"] == "UAGENT1"
    shown = "\n".join(mrkdwn_texts(agent_dm["blocks"]))
    assert "It was sent to <@UMANAGER1>, <@UMANAGER2> and <@UMANAGER3>; it needs one approver." in shown
    (cancel,) = [e for b in agent_dm["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (cancel["action_id"], cancel["value"]) == (ActionId.CANCEL_REQUEST.value, request_id)
    # one DM per approver, never the requester, each recorded so that the decision edits it
    assert sorted(dm["channel"] for dm in approver_dms) == list(MANAGERS)
    for dm in approver_dms:
        assert problems(dm["blocks"], surface="message") == []
        assert dm["unfurl_links"] is False and dm["unfurl_media"] is False
        rendered = "\n".join(mrkdwn_texts(dm["blocks"]))
        assert "<@UAGENT1> asks to impersonate Carol (carol@globex.example) in Globex (globex)." in rendered
        assert "*Account flags*\nsensitive" in rendered and "*Ticket*\nSUP-1" in rendered
        assert "*Their recent sessions on this account*" in rendered
        buttons = [e for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert [(b["action_id"], b["value"]) for b in buttons] == [
            (ActionId.APPROVE_REQUEST.value, request_id),
            (ActionId.DENY_REQUEST.value, request_id),
        ]
    recorded = approver_messages(ctx, request_id)
    assert sorted(recorded) == list(MANAGERS)
    assert all(m.channel == "D" + r[1:] for r, m in recorded.items())
    (asked,) = audit_events(session_factory, "approval.requested")
    assert json.loads(asked.details)["asked"] == list(MANAGERS)


def test_a_requester_who_is_an_approver_is_not_asked(send, slack_client, session_factory):
    submit(send, user_id="UMANAGER1", account="globex", user="u-carol")
    assert sorted(c["channel"] for c in slack_client.calls_to("chat.postMessage")) == ["UMANAGER1", "UMANAGER2", "UMANAGER3"]
    agent_dm = posts_to(slack_client, "UMANAGER1")
    assert len(agent_dm) == 1 and "Approve" not in json.dumps(agent_dm[0]["blocks"])


# ---------------------------------------------------------------------------- the deny modal


@pytest.fixture
def pending_on_globex(send, slack_client, session_factory):
    submit(send, account="globex", user="u-carol")
    return pending_request_id(session_factory)


@pytest.mark.parametrize("reason", ["", "no", "    nope    "])
def test_a_denial_needs_a_reason(send, slack_client, session_factory, pending_on_globex, reason):
    calls = len(slack_client.calls)
    response = submit_denial(send, pending_on_globex, reason, user_id="UMANAGER1")
    body = response_json(response)
    assert body["response_action"] == "errors" and list(body["errors"]) == [BlockId.DENY_REASON.value]
    assert len(slack_client.calls) == calls
    assert stored_requests(session_factory)[0].state == "pending"


def test_a_denial_decides_and_edits_every_message_once(send, slack_client, ctx, session_factory, pending_on_globex):
    response = submit_denial(send, pending_on_globex, "Not justified by <!channel> ticket", user_id="UMANAGER2")
    assert response.status == 200 and response.body == ""  # the modal closes
    recorded = approver_messages(ctx, pending_on_globex)
    edits = updates_of(slack_client)
    assert sorted(edits) == sorted([(m.channel, m.ts) for m in recorded.values()] + [("DAGENT1", "1700000000.000001")])
    for manager in MANAGERS:
        line = update_of(slack_client, recorded[manager].channel)["blocks"][1]["text"]["text"]
        assert line.startswith("*Denied* by <@UMANAGER2> at ") and line.endswith(": Not justified by &lt;!channel&gt; ticket")
        assert not [b for b in update_of(slack_client, recorded[manager].channel)["blocks"] if b["type"] == "actions"]
    assert headline(update_of(slack_client, "DAGENT1")) == "Request denied"
    assert len(posts_to(slack_client, "UAGENT1")) == 1  # no link
    (event,) = audit_events(session_factory, "approval.denied")
    assert event.actor_slack_id == "UMANAGER2"
    assert stored_requests(session_factory)[0].state == "denied"


@freeze_time("2026-01-15 09:00:00")
def test_a_late_denial_is_told_who_decided_and_edits_nothing(send, slack_client, ctx, session_factory, pending_on_globex):
    approvals.approve_request(ctx, pending_on_globex, clicker_slack_id="UMANAGER1")
    calls = len(slack_client.calls)
    response = submit_denial(send, pending_on_globex, "Not justified by the ticket", user_id="UMANAGER2")
    body = response_json(response)
    assert body["response_action"] == "update"
    assert "submit" not in body["view"] and problems(body["view"], surface="modal") == []
    assert body["view"]["blocks"][0]["text"]["text"].startswith("This request was already approved by <@UMANAGER1> at 09:00 UTC.")
    assert len(slack_client.calls) == calls  # no edit, no post
    assert audit_events(session_factory, "approval.denied") == []


def test_a_forged_denial_of_nothing_is_refused_on_the_reason(send, slack_client):
    response = submit_denial(send, "not-an-id", "Not justified by the ticket", user_id="UMANAGER1")
    body = response_json(response)
    assert body["errors"] == {BlockId.DENY_REASON.value: "That request no longer exists."}


# ---------------------------------------------------------------------------- re-initiation and extensions


def test_a_new_request_after_a_session_is_linked_to_it(send, ctx, session_factory):
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    domain_sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")  # one open access at a time
    submit(send, private_metadata=session.id)
    newest = max(stored_requests(session_factory), key=lambda r: r.created_at)
    assert newest.id != session.request.id and newest.previous_session_id == session.id
    (created,) = [e for e in audit_events(session_factory, "request.created") if e.request_id == newest.id]
    assert json.loads(created.details)["previous_session_id"] == session.id


def test_a_new_request_cannot_claim_someone_elses_session(send, ctx, session_factory):
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    submit(send, user_id="USENIOR1", private_metadata=session.id)
    (theirs,) = [r for r in stored_requests(session_factory) if r.agent_slack_id == "USENIOR1"]
    assert theirs.state == "granted" and theirs.previous_session_id is None


def test_an_extension_without_the_power_is_refused_on_the_reason(send, slack_client, ctx, session_factory):
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    body = response_json(submit_extension(send, session.id, user_id="UAGENT1"))
    assert body["response_action"] == "errors"
    assert body["errors"][BlockId.EXTENSION_REASON.value].startswith("Your role cannot extend sessions.")
    assert slack_client.calls_to("chat.postMessage") == [] and slack_client.calls_to("chat.update") == []
    (refused,) = audit_events(session_factory, "extension.refused")
    assert json.loads(refused.details)["cause"] == "no_power"


# ---------------------------------------------------------------------------- break-glass


def test_break_glass_grants_at_once_and_tells_the_security_channel(send, slack_client, ctx, session_factory):
    with_break_glass(ctx)
    response = submit(send, user_id="USENIOR1", account="globex", user="u-carol", reason=BREAK_GLASS_REASON, break_glass=True)
    assert response.status == 200 and response.body == ""
    (agent_dm,) = posts_to(slack_client, "USENIOR1")
    assert any("|Open session>" in t for t in mrkdwn_texts(agent_dm["blocks"]))
    (alert,) = posts_to(slack_client, "CSECURITY1")
    assert problems(alert["blocks"], surface="message") == []
    shown = "\n".join(mrkdwn_texts(alert["blocks"]))
    assert "<@USENIOR1> skipped approval to impersonate Carol (carol@globex.example) in Globex (globex)" in shown
    assert "*Approval skipped*\nsensitive" in shown and "*Ticket*\nSUP-1" in shown and "INC-77" in shown
    assert "/l/" not in json.dumps(alert)  # never the link
    assert [c["channel"] for c in slack_client.calls_to("chat.postMessage")].count("UMANAGER1") == 0  # no approvers asked
    (request,) = stored_requests(session_factory)
    assert request.state == "granted" and request.break_glass
    (bypassed,) = audit_events(session_factory, "approval.bypassed")
    assert bypassed.actor_slack_id == "USENIOR1"
    with session_factory() as db:
        (kept,) = db.execute(select(MessageRef).where(MessageRef.subject_id == request.id)).scalars()
    # sent through the outbox, written with the grant, and kept for edits
    assert (kept.purpose, kept.recipient, kept.channel) == (outbox.Kind.BREAK_GLASS.value, "CSECURITY1", "CSECURITY1")
    assert recorded_approver_dms(ctx, request.id) == ()  # not an approver's message: no decision edits it


def test_break_glass_from_a_role_without_the_power_is_refused_on_the_checkbox(send, slack_client, session_factory):
    view_blocks = [{"type": "input", "block_id": b.value} for b in (BlockId.ACCOUNT, BlockId.REASON, BlockId.BREAK_GLASS)]
    response = submit(send, account="globex", user="u-carol", reason=BREAK_GLASS_REASON, break_glass=True, view_blocks=view_blocks)
    assert list(response_json(response)["errors"]) == [BlockId.BREAK_GLASS.value]
    # a view without the checkbox (the role lost the power meanwhile) gets it at the top
    view_blocks = view_blocks[:2]
    response = submit(send, account="globex", user="u-carol", reason=BREAK_GLASS_REASON, break_glass=True, view_blocks=view_blocks)
    assert list(response_json(response)["errors"]) == [BlockId.ACCOUNT.value]
    assert slack_client.calls_to("chat.postMessage") == []
    assert [json.loads(e.details)["cause"] for e in audit_events(session_factory, "request.blocked")] == ["break_glass_not_allowed"] * 2


def test_break_glass_with_a_short_reason_is_refused_on_the_reason(send, ctx, slack_client):
    with_break_glass(ctx)
    response = submit(send, user_id="USENIOR1", account="globex", user="u-carol", break_glass=True)
    errors = response_json(response)["errors"]
    assert list(errors) == [BlockId.REASON.value] and "at least 60 characters" in errors[BlockId.REASON.value]
    assert slack_client.calls_to("chat.postMessage") == []


def test_a_second_request_for_the_same_user_shows_the_open_one_instead(send, session_factory):
    first = response_json(submit(send))
    assert first == {} or "response_action" not in first  # granted: the modal closes
    again = response_json(submit(send))
    assert again["response_action"] == "update"
    view = again["view"]
    assert view["callback_id"] == CallbackId.IMPERSONATE_ALREADY_OPEN.value
    assert problems(view, surface="modal") == []
    assert "already have a link to *Bob Builder* at *ACME Corp*" in " ".join(mrkdwn_texts(view["blocks"]))
    assert len(stored_requests(session_factory)) == 1
    (blocked,) = audit_events(session_factory, "request.blocked")
    assert json.loads(blocked.details)["cause"] == "already_open"


def test_the_open_session_can_be_ended_from_that_view(send, ctx, session_factory, slack_client):
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000900")
    view = response_json(submit(send))["view"]
    (actions,) = [b for b in view["blocks"] if b["type"] == "actions"]
    (button,) = actions["elements"]
    assert (button["action_id"], button["value"]) == (ActionId.END_SESSION.value, session.id)
