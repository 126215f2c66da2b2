"""Account flags from Slack: `/impersonate flag <account>`, the flag modal and its typeahead,
driven through the Bolt app with signed requests."""
import json

import pytest

from bot.domain import sessions
from bot.domain.sessions import SessionStatus
from bot.slack.blocks.flags import FLAG_ON
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.block_rules import problems
from tests.slack.conftest import audit_events, response_json
from tests.slack.listeners.flow import start_live_session
from tests.slack.signed import block_suggestion, slash_command, view_submission
from tests.fakes.directory_data import load_directory


@pytest.fixture(autouse=True)
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path)


def flag_state(*, account="acme", flag="opted_out", value=FLAG_ON, reference="MSA-2041", reason="Contract clause 4.2 forbids vendor access"):
    def selected(v):
        return {"type": "static_select", "selected_option": None if v is None else {"text": {"type": "plain_text", "text": "x"}, "value": v}}

    return {
        BlockId.FLAG_ACCOUNT.value: {ActionId.FLAG_ACCOUNT_SELECT.value: selected(account)},
        BlockId.FLAG_WHICH.value: {ActionId.FLAG_WHICH_SELECT.value: selected(flag)},
        BlockId.FLAG_VALUE.value: {ActionId.FLAG_VALUE_CHOICE.value: selected(value)},
        BlockId.FLAG_REFERENCE.value: {ActionId.FLAG_REFERENCE_INPUT.value: {"type": "plain_text_input", "value": reference}},
        BlockId.FLAG_REASON.value: {ActionId.FLAG_REASON_INPUT.value: {"type": "plain_text_input", "value": reason}},
    }


def submit_flag(send, user_id="USECURITY1", **answers):
    return send(view_submission(flag_state(**answers), user_id=user_id, callback_id=CallbackId.FLAG_ACCOUNT.value))


def test_the_flag_command_opens_the_flag_modal_on_the_named_account(send, slack_client):
    send(slash_command("flag ACME", user_id="USECURITY1"))
    (opened,) = slack_client.calls_to("views.open")
    view = opened["view"]
    assert view["callback_id"] == CallbackId.FLAG_ACCOUNT.value
    assert problems(view, surface="modal") == []
    account = next(b for b in view["blocks"] if b.get("block_id") == BlockId.FLAG_ACCOUNT.value)["element"]
    assert account["initial_option"]["value"] == "acme"
    assert "carries these flags now" in view["blocks"][0]["text"]["text"]


def test_the_flag_command_is_refused_privately_to_a_role_that_cannot_flag_and_audited(send, slack_client, session_factory):
    response = send(slash_command("flag acme", user_id="UAGENT1"))
    body = response_json(response)
    assert body["response_type"] == "ephemeral"
    assert body["text"].startswith("You do not hold a role that can change account flags.")
    assert "`/impersonate help`" in body["text"]
    assert slack_client.calls_to("views.open") == []
    assert len(audit_events(session_factory, "account.flag_refused")) == 1


def test_an_opt_out_from_the_modal_ends_live_sessions_and_tells_the_agent_and_the_feed(send, slack_client, ctx, session_factory):
    live = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000001")
    response = submit_flag(send)
    body = response_json(response)
    assert body["response_action"] == "update" and body["view"]["callback_id"] == CallbackId.FLAG_ACCOUNT_DONE.value
    assert "1 live session on it ended at once" in body["view"]["blocks"][0]["text"]["text"]
    assert "The security channel is told." in body["view"]["blocks"][0]["text"]["text"]
    assert problems(body["view"], surface="modal") == []
    assert sessions.check_session(ctx, live.id).status is SessionStatus.REVOKED
    (event,) = audit_events(session_factory, "account.flag_changed")
    assert event.actor_slack_id == "USECURITY1" and json.loads(event.details)["value"] is True
    # delivered after the answer: the agent's DM edited, a notice to them, the feed told
    assert any(u["channel"] == "DAGENT1" for u in slack_client.calls_to("chat.update"))
    assert {p["channel"] for p in slack_client.calls_to("chat.postMessage")} >= {"UAGENT1", "CSECURITY1"}


def test_a_flag_change_without_a_reference_is_refused_on_that_field(send, session_factory):
    body = response_json(submit_flag(send, reference=""))
    assert body["response_action"] == "errors" and set(body["errors"]) == {BlockId.FLAG_REFERENCE.value}
    assert audit_events(session_factory, "account.flag_changed") == []


def test_a_flag_submission_by_a_role_that_lost_the_power_is_refused_and_audited(send, session_factory):
    body = response_json(submit_flag(send, user_id="UMANAGER1"))
    assert body["response_action"] == "errors" and set(body["errors"]) == {BlockId.FLAG_ACCOUNT.value}
    assert audit_events(session_factory, "account.flag_changed") == []
    assert len(audit_events(session_factory, "account.flag_refused")) == 1


def test_the_flag_modal_offers_accounts_only_to_roles_that_can_flag(send):
    def offered(user_id):
        response = send(block_suggestion(ActionId.FLAG_ACCOUNT_SELECT.value, "", user_id=user_id, block_id=BlockId.FLAG_ACCOUNT.value))
        return [o["value"] for o in response_json(response)["options"]]

    assert offered("USECURITY1") == ["acme", "globex", "initech", "umbrella"]
    assert offered("UAGENT1") == []
