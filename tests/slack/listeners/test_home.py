"""The App Home tab through the Bolt app: opening it publishes it (after the answer, through
the outbox), its buttons and account search, and clicks in it answered in a small modal."""
import json

import pytest

from bot.domain import requests, sessions
from bot.domain.requests import AgentIdentity, RequestForm
from bot.domain.sessions import SessionStatus
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import block_kit_errors
from tests.slack.conftest import audit_events, response_json
from tests.slack.listeners.flow import REASON, start_live_session
from tests.slack.signed import app_home_opened, block_suggestion, home_action


@pytest.fixture(autouse=True)
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})


def published(slack_client, user):
    views = [c["view"] for c in slack_client.calls_to("views.publish") if c["user_id"] == user]
    assert views, f"no Home published for {user}"
    view = views[-1]
    assert block_kit_errors(view=view, surface="home") == []
    return json.dumps(view)


def test_opening_the_home_publishes_it_for_that_person(send, slack_client):
    response = send(app_home_opened("UAGENT1"))
    assert response.status == 200 and response.body == ""
    (call,) = slack_client.calls_to("views.publish")
    assert call["user_id"] == "UAGENT1" and call["view"]["type"] == "home"
    text = published(slack_client, "UAGENT1")
    assert ActionId.HOME_REQUEST.value in text and "Your live sessions" in text
    assert ActionId.HOME_FLAG.value not in text and "Waiting for your approval" not in text


def test_the_messages_tab_publishes_nothing(send, slack_client):
    send(app_home_opened("UAGENT1", tab="messages"))
    assert slack_client.calls_to("views.publish") == []


@pytest.mark.parametrize(
    ("user", "shown", "hidden"),
    [
        ("UAGENT1", ["Your live sessions", "Your last requests"], ["Waiting for your approval", "Live sessions across accounts", "Impersonation log"]),
        ("UMANAGER1", ["Waiting for your approval", "Your live sessions"], ["Live sessions across accounts", "Impersonation log", ActionId.HOME_FLAG.value]),
        ("USECURITY1", ["Live sessions across accounts", "Audit chain", "Impersonation log", ActionId.HOME_FLAG.value],
         ["Your live sessions", "Waiting for your approval", ActionId.HOME_REQUEST.value]),
        ("UNOBODY1", ["no role in the impersonation policy"], ["Your live sessions", "Waiting", "Live sessions across", "Impersonation log"]),
    ],
)
def test_a_person_sees_only_what_their_powers_allow(send, slack_client, user, shown, hidden):
    send(app_home_opened(user))
    text = published(slack_client, user)
    for part in shown:
        assert part in text
    for part in hidden:
        assert part not in text


def test_the_request_button_opens_the_request_modal(send, slack_client):
    send(home_action(ActionId.HOME_REQUEST.value, "request", user_id="UAGENT1", block_id=BlockId.HOME_TOOLS.value))
    assert slack_client.calls_to("views.open")[0]["view"]["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value


def test_the_flag_button_opens_the_flag_modal_or_says_why_not(send, slack_client, session_factory):
    send(home_action(ActionId.HOME_FLAG.value, "flag", user_id="USECURITY1", block_id=BlockId.HOME_TOOLS.value))
    send(home_action(ActionId.HOME_FLAG.value, "flag", user_id="UAGENT1", block_id=BlockId.HOME_TOOLS.value))  # a forged click
    allowed, refused = (c["view"] for c in slack_client.calls_to("views.open"))
    assert allowed["callback_id"] == CallbackId.FLAG_ACCOUNT.value
    assert refused["callback_id"] == CallbackId.HOME_NOTICE.value
    assert refused["blocks"][0]["text"]["text"].startswith("You do not hold a role that can change account flags.")
    assert len(audit_events(session_factory, "account.flag_refused")) == 1


def test_choosing_an_account_sends_the_log_answer_to_the_readers_dm(send, slack_client, ctx, session_factory):
    start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000001")
    send(home_action(ActionId.HOME_LOG_ACCOUNT_SELECT.value, user_id="USECURITY1", selected="acme", block_id=BlockId.HOME_LOG_SEARCH.value))
    (post,) = [p for p in slack_client.calls_to("chat.postMessage") if p["channel"] == "USECURITY1"]
    assert "ACME Corp" in json.dumps(post["blocks"])
    assert len(audit_events(session_factory, "log.viewed")) == 1


def test_the_account_search_offers_accounts_only_to_log_readers(send):
    def offered(user):
        body = block_suggestion(ActionId.HOME_LOG_ACCOUNT_SELECT.value, "", user_id=user, block_id=BlockId.HOME_LOG_SEARCH.value)
        return [o["value"] for o in response_json(send(body))["options"]]

    assert offered("USECURITY1") == ["acme", "globex", "initech", "umbrella"]
    assert offered("UAGENT1") == []


def test_revoke_from_the_home_is_audited_as_such(send, ctx, session_factory):
    live = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000001")
    send(home_action(ActionId.REVOKE_SESSION.value, live.id, user_id="USECURITY1"))
    assert sessions.check_session(ctx, live.id).status is SessionStatus.REVOKED
    (event,) = audit_events(session_factory, "session.revoked")
    assert json.loads(event.details)["source"] == "home"


def test_a_click_in_the_home_that_decides_nothing_is_answered_in_a_modal(send, slack_client, ctx):
    form = RequestForm(account="globex", user="u-carol", reason=REASON, ticket="SUP-1", duration_minutes=30, scope="read_only")
    pending = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)  # needs a manager
    send(home_action(ActionId.APPROVE_REQUEST.value, pending.request.id, user_id="UAGENT1"))  # their own: refused
    (notice,) = [c["view"] for c in slack_client.calls_to("views.open") if c["view"]["callback_id"] == CallbackId.HOME_NOTICE.value]
    assert notice["blocks"][0]["text"]["text"].startswith("You cannot approve or deny your own request. Another approver decides it")
    assert requests.load_request(ctx, pending.request.id).state == "pending"
