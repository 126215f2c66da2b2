"""Tests of the fake Slack Web API itself (tests/fakes/slack_api.py), over real HTTP with
slack_sdk's WebClient, and the cross-check of its method table against Slack's reference data
(../shared/slack-reference, when present)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.local import reference
from bot.local.reference import MethodNotInReference, SlackReference
from bot.slack import limits
from tests.fakes.slack_api import (
    APP_LEVEL_SCOPES,
    GENERIC_ERRORS,
    MANIFEST_PATH,
    METHODS,
    TRIGGER_TTL_SECONDS,
    FakeSlack,
    FakeUser,
    manifest_bot_scopes,
)

AGENT = FakeUser("UAGENT1", email="agent1@corp.example", tz="Europe/Paris", enterprise_user_id="WAGENT1")
OTHER = FakeUser("UAGENT2", email="agent2@corp.example", tz="America/New_York")


class FakeClock:
    """The fake's clock, moved by hand: trigger expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def fake(clock):
    with FakeSlack(users=[AGENT, OTHER], groups={"support-team": ["UAGENT1", "UGROUPIE1"]},
                   channels=["CSECURITY1"], clock=clock) as fake:
        yield fake


@pytest.fixture
def client(fake):
    return WebClient(token=fake.bot_token, base_url=fake.url)


def slack_error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


def modal(**overrides):
    view = {
        "type": "modal",
        "callback_id": "impersonate_request",
        "title": {"type": "plain_text", "text": "Impersonate"},
        "submit": {"type": "plain_text", "text": "Request"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": "req-1",
        "blocks": [
            {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
             "element": {"type": "plain_text_input", "action_id": "reason_input", "max_length": 500}},
        ],
    }
    view.update(overrides)
    return view


# --- transport, auth and scopes ------------------------------------------------------------------


def test_url_serves_the_web_api_for_slack_sdk(fake, client):
    assert fake.url.endswith("/api/")
    answer = client.auth_test()
    assert answer["ok"] and answer["bot_id"] == fake.bot_id and answer["user_id"] == fake.bot_user_id
    assert [c.method for c in fake.calls] == ["auth.test"]
    assert fake.violations == []


def test_stop_closes_the_port():
    fake = FakeSlack().start()
    url = fake.url
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(url + "auth.test", timeout=2)


def test_unknown_method_is_refused_and_recorded(fake, client):
    error = slack_error(lambda: client.api_call("chat.postMesage", json={"channel": "CSECURITY1", "text": "x"}))
    assert error.response["error"] == "unknown_method"
    assert [(v.method, v.error) for v in fake.violations] == [("chat.postMesage", "unknown_method")]


def test_missing_token_is_not_authed(fake):
    error = slack_error(lambda: WebClient(base_url=fake.url).auth_test())
    assert error.response["error"] == "not_authed"
    assert fake.violations[0].error == "not_authed"


def test_wrong_token_is_invalid_auth(fake):
    error = slack_error(lambda: WebClient(token="xoxb-someone-else", base_url=fake.url).auth_test())
    assert error.response["error"] == "invalid_auth"


def test_token_may_come_as_a_form_field(fake):
    answer = requests.post(fake.url + "auth.test", data={"token": fake.bot_token}, timeout=5).json()
    assert answer["ok"] is True


def test_token_inside_a_json_body_is_ignored_like_slack_does(fake):
    answer = requests.post(fake.url + "auth.test", json={"token": fake.bot_token}, timeout=5).json()
    assert answer["error"] == "not_authed"


def test_missing_scope_names_the_needed_scope(clock):
    with FakeSlack(scopes=["commands"], users=[AGENT], clock=clock) as fake:
        client = WebClient(token=fake.bot_token, base_url=fake.url)
        error = slack_error(lambda: client.chat_postMessage(channel="UAGENT1", text="hi"))
        assert error.response["error"] == "missing_scope"
        assert error.response["needed"] == "chat:write"
        assert error.response["provided"] == "commands"
        assert fake.violations[0].error == "missing_scope"
        assert fake.messages == {}


def test_apps_connections_open_takes_the_app_level_token_and_hands_out_a_socket_url(fake):
    answer = WebClient(base_url=fake.url).apps_connections_open(app_token=fake.app_token)
    assert answer["url"].startswith("ws://127.0.0.1:") and "ticket=" in answer["url"]
    assert answer.headers["x-oauth-scopes"] == "connections:write"
    assert fake.calls_to("apps.connections.open")[0].ok
    fake.assert_no_violations()


def test_apps_connections_open_refuses_the_bot_token(fake, client):
    error = slack_error(lambda: client.apps_connections_open(app_token=fake.bot_token))
    assert error.response["error"] == "not_allowed_token_type"
    assert [v.error for v in fake.violations] == ["not_allowed_token_type"]


def test_apps_connections_open_with_another_app_token_is_invalid_auth(fake):
    error = slack_error(lambda: WebClient(base_url=fake.url).apps_connections_open(app_token="xapp-1-A0OTHER-1-x"))
    assert error.response["error"] == "invalid_auth"


def test_apps_connections_open_needs_connections_write(clock):
    with FakeSlack(app_scopes=["authorizations:read"], clock=clock) as fake:
        error = slack_error(lambda: WebClient(base_url=fake.url).apps_connections_open(app_token=fake.app_token))
        assert (error.response["error"], error.response["needed"]) == ("missing_scope", "connections:write")


def test_the_app_token_calls_no_bot_method(fake):
    error = slack_error(lambda: WebClient(token=fake.app_token, base_url=fake.url).auth_test())
    assert error.response["error"] == "invalid_auth"


def test_bot_token_scopes_are_the_manifest_bot_scopes(fake):
    manifest = yaml.safe_load(MANIFEST_PATH.read_text())
    assert fake.scopes == frozenset(manifest["oauth_config"]["scopes"]["bot"]) == manifest_bot_scopes()


def test_answers_report_token_and_accepted_scopes_in_headers(fake, client):
    answer = client.chat_postMessage(channel="UAGENT1", text="hi")
    assert set(answer.headers["x-oauth-scopes"].split(",")) == set(fake.scopes)
    assert answer.headers["x-accepted-oauth-scopes"] == "chat:write"


# --- bodies and arguments ---------------------------------------------------------------------------


def test_json_and_form_bodies_decode_json_arguments_alike(fake, client):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]
    client.chat_postMessage(channel="UAGENT1", text="hi", blocks=blocks)  # slack_sdk sends JSON
    client.api_call("chat.postMessage", params={"channel": "UAGENT1", "text": "hi", "blocks": json.dumps(blocks)})
    as_json, as_form = fake.calls_to("chat.postMessage")
    assert as_json.args["blocks"] == as_form.args["blocks"] == blocks
    assert "token" not in as_json.args and "token" not in as_form.args
    assert fake.violations == []


