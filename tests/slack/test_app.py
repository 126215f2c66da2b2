"""The Bolt app as built for production: signature checks, the default runner mode, the
request log and the one error handler."""
import logging
import time

import pytest
from slack_bolt.error import BoltError

from bot.slack.app import build_slack_app, describe_request
from tests.fakes.directory_data import load_directory
from tests.slack.conftest import audit_events
from tests.slack.recording_client import BOT_TOKEN, RecordingWebClient
from tests.slack.signed import SIGNING_SECRET, block_suggestion, signed, slash_command, view_submission


def test_the_app_verifies_its_token_once_and_acks_before_responding(slack_app, slack_client):
    assert len(slack_client.calls_to("auth.test")) == 1
    assert slack_app.process_before_response is True


def test_an_empty_signing_secret_is_refused(ctx, slack_client):
    with pytest.raises(ValueError):
        build_slack_app(ctx, client=slack_client, signing_secret="")


def test_a_client_without_a_token_is_refused(ctx):
    with pytest.raises(BoltError):
        build_slack_app(ctx, client=RecordingWebClient(token=None), signing_secret=SIGNING_SECRET)


@pytest.mark.parametrize(
    "request_factory",
    [
        pytest.param(lambda body: signed(body, sign_body=body.replace("UAGENT1", "USENIOR1")), id="tampered body"),
        pytest.param(lambda body: signed(body, secret="not-the-secret"), id="wrong secret"),
        pytest.param(lambda body: signed(body, timestamp=int(time.time()) - 301), id="stale timestamp"),
        pytest.param(lambda body: signed(body, timestamp=int(time.time()) + 301), id="future timestamp"),
    ],
)
def test_unverifiable_requests_get_401_and_change_nothing(slack_app, slack_client, session_factory, tmp_path, request_factory):
    load_directory(session_factory, tmp_path)
    before = len(audit_events(session_factory))
    calls_before = len(slack_client.calls)
    for body in (slash_command("acme"), view_submission({}, callback_id="impersonate_request")):
        response = slack_app.dispatch(request_factory(body))
        assert response.status == 401
    assert len(slack_client.calls) == calls_before
    assert len(audit_events(session_factory)) == before


def test_missing_signature_headers_get_401(slack_app):
    from slack_bolt.request import BoltRequest

    response = slack_app.dispatch(BoltRequest(body=slash_command(""), headers={"content-type": ["application/x-www-form-urlencoded"]}))
    assert response.status == 401


def test_request_log_names_the_route_but_no_secrets(send, slack_client, caplog):
    with caplog.at_level(logging.DEBUG):
        send(slash_command("<!channel> secret text"))
    assert "slack slash_command /impersonate user=UAGENT1 team=T1" in caplog.text
    for secret in (BOT_TOKEN, "trigger-secret", "secret-response-url", "legacy-verification-token", "secret text", SIGNING_SECRET):
        assert secret not in caplog.text


def test_the_granted_link_never_reaches_the_logs(send, slack_client, session_factory, tmp_path, caplog):
    load_directory(session_factory, tmp_path)
    values = {
        "account": {"account_select": {"type": "external_select", "selected_option": {"value": "acme"}}},
        "user": {"user_select": {"type": "external_select", "selected_option": {"value": "u-bob"}}},
        "reason": {"reason_input": {"type": "plain_text_input", "value": "Customer cannot open invoices"}},
        "ticket": {"ticket_input": {"type": "plain_text_input", "value": "SUP-1"}},
        "duration": {"duration_select": {"type": "static_select", "selected_option": {"value": "30"}}},
        "scope": {"scope_choice": {"type": "radio_buttons", "selected_option": {"value": "read_only"}}},
    }
    with caplog.at_level(logging.DEBUG):
        send(view_submission(values, callback_id="impersonate_request"))
    (posted,) = [c for c in slack_client.calls_to("chat.postMessage") if c["channel"] == "UAGENT1"]
    assert "/l/" in str(posted["blocks"])
    assert "/l/" not in caplog.text and BOT_TOKEN not in caplog.text
    assert "Customer cannot open invoices" not in caplog.text


def test_slack_sdk_wire_logging_is_kept_above_debug(slack_app, slack_client):
    # slack_sdk would log whole request bodies (with the link) if its logger's own level were DEBUG
    assert slack_client.logger.level >= logging.INFO


def test_a_slack_failure_after_the_ack_keeps_the_ack_and_logs_the_error_code(send, slack_client, caplog):
    slack_client.fail("views.open", "expired_trigger_id")
    with caplog.at_level(logging.INFO):
        response = send(slash_command(""))
    # Slack gets what the listener acknowledged, not a 500; the failure is logged by its code
    assert response.status == 200 and response.body == ""
    assert "slack slash_command /impersonate: Slack API call failed: expired_trigger_id" in caplog.text
    assert BOT_TOKEN not in caplog.text and "trigger-secret" not in caplog.text


def test_an_exception_before_ack_answers_500(ctx, slack_client, monkeypatch, caplog):
    from bot.domain import requests

    app = build_slack_app(ctx, client=slack_client, signing_secret=SIGNING_SECRET)

    def broken(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(requests, "account_choices", broken)
    with caplog.at_level(logging.ERROR):
        response = app.dispatch(signed(block_suggestion("account_select", "ac", block_id="account")))
    assert response.status == 500
    assert "slack block_suggestion account_select failed: RuntimeError" in caplog.text


def test_describe_request_keeps_only_routing_facts():
    facts = describe_request(
        {
            "type": "block_actions",
            "token": "legacy-verification-token",
            "response_url": "https://hooks.slack.invalid/secret",
            "user": {"id": "UAGENT1"},
            "team": {"id": "T1"},
            "actions": [{"action_id": "end_session", "value": "sid"}],
        }
    )
    assert facts == {"kind": "block_actions", "route": "end_session", "user": "UAGENT1", "team": "T1"}


def test_describe_request_routes_shortcuts_on_their_callback_id_without_the_message():
    facts = describe_request(
        {
            "type": "message_action",
            "callback_id": "request_impersonation_from_message",
            "trigger_id": "1.2.secret",
            "message": {"text": "SUP-1 customer's private text"},
            "user": {"id": "UAGENT1"},
            "team": {"id": "T1"},
        }
    )
    assert facts == {"kind": "message_action", "route": "request_impersonation_from_message", "user": "UAGENT1", "team": "T1"}
