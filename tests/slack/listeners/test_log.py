"""`/impersonation-log` and its buttons through the Bolt app with signed requests: the
answer in the command's acknowledgement, paging through response URLs, and
exports delivered to the clicker's DM through the real upload flow of the fake Slack API."""
from __future__ import annotations

import csv
import io
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from slack_sdk import WebClient

from bot.domain.log_query import REFUSED_MESSAGE, LogOptions, resolve
from bot.slack.blocks.log import EXPORT_FAILED, PAGE_SIZE
from bot.slack.app import build_slack_app
from bot.slack.ids import ActionId, BlockId
from tests.fakes.log_history import NOW, build_history, open_session
from tests.fakes.response_urls import FakeResponseUrls
from tests.fakes.slack_api import FakeSlack, FakeUser
from tests.slack.block_rules import mrkdwn_texts, problems
from tests.slack.conftest import audit_events, response_json
from tests.slack.recording_client import RecordingWebClient
from tests.slack.signed import SIGNING_SECRET, interaction, signed, slash_command


def command(send, text: str, *, user_id: str):
    return send(slash_command(text, user_id=user_id, command="/impersonation-log"))


def click(send, action: ActionId, value: str, *, user_id: str, response_url: str):
    """A button under the ephemeral answer (Slack gives it its own response_url)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": "T1"},
        "team": {"id": "T1", "domain": "test"},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "trigger_id": "1337.42.trigger-secret",
        "container": {"type": "message", "message_ts": "1700000000.000009", "channel_id": "C0GENERAL", "is_ephemeral": True},
        "channel": {"id": "C0GENERAL", "name": "general"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action.value, "block_id": BlockId.LOG_ACTIONS.value, "value": value, "action_ts": "1700000001.1"}],
    }
    return send(interaction(payload))


def buttons(blocks: list[dict]) -> dict[str, str]:
    (actions,) = [b for b in blocks if b.get("type") == "actions"]
    return {e["action_id"]: e["value"] for e in actions["elements"]}


class SharedRecordingClient(RecordingWebClient):
    """Bolt deep-copies a request's context, client included, for its lazy listeners
    (slack_bolt/listener/thread_runner.py, _build_lazy_request). A production WebClient copies
    fine; the recorder must stay one, so that the export's calls are recorded too."""

    def __deepcopy__(self, memo: dict) -> SharedRecordingClient:
        return self


@pytest.fixture
def slack_client() -> RecordingWebClient:
    return SharedRecordingClient()


@pytest.fixture
def history(ctx, tmp_path):
    return build_history(ctx, tmp_path)


@pytest.fixture
def hooks():
    with FakeResponseUrls() as fake:
        yield fake
    assert fake.violations == []


@pytest.fixture(autouse=True)
def at_now():
    # The test history is fixed in time; Bolt's request signatures need the real clock, so
    # only the domain's clock is moved (freezegun with tick, from NOW).
    with freeze_time(NOW, tick=True, ignore=["slack_bolt", "slack_sdk", "tests.slack.signed", "werkzeug", "http", "urllib", "socketserver"]):
        yield


# --- the command ----------------------------------------------------------------------------------


def test_a_viewer_gets_the_answer_in_the_acknowledgement(send, slack_client, session_factory, history):
    response = command(send, "account:acme", user_id="USECURITY1")
    assert response.status == 200
    body = response_json(response)
    assert body["response_type"] == "ephemeral"
    assert problems(body["blocks"], surface="message") == []
    assert "*Sessions*\n4" in mrkdwn_texts(body["blocks"])
    assert body["text"].startswith("Impersonation log for ACME Corp (acme): 4 sessions")
    assert [c.method for c in slack_client.calls] == ["auth.test"]  # no Web API call: the ack is the answer
    (viewed,) = audit_events(session_factory, "log.viewed")
    assert viewed.actor_slack_id == "USECURITY1" and json.loads(viewed.details)["query"]["account"] == "acme"