def test_multipart_form_bodies_are_read(fake):
    answer = requests.post(fake.url + "chat.postMessage", files={"channel": (None, "UAGENT1"), "text": (None, "hi")},
                           headers={"Authorization": f"Bearer {fake.bot_token}"}, timeout=5).json()
    assert answer["ok"] is True


def test_boolean_arguments_read_like_slack_from_json_and_forms(fake, client):
    client.chat_postMessage(channel="UAGENT1", text="a", unfurl_links=False, unfurl_media=True)
    client.api_call("chat.postMessage", params={"channel": "UAGENT1", "text": "b", "unfurl_links": False})
    as_json, as_form = fake.calls_to("chat.postMessage")
    assert as_form.args["unfurl_links"] == "0"  # slack_sdk's form encoding of False
    assert as_json.flag("unfurl_links") is False and as_form.flag("unfurl_links") is False
    assert as_json.flag("unfurl_media") is True and as_json.flag("mrkdwn") is None


def test_json_body_to_a_form_only_method_is_a_violation(fake, client):
    error = slack_error(lambda: client.api_call("users.info", json={"user": "UAGENT1"}))
    assert error.response["error"] == "user_not_found"  # Slack never saw the argument
    assert [v.error for v in fake.violations] == ["json_body_not_supported", "user_not_found"]


@pytest.mark.parametrize(
    ("content_type", "error"),
    [(None, "missing_post_type"), ("text/csv", "invalid_post_type")],
)
def test_unreadable_bodies_are_refused(fake, content_type, error):
    headers = {"Authorization": f"Bearer {fake.bot_token}"}
    if content_type:
        headers["Content-Type"] = content_type
    answer = requests.post(fake.url + "auth.test", data=b"a,b", headers=headers, timeout=5).json()
    assert answer["error"] == error
    assert fake.violations[0].error == error


def test_malformed_json_argument_in_a_form(fake, client):
    error = slack_error(lambda: client.api_call("chat.postMessage", params={"channel": "UAGENT1", "blocks": "[{"}))
    assert error.response["error"] == "invalid_blocks_format"


