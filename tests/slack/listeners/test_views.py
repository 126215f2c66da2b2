"""The request modal's submission (issue 2 points 8-10)."""
import json

import pytest
from sqlalchemy import select

from bot.db.models import ImpersonationRequest
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.fakes.directory_data import load_directory
from tests.slack.block_rules import mrkdwn_texts, problems
from tests.slack.conftest import audit_events, response_json
from tests.slack.signed import view_submission


@pytest.fixture(autouse=True)
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["opted_out"]})


def state(account="acme", user="u-bob", reason="Customer cannot see the invoice page", ticket="SUP-1", duration="30", scope="read_only"):
    def selected(value):
        return {"type": "static_select", "selected_option": None if value is None else {"text": {"type": "plain_text", "text": "x"}, "value": value}}

    return {
        BlockId.ACCOUNT.value: {ActionId.ACCOUNT_SELECT.value: selected(account)},
        BlockId.USER.value: {ActionId.USER_SELECT.value: selected(user)},
        BlockId.REASON.value: {ActionId.REASON_INPUT.value: {"type": "plain_text_input", "value": reason}},
        BlockId.TICKET.value: {ActionId.TICKET_INPUT.value: {"type": "plain_text_input", "value": ticket}},
        BlockId.DURATION.value: {ActionId.DURATION_SELECT.value: selected(duration)},
        BlockId.SCOPE.value: {ActionId.SCOPE_CHOICE.value: selected(scope)},
    }


def submit(send, *, user_id="UAGENT1", **answers):
    return send(view_submission(state(**answers), user_id=user_id, callback_id=CallbackId.IMPERSONATE_REQUEST.value))


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
    (posted,) = slack_client.calls_to("chat.postMessage")
    assert posted["channel"] == "UAGENT1"  # the app's DM with the agent
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
    (posted,) = slack_client.calls_to("chat.postMessage")
    assert posted["channel"] == "UAGENT1"
    assert posted["unfurl_links"] is False and posted["unfurl_media"] is False
    rendered = json.dumps(posted["blocks"])
    assert "Approval needed" in rendered and "sensitive" in rendered
    assert "/l/" not in rendered  # no link until approved
    (request,) = stored_requests(session_factory)
    assert request.state == "pending"
    assert request.agent_message_ts == "1700000000.000001"


def test_user_text_in_the_dm_is_escaped(send, slack_client):
    submit(send, reason="Please check <!channel> and <@U123> & <https://evil.example|this>", ticket="SUP-9")
    (posted,) = slack_client.calls_to("chat.postMessage")
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