def test_anyone_else_is_refused_privately_and_it_is_audited(send, session_factory, history):
    body = response_json(command(send, "account:acme agent:<@UAGENT2|bob>", user_id="UAGENT1"))
    assert body["response_type"] == "ephemeral"
    assert body["text"] == REFUSED_MESSAGE and "`/impersonate help` lists what you can do" in REFUSED_MESSAGE
    assert audit_events(session_factory, "log.viewed") == []
    (refused,) = audit_events(session_factory, "log.refused")
    assert refused.actor_slack_id == "UAGENT1" and json.loads(refused.details)["query"]["agent"] == "UAGENT2"


def test_bad_syntax_gets_the_usage_line(send):
    body = response_json(command(send, "acme last week", user_id="USECURITY1"))
    assert body["response_type"] == "ephemeral"
    assert "Usage: /impersonation-log account:ACCOUNT" in body["text"]
    assert "`acme` is not one of account:" in body["blocks"][0]["text"]["text"]


# --- paging ------------------------------------------------------------------------------------------


def test_next_replaces_the_answer_through_the_response_url_and_is_audited(ctx, send, session_factory, hooks, history):
    for n in range(PAGE_SIZE):  # 14 sessions: two pages
        open_session(ctx, "UAGENT1", at=NOW - timedelta(days=10 + n))
    answer = response_json(command(send, "account:acme", user_id="USECURITY1"))
    assert ActionId.LOG_PREVIOUS_PAGE.value not in buttons(answer["blocks"])
    next_page = buttons(answer["blocks"])[ActionId.LOG_NEXT_PAGE.value]
    response = click(send, ActionId.LOG_NEXT_PAGE, next_page, user_id="USECURITY1", response_url=hooks.issue())
    assert response.status == 200 and response.body == ""
    (posted,) = hooks.wait_for(1)
    assert posted.replace_original and posted.body["response_type"] == "ephemeral"
    assert "Page 2 of 2 · sessions 11–14, newest first" in json.dumps(posted.body["blocks"], ensure_ascii=False)
    assert set(buttons(posted.body["blocks"])) == {ActionId.LOG_PREVIOUS_PAGE.value, ActionId.LOG_EXPORT_CSV.value, ActionId.LOG_EXPORT_JSON.value}
    assert [json.loads(e.details)["page"] for e in audit_events(session_factory, "log.viewed")] == [1, 2]


def test_a_click_by_someone_without_the_power_is_refused_and_audited(send, session_factory, hooks, history):
    token = resolve(LogOptions("acme"), now=NOW).token(1)
    click(send, ActionId.LOG_NEXT_PAGE, token, user_id="UAGENT1", response_url=hooks.issue())
    (posted,) = hooks.wait_for(1)
    assert posted.body["text"].startswith("Only security and compliance roles")
    assert audit_events(session_factory, "log.viewed") == []
    (refused,) = audit_events(session_factory, "log.refused")
    assert json.loads(refused.details)["page"] == 2


def test_an_export_by_someone_without_the_power_is_refused_after_the_ack(send, slack_client, session_factory, hooks, history):
    token = resolve(LogOptions("acme"), now=NOW).token(0)
    response = click(send, ActionId.LOG_EXPORT_CSV, token, user_id="UAGENT1", response_url=hooks.issue())
    assert response.status == 200 and response.body == ""
    (posted,) = hooks.wait_for(1)
    assert posted.body["text"].startswith("Only security and compliance roles") and not posted.replace_original
    assert not [c for c in slack_client.calls if c.method.startswith(("files.", "conversations."))]
    (refused,) = audit_events(session_factory, "log.refused")
    assert json.loads(refused.details)["export"] == "csv"
    assert audit_events(session_factory, "log.exported") == []


# --- exports through the fake Slack Web API (real HTTP, the real upload flow) ---------------------