# Each required argument or argument group left out, with the error Slack's reference gives.
MISSING_ARGUMENTS = [
    ("views.open", {"trigger_id": "1.2.abc"}, "invalid_arguments"),
    ("views.open", {"view": modal()}, "invalid_arguments"),
    ("views.push", {"trigger_id": "1.2.abc"}, "invalid_arguments"),
    ("views.push", {"view": modal()}, "invalid_arguments"),
    ("views.update", {"view_id": "V1"}, "invalid_arguments"),
    ("views.update", {"view": modal()}, "not_found"),
    ("views.publish", {"user_id": "UAGENT1"}, "invalid_arguments"),
    ("views.publish", {"view": {"type": "home", "blocks": []}}, "invalid_arguments"),
    ("chat.postMessage", {"text": "hi"}, "channel_not_found"),
    ("chat.postMessage", {"channel": "UAGENT1"}, "no_text"),
    ("chat.update", {"ts": "1.2", "text": "hi"}, "channel_not_found"),
    ("chat.update", {"channel": "DAGENT1", "text": "hi"}, "message_not_found"),
    ("chat.update", {"channel": "DAGENT1", "ts": "1.2"}, "no_text"),
    ("chat.postEphemeral", {"user": "UAGENT1", "text": "hi"}, "channel_not_found"),
    ("chat.postEphemeral", {"channel": "CSECURITY1", "text": "hi"}, "user_not_in_channel"),
    ("chat.postEphemeral", {"channel": "CSECURITY1", "user": "UAGENT1"}, "no_text"),
    ("chat.getPermalink", {"message_ts": "1.2"}, "channel_not_found"),
    ("chat.getPermalink", {"channel": "CSECURITY1"}, "message_not_found"),
    ("conversations.open", {"return_im": True}, "users_list_not_supplied"),
    ("users.info", {}, "user_not_found"),
    ("usergroups.users.list", {}, "no_such_subteam"),
    ("files.getUploadURLExternal", {"filename": "a.csv"}, "missing_argument"),
    ("files.getUploadURLExternal", {"length": 3}, "missing_argument"),
    ("files.completeUploadExternal", {"channel_id": "CSECURITY1"}, "invalid_form_data"),
]


@pytest.mark.parametrize(("method", "args", "error"), MISSING_ARGUMENTS)
def test_missing_required_argument(fake, client, method, args, error):
    send = {"json": args} if METHODS[method].accepts_json_body else {"params": args}
    answer = slack_error(lambda: client.api_call(method, **send)).response
    assert answer["error"] == error
    assert [(v.method, v.error) for v in fake.violations] == [(method, error)]


def test_every_required_argument_and_group_is_left_out_alone_above():
    def left_out(method, args):
        spec = METHODS[method]
        return [name for name in spec.required if name not in args] + [
            group for group, _ in spec.one_of if not group & set(args)]

    covered = {(method, *left_out(method, args)) for method, args, _ in MISSING_ARGUMENTS if len(left_out(method, args)) == 1}
    for spec in METHODS.values():
        for item in [*spec.required, *(group for group, _ in spec.one_of)]:
            assert (spec.name, item) in covered, (spec.name, item)


# --- Block Kit limits ----------------------------------------------------------------------------------


def section(text="x", **extra):
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(action_id="end_session", value="s-1", text="End session"):
    return {"type": "button", "action_id": action_id, "value": value, "text": {"type": "plain_text", "text": text}}


def select(options, **extra):
    return {"type": "static_select", "action_id": "duration_select", "options": options, **extra}


def option(text="15 min", value="15"):
    return {"text": {"type": "plain_text", "text": text}, "value": value}


MESSAGE_BREACHES = {
    "too many blocks": [section()] * (limits.MESSAGE_BLOCKS_MAX + 1),
    "section text": [section("x" * (limits.SECTION_TEXT_MAX + 1))],
    "too many fields": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * (limits.SECTION_FIELDS_MAX + 1)}],
    "button value": [{"type": "actions", "elements": [button(value="v" * (limits.BUTTON_VALUE_MAX + 1))]}],
    "button text": [{"type": "actions", "elements": [button(text="t" * (limits.BUTTON_TEXT_MAX + 1))]}],
    "action_id length": [{"type": "actions", "elements": [button(action_id="a" * (limits.ACTION_ID_MAX + 1))]}],
    "block_id length": [section(block_id="b" * (limits.BLOCK_ID_MAX + 1))],
    "duplicate block_id": [section(block_id="same"), section(block_id="same")],
    "duplicate action_id in a block": [{"type": "actions", "elements": [button(), button()]}],
    "header text": [{"type": "header", "text": {"type": "plain_text", "text": "h" * (limits.HEADER_TEXT_MAX + 1)}}],
    "header mrkdwn": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
    "empty text": [section("")],
    "option text": [section(accessory=select([option(text="o" * (limits.OPTION_TEXT_MAX + 1))]))],
    "option value": [section(accessory=select([option(value="v" * (limits.OPTION_VALUE_MAX + 1))]))],
    "too many options": [section(accessory=select([option(value=str(i)) for i in range(limits.OPTIONS_MAX + 1)]))],
    "initial option not offered": [section(accessory=select([option()], initial_option=option("60 min", "60")))],
    "context elements": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * (limits.CONTEXT_ELEMENTS_MAX + 1)}],
    "confirm title": [{"type": "actions", "elements": [{**button(), "confirm": {
        "title": {"type": "plain_text", "text": "t" * (limits.CONFIRM_TITLE_MAX + 1)},
        "text": {"type": "plain_text", "text": "Sure?"}, "confirm": {"type": "plain_text", "text": "Yes"},
        "deny": {"type": "plain_text", "text": "No"}}}]}],
    "unknown block type": [{"type": "sektion", "text": {"type": "mrkdwn", "text": "x"}}],
}


