"""The local workspace against the real bot (bot.wiring.build_container) over real HTTP: what
a persona types or clicks reaches the bot signed as Slack signs it, the bot's answers and Web
API calls come back as the page shows them, escaped, to the right persona only."""
from __future__ import annotations

import threading
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from werkzeug.exceptions import NotFound
from werkzeug.serving import make_server

from bot import wiring
from bot.config import load_settings
from bot.local import demo, reference
from bot.local.webapi import SlackStandIn, StandInUser
from bot.local.workspace import HOME, Workspace
from bot.slack.ids import ActionId
from tests.e2e.conftest import wait_for
from tests.slack.listeners.flow import request_state

ANA, MIA, SAM = (demo.PERSONAS[0], demo.PERSONAS[2], demo.PERSONAS[3])
SECRET = "local-test-signing-secret-0123456789"


class _Late:
    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def _serve(app) -> tuple[Any, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _workspace(standin: SlackStandIn, bot_url: str, secret: str = SECRET) -> Workspace:
    return Workspace(standin, demo.PERSONAS, signing_secret=secret, bot_events_url=f"{bot_url}/slack/events",
                     channels={demo.SECURITY_CHANNEL: demo.SECURITY_CHANNEL_NAME})


@pytest.fixture
def local(db_url, tmp_path, session_factory):
    demo.load_once(session_factory)
    standin = SlackStandIn(users=[StandInUser(p.slack_id, email=p.email, tz=p.tz, real_name=p.name) for p in demo.PERSONAS],
                           channels=[demo.SECURITY_CHANNEL], reference=reference.find())
    bot = _Late()
    bot_server, bot_url = _serve(bot)
    workspace = _workspace(standin, bot_url)
    ws_server, ws_url = _serve(workspace)
    workspace.bind(ws_url)
    settings = load_settings({
        "SLACK_BOT_TOKEN": standin.bot_token, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": f"{ws_url}/api/",
        "DATABASE_URL": db_url, "IMPERSONATION_POLICY": str(demo.POLICY_PATH),
        "SIGNING_KEY_FILE": str(tmp_path / "key.pem"), "PUBLIC_BASE_URL": "http://localhost:3000",
        "PRODUCT_LAUNCH_URL": "http://127.0.0.1:3002/impersonation/launch",
    }, read_dotenv=False)
    container = wiring.build_container(settings)
    bot.app = container.web_app
    try:
        yield workspace, container, bot_url
    finally:
        for server in (bot_server, ws_server):
            server.shutdown()
        container.close()


def _dm(workspace: Workspace, persona) -> dict[str, Any]:
    return workspace.state(persona, workspace.standin.dm_channel(persona.slack_id))


def _modal(workspace: Workspace, persona) -> dict[str, Any]:
    return wait_for(lambda: _dm(workspace, persona)["modal"], timeout=10)


def test_a_command_reaches_the_bot_signed_and_its_modal_opens_for_that_persona_only(local):
    workspace, _container, _url = local
    assert workspace.run_command(ANA, "", "/impersonate") == {"ok": True, "answer": {}}
    modal = _modal(workspace, ANA)
    assert "Impersonate a user" in modal["html"] and 'data-block-id="account"' in modal["html"]
    assert _dm(workspace, MIA)["modal"] is None


def test_a_request_signed_with_another_secret_is_refused_by_the_bot(local):
    workspace, _container, bot_url = local
    forger = _workspace(workspace.standin, bot_url, secret="not-the-signing-secret")
    assert forger.run_command(ANA, "", "/impersonate") == {"ok": False, "error": "the bot answered HTTP 401"}


def test_only_the_bots_commands_are_sent(local):
    workspace, _container, _url = local
    before = len(workspace.standin.calls)
    answer = workspace.run_command(ANA, "", "hello everyone")
    assert answer["ok"] is False and "/impersonate" in answer["error"]
    assert len(workspace.standin.calls) == before and workspace.standin.ephemeral_messages == []


def test_an_external_select_is_fed_by_the_bots_options(local):
    workspace, _container, _url = local
    workspace.run_command(ANA, "", "/impersonate")
    view_id = _modal(workspace, ANA)["id"]
    accounts = workspace.options(ANA, {"view_id": view_id, "action_id": ActionId.ACCOUNT_SELECT.value, "block_id": "account", "value": "glo"})
    assert accounts == {"ok": True, "options": [{"text": {"type": "plain_text", "text": "Globex (globex)"}, "value": "globex"}]}
    state = request_state(account="globex", user=None)
    users = workspace.options(ANA, {"view_id": view_id, "action_id": ActionId.USER_SELECT.value, "block_id": "user", "value": "",
                                    "values": state})
    assert [o["value"] for o in users["options"]] == ["u-carol"]


def test_a_submission_the_bot_refuses_shows_its_errors_and_keeps_the_modal(local):
    workspace, _container, _url = local
    workspace.run_command(ANA, "", "/impersonate")
    view_id = _modal(workspace, ANA)["id"]
    answer = workspace.submit(ANA, view_id, request_state(reason="short"))
    assert answer["ok"] is True and set(answer["errors"]) == {"reason"}
    assert _dm(workspace, ANA)["modal"]["errors"] == answer["errors"]


def test_a_granted_request_closes_the_modal_and_the_dm_shows_the_link_with_user_text_escaped(local):
    workspace, container, _url = local
    workspace.run_command(ANA, "", "/impersonate")
    view_id = _modal(workspace, ANA)["id"]
    reason = "<script>alert(1)</script> invoices"
    assert workspace.submit(ANA, view_id, request_state(account="acme", user="u-bob", reason=reason)) == {"ok": True, "errors": {}}
    assert container.wait_for_deliveries(timeout=30)
    dm = wait_for(lambda: (s := _dm(workspace, ANA)) and "/l/" in s["messages"] and s, timeout=10)
    assert dm["modal"] is None
    assert "<script" not in dm["messages"] and "&lt;script&gt;alert(1)&lt;/script&gt;" in dm["messages"]
    assert 'href="http://localhost:3000/l/' in dm["messages"]
    assert "/l/" not in _dm(workspace, MIA)["messages"]  # someone else's DM is not shown
    assert dm["problems"] == []


def test_the_log_answers_one_persona_and_its_buttons_answer_through_a_response_url(local):
    workspace, container, _url = local
    assert workspace.run_command(SAM, demo.SECURITY_CHANNEL, "/impersonation-log account:acme")["ok"]
    shown = workspace.state(SAM, demo.SECURITY_CHANNEL)
    assert "ephemeral" in shown["messages"] and "Only visible to you" in shown["messages"]
    assert "ephemeral" not in workspace.state(ANA, demo.SECURITY_CHANNEL)["messages"]
    (answer,) = workspace.standin.ephemeral_messages
    export = next(e for b in answer.blocks if b.get("type") == "actions" for e in b["elements"]
                  if e["action_id"] == ActionId.LOG_EXPORT_CSV.value)
    clicked = workspace.click(SAM, {"channel": answer.channel, "ts": answer.ts, "action_id": export["action_id"],
                                    "block_id": next(b["block_id"] for b in answer.blocks if export in b.get("elements", [])),
                                    "value": export["value"]})
    assert clicked["ok"] is True
    wait_for(lambda: len(workspace.standin.ephemeral_messages) == 2, timeout=10)
    assert workspace.response_urls.violations == []
    assert all(m.ephemeral_user == SAM.slack_id for m in workspace.standin.ephemeral_messages)


def test_calls_slack_would_refuse_are_shown(local):
    workspace, _container, _url = local
    with pytest.raises(SlackApiError):
        WebClient(token=workspace.standin.bot_token, base_url=workspace.standin.url).api_call("chat.postMessage", json={"channel": "C1"})
    assert any("chat.postMessage" in p for p in _dm(workspace, ANA)["problems"])


def test_a_click_on_someone_elses_message_is_refused(local):
    workspace, _container, _url = local
    posted = WebClient(token=workspace.standin.bot_token, base_url=workspace.standin.url).chat_postMessage(
        channel=ANA.slack_id, text="for Ana", blocks=[{"type": "actions", "block_id": "b", "elements": [
            {"type": "button", "action_id": ActionId.END_SESSION.value, "value": "s1", "text": {"type": "plain_text", "text": "End"}}]}])
    before = len(workspace.standin.calls)
    answer = workspace.click(MIA, {"channel": posted["channel"], "ts": posted["ts"], "action_id": ActionId.END_SESSION.value,
                                   "block_id": "b", "value": "s1"})
    assert answer == {"ok": False, "error": "that message is in someone else's conversation"}
    assert len(workspace.standin.calls) == before  # nothing was sent to the bot
    shown = f'data-ts="{posted["ts"]}"'
    assert shown not in _dm(workspace, MIA)["messages"] and shown in _dm(workspace, ANA)["messages"]


def test_the_page_runs_only_its_own_script(local):
    workspace, _container, _url = local
    page = workspace.app.test_client().get(f"/?as={SAM.slack_id}")
    assert page.status_code == 200 and "Sam Security" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script src=" in page.text and "<script>" not in page.text  # no inline script


def test_messages_outlive_a_restart_so_the_bots_later_edits_find_them(local, tmp_path):
    workspace, _container, _url = local
    client = WebClient(token=workspace.standin.bot_token, base_url=workspace.standin.url)
    posted = client.chat_postMessage(channel=demo.SECURITY_CHANNEL, text="feed one")
    client.files_upload_v2(content="a,b\n", filename="review.csv", title="Review", channel=demo.SECURITY_CHANNEL,
                           thread_ts=posted["ts"])
    saved = tmp_path / "workspace.json"
    workspace.save(saved)

    again = SlackStandIn(users=list(workspace.standin.users.values()), channels=[demo.SECURITY_CHANNEL])
    restarted = _workspace(again, "http://127.0.0.1:9")
    with again:
        restarted.bind(again.base_url)
        restarted.keep_in(saved)
        shown = restarted.state(SAM, demo.SECURITY_CHANNEL)["messages"]
        assert "feed one" in shown and "review.csv" in shown
        client = WebClient(token=again.bot_token, base_url=again.url)
        client.chat_update(channel=posted["channel"], ts=posted["ts"], text="feed, ended")
        newer = client.chat_postMessage(channel=demo.SECURITY_CHANNEL, text="next")
        assert newer["ts"] > posted["ts"]
        again.assert_no_violations()
        assert "(edited)" in restarted.state(SAM, demo.SECURITY_CHANNEL)["messages"]


def test_opening_the_home_tab_sends_app_home_opened_and_shows_what_the_bot_publishes(local):
    workspace, container, _url = local
    assert workspace.state(SAM, HOME)["messages"].startswith('<p class="empty">')
    assert workspace.open_home(SAM) == {"ok": True, "answer": {}}
    assert container.wait_for_deliveries(timeout=30)
    home = wait_for(lambda: SAM.slack_id in workspace.standin.home_views and workspace.state(SAM, HOME), timeout=10)
    view_id = workspace.standin.home_views[SAM.slack_id]["id"]
    assert f'<div class="home-view" data-view-id="{view_id}">' in home["messages"]
    assert home["channel_name"].endswith("Home") and home["modal"] is None and home["problems"] == []
    # the Home is the persona's own: someone else sees theirs, and cannot act in Sam's
    assert 'class="home-view"' not in workspace.state(ANA, HOME)["messages"]
    with pytest.raises(NotFound):
        workspace.click(ANA, {"view_id": view_id, "action_id": "x", "block_id": "b"})