@pytest.fixture
def fake_slack():
    users = [FakeUser("USECURITY1", email="security1@corp.example"), FakeUser("UAGENT1", email="agent1@corp.example")]
    with FakeSlack(users=users) as fake:
        yield fake


@pytest.fixture
def send_to_fake(ctx, fake_slack):
    app = build_slack_app(ctx, client=WebClient(token=fake_slack.bot_token, base_url=fake_slack.url), signing_secret=SIGNING_SECRET)
    return lambda body: app.dispatch(signed(body))


@pytest.mark.parametrize(("action", "suffix"), [(ActionId.LOG_EXPORT_CSV, ".csv"), (ActionId.LOG_EXPORT_JSON, ".json")])
def test_an_export_lands_in_the_clickers_dm_as_a_file(send_to_fake, fake_slack, session_factory, hooks, history, action, suffix):
    answer = response_json(command(send_to_fake, "account:acme", user_id="USECURITY1"))
    value = buttons(answer["blocks"])[action.value]
    response = click(send_to_fake, action, value, user_id="USECURITY1", response_url=hooks.issue())
    assert response.status == 200
    (posted,) = hooks.wait_for(1)
    assert posted.body["text"].startswith("Sent `impersonation-log_acme_") and not posted.replace_original

    (opened,) = fake_slack.calls_to("conversations.open")
    assert opened.args["users"] == "USECURITY1"
    (ticket,) = fake_slack.calls_to("files.getUploadURLExternal")
    (completed,) = fake_slack.calls_to("files.completeUploadExternal")
    assert completed.ok and completed.args["channel_id"] == fake_slack.dm_channel("USECURITY1")
    (stored,) = fake_slack.files.values()
    assert stored.completed and stored.channel_id == fake_slack.dm_channel("USECURITY1")
    assert stored.filename.endswith(suffix) and int(ticket.args["length"]) == len(stored.content)
    assert "ACME Corp" in stored.title and "recorded in the audit log" in stored.initial_comment
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(stored.content.decode())))
        assert len(rows) == 4 and {r["customer_user"] for r in rows} == {"u-bob"}
    else:
        assert json.loads(stored.content)["summary"]["sessions"] == 4
    fake_slack.assert_no_violations()
    (exported,) = audit_events(session_factory, "log.exported")
    assert exported.actor_slack_id == "USECURITY1" and json.loads(exported.details)["via"] == "slack"


def test_a_failed_upload_is_told_to_the_clicker(send_to_fake, fake_slack, hooks, history):
    fake_slack.fail_next("files.completeUploadExternal", "file_not_found")
    token = resolve(LogOptions("acme"), now=NOW).token(0)
    click(send_to_fake, ActionId.LOG_EXPORT_CSV, token, user_id="USECURITY1", response_url=hooks.issue())
    (posted,) = hooks.wait_for(1)
    assert posted.body["text"] == EXPORT_FAILED


def test_at_debug_the_page_posted_to_the_response_url_never_reaches_the_log(ctx, send, hooks, history, caplog):
    """slack_sdk's webhook client logs the response URL and the whole body (customers' names
    and e-mail addresses) at DEBUG unless its own level says otherwise."""
    for n in range(PAGE_SIZE):
        open_session(ctx, "UAGENT1", at=NOW - timedelta(days=10 + n))
    caplog.set_level(logging.DEBUG)
    answer = response_json(command(send, "account:acme", user_id="USECURITY1"))
    response_url = hooks.issue()
    click(send, ActionId.LOG_NEXT_PAGE, buttons(answer["blocks"])[ActionId.LOG_NEXT_PAGE.value], user_id="USECURITY1", response_url=response_url)
    (posted,) = hooks.wait_for(1)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert response_url not in logged
    assert "@" not in logged.replace("@UAGENT", "")  # no customer e-mail address
    assert "Page 2 of 2" not in logged