@pytest.mark.parametrize("breach", sorted(MESSAGE_BREACHES))
def test_message_blocks_over_slack_limits_are_refused(fake, client, breach):
    answer = slack_error(lambda: client.chat_postMessage(channel="UAGENT1", text="t", blocks=MESSAGE_BREACHES[breach])).response
    assert answer["error"] == "invalid_blocks"
    assert all("[json-pointer:/blocks" in m for m in answer["response_metadata"]["messages"])
    assert fake.violations[0].error == "invalid_blocks"
    assert fake.messages == {}


def test_message_blocks_at_exactly_the_limits_pass(fake, client):
    blocks = [section("x" * limits.SECTION_TEXT_MAX, block_id="b" * limits.BLOCK_ID_MAX)]
    blocks += [{"type": "actions", "elements": [button(action_id="a" * limits.ACTION_ID_MAX,
                                                       value="v" * limits.BUTTON_VALUE_MAX,
                                                       text="t" * limits.BUTTON_TEXT_MAX)]}]
    blocks += [section(block_id=f"s{i}") for i in range(limits.MESSAGE_BLOCKS_MAX - len(blocks))]
    client.chat_postMessage(channel="UAGENT1", text="t", blocks=blocks)
    assert fake.violations == []


def test_action_ids_may_repeat_across_blocks(fake, client):
    # Block Kit: action_id is unique within its block; a list of sessions repeats the button
    blocks = [section(block_id=f"s{i}", accessory=button(value=f"s-{i}")) for i in range(3)]
    client.chat_postMessage(channel="UAGENT1", text="t", blocks=blocks)
    assert fake.violations == []


VIEW_BREACHES = {
    "title": modal(title={"type": "plain_text", "text": "t" * (limits.MODAL_TITLE_MAX + 1)}),
    "submit": modal(submit={"type": "plain_text", "text": "s" * (limits.MODAL_SUBMIT_MAX + 1)}),
    "close": modal(close={"type": "plain_text", "text": "c" * (limits.MODAL_CLOSE_MAX + 1)}),
    "private_metadata": modal(private_metadata="m" * (limits.PRIVATE_METADATA_MAX + 1)),
    "callback_id": modal(callback_id="c" * (limits.CALLBACK_ID_MAX + 1)),
    "input without submit": {k: v for k, v in modal().items() if k != "submit"},
    "too many blocks": modal(blocks=[section(block_id=f"b{i}") for i in range(limits.MODAL_BLOCKS_MAX + 1)]),
    "duplicate block_id": modal(blocks=[section(block_id="reason"), *modal()["blocks"]]),
    "max_length over 3000": modal(blocks=[{"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "R"},
                                           "element": {"type": "plain_text_input", "action_id": "r",
                                                       "max_length": limits.PLAIN_TEXT_INPUT_MAX + 1}}]),
    "input label": modal(blocks=[{"type": "input", "block_id": "reason",
                                  "label": {"type": "plain_text", "text": "l" * (limits.INPUT_LABEL_MAX + 1)},
                                  "element": {"type": "plain_text_input", "action_id": "r"}}]),
    "placeholder": modal(blocks=[{"type": "input", "block_id": "account", "label": {"type": "plain_text", "text": "A"},
                                  "element": {"type": "external_select", "action_id": "account_select",
                                              "placeholder": {"type": "plain_text", "text": "p" * (limits.PLACEHOLDER_MAX + 1)}}}]),
    "not a modal": modal(type="dialog"),
}


@pytest.mark.parametrize("breach", sorted(VIEW_BREACHES))
def test_views_over_slack_limits_are_refused(fake, client, breach):
    trigger_id = fake.issue_trigger_id()
    answer = slack_error(lambda: client.views_open(trigger_id=trigger_id, view=VIEW_BREACHES[breach])).response
    assert answer["error"] == "invalid_arguments"
    assert all("[json-pointer:/view" in m for m in answer["response_metadata"]["messages"])
    assert fake.violations[0].error == "invalid_arguments"
    assert fake.views == {}


def test_view_at_exactly_the_limits_opens(fake, client):
    view = modal(title={"type": "plain_text", "text": "t" * limits.MODAL_TITLE_MAX},
                 submit={"type": "plain_text", "text": "s" * limits.MODAL_SUBMIT_MAX},
                 close={"type": "plain_text", "text": "c" * limits.MODAL_CLOSE_MAX},
                 private_metadata="m" * limits.PRIVATE_METADATA_MAX)
    answer = client.views_open(trigger_id=fake.issue_trigger_id(), view=view)
    assert answer["view"]["private_metadata"] == view["private_metadata"]
    assert fake.violations == []


def test_view_without_input_needs_no_submit(fake, client):
    view = {k: v for k, v in modal(blocks=[section("You cannot impersonate.")]).items() if k != "submit"}
    client.views_open(trigger_id=fake.issue_trigger_id(), view=view)
    assert fake.violations == []


# --- trigger ids and views -----------------------------------------------------------------------------


def test_trigger_id_opens_one_view_and_is_recorded(fake, client):
    trigger_id = fake.issue_trigger_id()
    view = client.views_open(trigger_id=trigger_id, view=modal())["view"]
    assert view["id"] in fake.views and view["callback_id"] == "impersonate_request"
    assert view["root_view_id"] == view["id"] and view["hash"]
    assert fake.calls_to("views.open")[0].args["view"] == modal()  # JSON argument decoded
    assert fake.violations == []


def test_trigger_id_unknown_to_slack(fake, client):
    answer = slack_error(lambda: client.views_open(trigger_id="123.456.deadbeef", view=modal())).response
    assert answer["error"] == "invalid_trigger_id"


def test_trigger_id_used_twice(fake, client):
    trigger_id = fake.issue_trigger_id()
    client.views_open(trigger_id=trigger_id, view=modal())
    answer = slack_error(lambda: client.views_open(trigger_id=trigger_id, view=modal())).response
    assert answer["error"] == "exchanged_trigger_id"
    assert len(fake.views) == 1


def test_trigger_id_usable_until_three_seconds(fake, client, clock):
    trigger_id = fake.issue_trigger_id()
    clock.now += TRIGGER_TTL_SECONDS
    client.views_open(trigger_id=trigger_id, view=modal())
    assert fake.violations == []


def test_trigger_id_expired_after_three_seconds(fake, client, clock):
    trigger_id = fake.issue_trigger_id()
    clock.now += TRIGGER_TTL_SECONDS + 0.1
    answer = slack_error(lambda: client.views_open(trigger_id=trigger_id, view=modal())).response
    assert answer["error"] == "expired_trigger_id"
    assert fake.violations[0].error == "expired_trigger_id"


def test_views_update_by_id_or_external_id_and_hash(fake, client):
    opened = client.views_open(trigger_id=fake.issue_trigger_id(), view=modal(external_id="req-1"))["view"]
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"],
                                  view=modal(external_id="req-1", private_metadata="req-2"))["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert fake.views[opened["id"]]["private_metadata"] == "req-2"
    client.views_update(external_id="req-1", view=modal(external_id="req-1", private_metadata="req-3"))
    assert fake.views[opened["id"]]["private_metadata"] == "req-3"
    stale = slack_error(lambda: client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())).response
    assert stale["error"] == "hash_conflict"
    missing = slack_error(lambda: client.views_update(view_id="VNOPE", view=modal())).response
    assert missing["error"] == "not_found"
    assert fake.violations == []  # races and closed views are Slack's answers, not app bugs


def test_views_push_stacks_on_the_interaction_modal_up_to_three(fake, client):
    root = client.views_open(trigger_id=fake.issue_trigger_id(), view=modal())["view"]
    second = client.views_push(trigger_id=fake.issue_trigger_id(view_id=root["id"]), view=modal())["view"]
    third = client.views_push(trigger_id=fake.issue_trigger_id(view_id=second["id"]), view=modal())["view"]
    assert third["root_view_id"] == root["id"] and third["previous_view_id"] == second["id"]
    fourth = slack_error(lambda: client.views_push(trigger_id=fake.issue_trigger_id(view_id=third["id"]), view=modal()))
    assert fourth.response["error"] == "push_limit_reached"


def test_views_push_needs_a_trigger_from_inside_a_modal(fake, client):
    answer = slack_error(lambda: client.views_push(trigger_id=fake.issue_trigger_id(), view=modal())).response
    assert answer["error"] == "invalid_trigger_id"


# --- messages ----------------------------------------------------------------------------------------------


def test_post_to_a_user_lands_in_the_dm_and_update_edits_it(fake, client):
    posted = client.chat_postMessage(channel="UAGENT1", text="Your link", unfurl_links=False, unfurl_media=False)
    assert posted["channel"] == fake.dm_channel("UAGENT1") and posted["channel"].startswith("D")
    assert posted["message"]["text"] == "Your link"
    key = (posted["channel"], posted["ts"])
    blocks = [section("Session active until 10:00")]
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="Session active", blocks=blocks)
    assert fake.messages[key].text == "Session active" and fake.messages[key].blocks == blocks
    assert fake.messages[key].history[0]["text"] == "Your link"
    assert fake.messages_in(posted["channel"]) == [fake.messages[key]]
    assert fake.violations == []


def test_conversations_open_gives_the_same_dm(fake, client):
    opened = client.conversations_open(users="UAGENT1")
    posted = client.chat_postMessage(channel=opened["channel"]["id"], text="hi")
    assert opened["channel"]["id"] == posted["channel"] == fake.dm_channel("UAGENT1")


def test_update_with_a_user_id_instead_of_the_dm_id_is_a_violation(fake, client):
    posted = client.chat_postMessage(channel="UAGENT1", text="hi")
    answer = slack_error(lambda: client.chat_update(channel="UAGENT1", ts=posted["ts"], text="x")).response
    assert answer["error"] == "channel_not_found"
    assert fake.violations[0].error == "channel_not_found"


def test_update_of_a_message_never_posted_is_a_violation(fake, client):
    answer = slack_error(lambda: client.chat_update(channel="DAGENT1", ts="1.000001", text="x")).response
    assert answer["error"] == "message_not_found"
    assert fake.violations[0].error == "message_not_found"


def test_post_to_an_unknown_channel_is_slacks_answer_not_a_violation(fake, client):
    answer = slack_error(lambda: client.chat_postMessage(channel="CNOTJOINED", text="x")).response
    assert answer["error"] == "channel_not_found"
    assert fake.violations == []


def test_overlong_text_is_truncated_like_slack_and_flagged(fake, client):
    posted = client.chat_postMessage(channel="CSECURITY1", text="x" * (limits.MESSAGE_TEXT_MAX + 5))
    assert len(fake.messages[(posted["channel"], posted["ts"])].text) == limits.MESSAGE_TEXT_MAX
    assert fake.violations[0].error == "text_truncated"


def test_ephemeral_message_and_permalink(fake, client):
    answer = client.chat_postEphemeral(channel="CSECURITY1", user="UAGENT1", text="only you")
    assert fake.ephemeral_messages[0].ephemeral_user == "UAGENT1" and answer["message_ts"]
    posted = client.chat_postMessage(channel="CSECURITY1", text="alert")
    link = client.chat_getPermalink(channel="CSECURITY1", message_ts=posted["ts"])["permalink"]
    assert link.endswith(posted["ts"].replace(".", ""))
    assert fake.violations == []


# --- directory ---------------------------------------------------------------------------------------------


def test_users_info_gives_tz_email_and_enterprise_id(fake, client):
    user = client.users_info(user="UAGENT1")["user"]
    assert user["tz"] == "Europe/Paris" and isinstance(user["tz_offset"], int)
    assert user["profile"]["email"] == "agent1@corp.example"
    assert user["enterprise_user"]["id"] == "WAGENT1"
    assert "enterprise_user" not in client.users_info(user="UAGENT2")["user"]


def test_users_info_leaves_email_out_without_the_email_scope(clock):
    scopes = manifest_bot_scopes() - {"users:read.email"}
    with FakeSlack(users=[AGENT], scopes=scopes, clock=clock) as fake:
        user = WebClient(token=fake.bot_token, base_url=fake.url).users_info(user="UAGENT1")["user"]
        assert "email" not in user["profile"]


def test_unknown_user_is_slacks_answer_not_a_violation(fake, client):
    assert slack_error(lambda: client.users_info(user="UNOBODY")).response["error"] == "user_not_found"
    assert fake.violations == []


def test_usergroups_list_and_members(fake, client):
    groups = client.usergroups_list(include_users=True)["usergroups"]
    assert [(g["handle"], g["users"]) for g in groups] == [("support-team", ["UAGENT1", "UGROUPIE1"])]
    assert "users" not in client.usergroups_list()["usergroups"][0]
    members = client.usergroups_users_list(usergroup=fake.usergroup_id("support-team"))["users"]
    assert members == ["UAGENT1", "UGROUPIE1"]
    assert slack_error(lambda: client.usergroups_users_list(usergroup="SNOPE")).response["error"] == "no_such_subteam"
    assert fake.violations == []


# --- files -------------------------------------------------------------------------------------------------


def test_files_upload_v2_goes_through_the_upload_url(fake, client):
    answer = client.files_upload_v2(content="a,b\n1,2\n", filename="export.csv", title="Export",
                                    channel="CSECURITY1", initial_comment="Audit export")
    (stored,) = fake.files.values()
    assert stored.content == b"a,b\n1,2\n" and stored.completed and stored.channel_id == "CSECURITY1"
    assert answer["file"]["id"] == stored.id and answer["file"]["title"] == "Export"
    assert [c.method for c in fake.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    assert fake.calls_to("files.completeUploadExternal")[0].args["files"] == [{"id": stored.id, "title": "Export"}]
    assert fake.violations == []


def test_completing_a_file_never_uploaded_is_a_violation(fake, client):
    file_id = client.files_getUploadURLExternal(filename="x.csv", length=3)["file_id"]
    answer = slack_error(lambda: client.files_completeUploadExternal(files=[{"id": file_id}])).response
    assert answer["error"] == "file_not_found"
    assert fake.violations[0].error == "file_not_found"


def test_upload_of_another_length_than_declared_is_a_violation(fake, client):
    upload_url = client.files_getUploadURLExternal(filename="x.csv", length=3)["upload_url"]
    assert requests.post(upload_url, data=b"four", timeout=5).status_code == 200
    assert fake.violations[0].error == "length_mismatch"


# --- injected failures and records -------------------------------------------------------------------------


def test_fail_next_rate_limit_carries_retry_after(fake, client):
    fake.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=7)
    error = slack_error(lambda: client.chat_postMessage(channel="UAGENT1", text="hi"))
    assert error.response.status_code == 429 and error.response.headers["Retry-After"] == "7"
    assert error.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel="UAGENT1", text="hi")["ok"]  # only the next call fails
    assert [c.injected for c in fake.calls] == [True, False]
    assert len(fake.messages) == 1 and fake.violations == []


def test_fail_next_server_error_and_repeat(fake, client):
    fake.fail_next("users.info", "fatal_error", status=500, times=2)
    for _ in range(2):
        assert slack_error(lambda: client.users_info(user="UAGENT1")).response.status_code == 500
    assert client.users_info(user="UAGENT1")["ok"]


def test_fail_next_still_checks_the_contract(fake, client):
    fake.fail_next("chat.postMessage", "fatal_error")
    with pytest.warns(UserWarning, match="text"):  # slack_sdk warns too
        slack_error(lambda: client.chat_postMessage(channel="UAGENT1"))
    assert fake.violations[0].error == "no_text"


def test_fail_next_refuses_methods_outside_the_table(fake):
    with pytest.raises(ValueError):
        fake.fail_next("chat.delete", "fatal_error")


def test_calls_record_method_args_time_and_answer(fake, client, clock):
    clock.now = 1234.5
    client.chat_postMessage(channel="UAGENT1", text="hi")
    (call,) = fake.calls_to("chat.postMessage")
    assert (call.method, call.args, call.time, call.status, call.ok) == (
        "chat.postMessage", {"channel": "UAGENT1", "text": "hi"}, 1234.5, 200, True)
    assert fake.calls_to("views.open") == []


def test_assert_no_violations_lists_them(fake, client):
    slack_error(lambda: client.api_call("nope.nope"))
    with pytest.raises(AssertionError, match="nope.nope: unknown_method"):
        fake.assert_no_violations()


# --- cross-check against Slack's reference data (../shared/slack-reference) --------------------------------

# Errors Slack answers that its reference omits for one method but documents for a sibling.
KNOWN_UNDOCUMENTED = {
    # a view that fails validation: Slack answers invalid_arguments with json-pointer messages,
    # as the reference documents for views.open and views.push
    ("views.update", "invalid_arguments"): "views.open",
}


def _reference(reference_dir: Path, method: str) -> tuple[dict, dict]:
    try:
        return SlackReference(reference_dir).method(method)
    except MethodNotInReference:
        pytest.fail(f"{method} is not a Slack Web API method in {reference_dir}")


def _documented_errors(reference_dir: Path, method: str) -> set[str]:
    return SlackReference(reference_dir).documented_errors(method)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_table_matches_slack_reference(reference_dir, method):
    spec = METHODS[method]
    ref, docs = _reference(reference_dir, method)
    documented_args = set(ref["args"])
    assert not ref.get("deprecated"), f"{method} is deprecated"
    assert spec.required_args == {a for a, d in ref["args"].items() if d.get("required")}
    assert spec.required_args == set(docs["args"].get("required", [])) - {"token"}
    for group, _ in spec.one_of:
        assert group <= documented_args, f"{method}: {group - documented_args} undocumented"
    for name in spec.json_args:
        arg = ref["args"][name]
        assert arg.get("format") == "json" or arg.get("type") in ("array", "object"), f"{method}.{name}"
    assert spec.accepts_json_body == bool(docs.get("json_input_supported"))
    bot_scopes = docs["scope"].get("bot", [])
    if spec.token == "app":
        # App-level token methods: the reference lists no bot or user scope for them, and
        # says the token it wants is the app-level one; their scope is an app-level scope.
        assert bot_scopes == [] and docs["scope"].get("user", []) == []
        assert "app-level token" in docs["errors"]["invalid_auth"]["desc"]
        assert spec.scope in APP_LEVEL_SCOPES
        return
    assert spec.token == "bot"
    if spec.scope is None:
        assert bot_scopes == [] and docs.get("no_scope_required"), f"{method} needs one of {bot_scopes}"
    else:
        assert spec.scope in bot_scopes


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_errors_are_documented_by_slack(reference_dir, method):
    documented = _documented_errors(reference_dir, method)
    allowed = {error for (m, error) in KNOWN_UNDOCUMENTED if m == method}
    undocumented = METHODS[method].all_errors() - documented - allowed
    assert undocumented == set(), f"{method} answers errors Slack does not document for it"


def test_known_undocumented_errors_are_still_undocumented_and_real(reference_dir):
    for (method, error), sibling in KNOWN_UNDOCUMENTED.items():
        assert error not in _documented_errors(reference_dir, method), f"drop {method}/{error}: now documented"
        assert error in _documented_errors(reference_dir, sibling)


def test_generic_errors_are_documented_by_slack(reference_dir):
    common = SlackReference(reference_dir).common_errors()
    # invalid_auth is Slack's answer to a bad token on every method; the reference documents it
    # with auth.test, the method that exists to check a token
    assert GENERIC_ERRORS <= common | _documented_errors(reference_dir, "auth.test")


def test_optional_scopes_are_real_bot_scopes(reference_dir):
    known = SlackReference(reference_dir).bot_scopes_anywhere()
    for spec in METHODS.values():
        assert set(spec.optional_scopes) <= known


def test_an_argument_the_reference_does_not_document_is_a_violation(reference_dir):
    """Slack ignores an argument it does not know; the app's intent would be lost unseen."""
    with FakeSlack(reference=SlackReference(reference_dir), users=[AGENT], channels=["C1"]) as fake:
        client = WebClient(token=fake.bot_token, base_url=fake.url)
        client.chat_postMessage(channel="C1", text="hi", unfurl_links=False)
        assert fake.violations == []
        client.chat_postMessage(channel="C1", text="hi", colour="red")
        assert [(v.method, v.error) for v in fake.violations] == [("chat.postMessage", "undocumented_argument")]
        assert "colour" in fake.violations[0].detail


def test_without_the_reference_its_checks_are_left_out(tmp_path):
    assert reference.find(tmp_path / "absent") is None
    with FakeSlack(reference=None, users=[AGENT], channels=["C1"]) as fake:
        WebClient(token=fake.bot_token, base_url=fake.url).chat_postMessage(channel="C1", text="hi", colour="red")
        fake.assert_no_violations()


# --- the Home tab (views.publish) ------------------------------------------------------------------------


def home(blocks=None, **extra):
    return {"type": "home", "blocks": blocks if blocks is not None else [section("Hello")], **extra}


def test_views_publish_replaces_the_users_home_and_needs_no_trigger(fake, client):
    first = client.views_publish(user_id="UAGENT1", view=home())["view"]
    second = client.views_publish(user_id="UAGENT1", view=home([section("Again")]))["view"]
    assert first["id"] == second["id"] and fake.home_views["UAGENT1"]["blocks"] == [section("Again")]
    assert fake.violations == []


@pytest.mark.parametrize(
    ("view", "pointer"),
    [
        (home([section("x")] * (limits.HOME_BLOCKS_MAX + 1)), "/view/blocks"),
        (modal(), "/view/type"),  # a modal is no Home tab
        (home([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * (limits.SECTION_TEXT_MAX + 1)}}]), "/view/blocks/0"),
    ],
)
def test_a_home_over_slack_limits_is_refused(fake, client, view, pointer):
    answer = slack_error(lambda: client.views_publish(user_id="UAGENT1", view=view)).response
    assert answer["error"] == "invalid_arguments"
    assert any(f"[json-pointer:{pointer}" in m for m in answer["response_metadata"]["messages"])
    assert fake.violations[0].error == "invalid_arguments" and fake.home_views == {}


def test_a_home_view_is_refused_by_views_open(fake, client):
    answer = slack_error(lambda: client.views_open(trigger_id=fake.issue_trigger_id(), view=home())).response
    assert answer["error"] == "invalid_arguments"
