"""manifest.yaml: valid against Slack's manifest schema v1, declares both
slash commands, interactivity and the options-load URL, and grants a bot scope for every Web API
method the code calls — and no scope that nothing needs."""
from __future__ import annotations

import ast
import inspect
import json
import textwrap
from collections import defaultdict
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator, validators
from slack_sdk import WebClient

from bot.slack.ids import ShortcutId
from tests.fakes import slack_api
from tests.fakes.slack_api import METHODS, FakeSlack, manifest_bot_scopes

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "manifest.yaml"
#: the same app for Socket Mode (SLACK_APP_TOKEN): no request URLs, socket_mode_enabled
SOCKET_MODE_MANIFEST = REPO_ROOT / "manifest.socket-mode.yaml"
BOT_SOURCES = REPO_ROOT / "bot"
EVENTS_PATH = "/slack/events"  # Bolt's default endpoint, where web/ mounts the Bolt adapter


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


# --- the schema -----------------------------------------------------------------------------------


def _slack_schema_validator(schema: dict):
    """Draft-07, plus the schema's own `regex` keyword (Slack's spelling of `pattern`, which
    plain Draft-07 would silently ignore, e.g. for `background_color`)."""
    extended = validators.extend(
        Draft7Validator, {"regex": lambda v, regex, inst, s: Draft7Validator.VALIDATORS["pattern"](v, regex, inst, s)}
    )
    return extended(schema)


@pytest.mark.parametrize("path", [MANIFEST, SOCKET_MODE_MANIFEST], ids=lambda p: p.name)
def test_manifest_validates_against_slack_schema_v1(reference_dir, path):
    schema = json.loads((reference_dir / "manifest.schema.1.0.0.json").read_text())
    Draft7Validator.check_schema(schema)
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = sorted(_slack_schema_validator(schema).iter_errors(manifest), key=lambda e: list(e.path))
    assert [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors] == []


def test_schema_check_catches_a_broken_manifest(reference_dir, manifest):
    """The validation above can fail: a misspelt key and a bad colour are both caught."""
    schema = json.loads((reference_dir / "manifest.schema.1.0.0.json").read_text())
    broken = json.loads(json.dumps(manifest))
    broken["settings"]["interactivity"]["is_enabeld"] = True
    broken["display_information"]["background_color"] = "blue!!"
    messages = [e.message for e in _slack_schema_validator(schema).iter_errors(broken)]
    assert any("is_enabeld" in m for m in messages) and any("blue!!" in m for m in messages)


def test_manifest_is_schema_version_1(manifest):
    assert manifest["_metadata"]["major_version"] == 1
    assert manifest["display_information"]["name"] == "Impersonation Bot"
    assert manifest["features"]["bot_user"]["display_name"]


# --- commands, interactivity, settings -----------------------------------------------------------------


def _commands(manifest) -> dict[str, dict]:
    return {c["command"]: c for c in manifest["features"]["slash_commands"]}


def test_both_slash_commands_are_declared(manifest):
    commands = _commands(manifest)
    assert set(commands) == {"/impersonate", "/impersonation-log"}
    assert commands["/impersonate"]["usage_hint"] == "[account]"
    assert commands["/impersonation-log"]["usage_hint"].startswith("account:X [agent:@user] [since:90d]")
    # /impersonate takes a plain account id; /impersonation-log names agents, which Slack
    # only sends as trustworthy <@U…|name> ids when should_escape is true.
    assert commands["/impersonate"]["should_escape"] is False
    assert commands["/impersonation-log"]["should_escape"] is True
    for command in commands.values():
        assert urlsplit(command["url"]).path == EVENTS_PATH


def test_interactivity_and_options_load_url(manifest):
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert urlsplit(interactivity["request_url"]).path == EVENTS_PATH
    # the options-load URL: Slack asks it for external_select options (account typeahead)
    assert urlsplit(interactivity["message_menu_options_url"]).path == EVENTS_PATH


def test_every_url_is_https_on_one_placeholder_host(manifest):
    urls = [c["url"] for c in manifest["features"]["slash_commands"]]
    urls += [manifest["settings"]["interactivity"][k] for k in ("request_url", "message_menu_options_url")]
    urls.append(manifest["settings"]["event_subscriptions"]["request_url"])
    assert {urlsplit(u).scheme for u in urls} == {"https"}
    assert {urlsplit(u).netloc for u in urls} == {"impersonation.example.com"}
    assert "replace the host" in MANIFEST.read_text(encoding="utf-8")  # the comment says what to change


def test_settings_for_an_http_app_with_one_workspace(manifest):
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    # agents and approvers are reached by DM
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True


def test_the_socket_mode_manifest_is_this_one_without_request_urls(manifest):
    """Kept in step with manifest.yaml: the same app, commands and scopes; only where Slack
    sends requests differs."""
    socket_mode = yaml.safe_load(SOCKET_MODE_MANIFEST.read_text(encoding="utf-8"))
    expected = json.loads(json.dumps(manifest))
    for command in expected["features"]["slash_commands"]:
        del command["url"]
    for key in ("request_url", "message_menu_options_url"):
        del expected["settings"]["interactivity"][key]
    del expected["settings"]["event_subscriptions"]["request_url"]
    expected["settings"]["socket_mode_enabled"] = True
    assert socket_mode == expected
    assert "SLACK_APP_TOKEN" in SOCKET_MODE_MANIFEST.read_text(encoding="utf-8")  # the comment says what to set


# --- scopes against the code ------------------------------------------------------------------------------


@cache
def web_client_api_methods() -> dict[str, frozenset[str]]:
    """slack_sdk WebClient method name → the Web API methods it calls, read from slack_sdk's own
    source: `self.api_call("x.y", …)` directly, or through other WebClient methods it calls
    (files_upload_v2 → files.getUploadURLExternal + files.completeUploadExternal)."""
    direct: dict[str, set[str]] = defaultdict(set)
    delegates: dict[str, set[str]] = defaultdict(set)
    for name, function in inspect.getmembers(WebClient, inspect.isfunction):
        if name.startswith("_") or name == "api_call":
            continue
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function)))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"):
                continue
            if node.func.attr == "api_call":
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    direct[name].add(node.args[0].value)
            else:
                delegates[name].add(node.func.attr)

    def resolve(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        found = set(direct.get(name, ()))
        for other in delegates.get(name, ()):
            if other not in seen:
                found |= resolve(other, seen | {name})
        return found

    names = set(direct) | set(delegates)
    return {name: frozenset(resolve(name)) for name in names if resolve(name)}


# Bolt's `say(...)` posts with chat.postMessage (slack_bolt/context/say/say.py)
BOLT_HELPERS = {"say": frozenset({"chat.postMessage"})}


def api_methods_called_in(source: str, filename: str = "<source>") -> dict[str, set[str]]:
    """Web API method → "file:line" places that call it: `<anything>.<WebClient method>(…)`,
    `<anything>.api_call("x.y", …)` and Bolt's `say(…)`. The receiver's name is not trusted
    (client, self._client, app.client, …): any call of a WebClient method name counts."""
    mapping = web_client_api_methods()
    found: dict[str, set[str]] = defaultdict(set)
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        place = f"{filename}:{node.lineno}"
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "api_call":
            first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "api_method"), None)
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found[first.value].add(place)
        elif isinstance(func, ast.Attribute) and func.attr in mapping:
            for method in mapping[func.attr]:
                found[method].add(place)
        elif isinstance(func, ast.Name) and func.id in BOLT_HELPERS:
            for method in BOLT_HELPERS[func.id]:
                found[method].add(place)
    return found


def api_methods_called_by_bot() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(BOT_SOURCES.rglob("*.py")):
        for method, places in api_methods_called_in(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT))).items():
            found[method] |= places
    return found


def test_web_client_map_is_read_from_slack_sdk():
    mapping = web_client_api_methods()
    assert mapping["chat_postMessage"] == {"chat.postMessage"}
    assert mapping["views_open"] == {"views.open"}
    assert mapping["usergroups_users_list"] == {"usergroups.users.list"}
    assert mapping["files_upload_v2"] == {"files.getUploadURLExternal", "files.completeUploadExternal"}
    assert len(mapping) > 200  # the whole client, not a hand-picked list


def test_scanner_finds_every_form_of_call():
    source = textwrap.dedent(
        """
        def listener(ack, client, say, context):
            client.views_open(trigger_id="t", view={})
            context.client.chat_update(channel="D1", ts="1", text="x")
            self._client.api_call("usergroups.list")
            app.client.api_call(api_method="users.info", params={})
            say("hello")
            client.files_upload_v2(content="x", filename="a.csv")
            ledger.as_details()
        """
    )
    assert set(api_methods_called_in(source)) == {
        "views.open", "chat.update", "usergroups.list", "users.info", "chat.postMessage",
        "files.getUploadURLExternal", "files.completeUploadExternal",
    }


def test_every_method_the_code_calls_is_in_the_fake_and_granted(manifest):
    granted = set(manifest["oauth_config"]["scopes"]["bot"])
    called = api_methods_called_by_bot()
    unknown = {m: sorted(p) for m, p in called.items() if m not in METHODS}
    assert unknown == {}, "methods the fake Slack does not model (add them to tests/fakes/slack_api.py METHODS)"
    missing = {m: METHODS[m].scope for m in called if METHODS[m].scope and METHODS[m].scope not in granted}
    assert missing == {}, "manifest.yaml lacks the bot scope these calls need"


def test_every_method_the_code_calls_is_granted_per_slack_reference(reference_dir, manifest):
    granted = set(manifest["oauth_config"]["scopes"]["bot"])
    docs = reference_dir / "slack-api-ref" / "docs.slack.dev" / "methods"
    for method in api_methods_called_by_bot():
        bot_scopes = set(json.loads((docs / f"{method}.json").read_text())["scope"].get("bot", []))
        if bot_scopes:  # Slack accepts any one of the listed scopes
            assert bot_scopes & granted, f"{method} needs one of {sorted(bot_scopes)}"


def test_manifest_requests_no_scope_that_nothing_needs(manifest):
    granted = manifest["oauth_config"]["scopes"]["bot"]
    assert len(granted) == len(set(granted))
    # bot-token methods only: an app-level token's scope (connections:write) is not a bot scope
    needed = {spec.scope for spec in METHODS.values() if spec.scope and spec.token == "bot"}
    needed |= {scope for spec in METHODS.values() for scope in spec.optional_scopes}
    if manifest["features"].get("slash_commands"):
        needed.add("commands")  # Slack requires it for an app with slash commands
    assert set(granted) <= needed
    assert set(granted) == {"commands", "chat:write", "im:write", "users:read", "users:read.email",
                            "usergroups:read", "files:write"}


# --- one source of truth for the fake's token --------------------------------------------------------


def test_fake_slack_token_scopes_come_from_this_manifest(manifest):
    assert slack_api.MANIFEST_PATH == MANIFEST
    assert FakeSlack().scopes == frozenset(manifest["oauth_config"]["scopes"]["bot"])


def test_fake_slack_reads_scopes_from_the_file_not_a_copy(tmp_path, manifest):
    other = json.loads(json.dumps(manifest))
    other["oauth_config"]["scopes"]["bot"] = ["commands"]
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(other))
    assert manifest_bot_scopes(path) == {"commands"}


def test_sign_in_with_slack_is_declared_with_its_return_address(manifest):
    """Sign in with Slack (policy links.require_slack_sign_in) needs the `openid` user scope
    and the bot's return address as a Redirect URL: Slack refuses any other redirect_uri. Only
    `openid`: the id_token's Slack ids are all the check compares."""
    from bot.web.slack_sign_in import CALLBACK_PATH, SCOPE

    assert manifest["oauth_config"]["scopes"]["user"] == [SCOPE]
    (redirect,) = manifest["oauth_config"]["redirect_urls"]
    commands_host = urlsplit(manifest["features"]["slash_commands"][0]["url"]).netloc
    assert urlsplit(redirect).scheme == "https" and urlsplit(redirect).netloc == commands_host
    assert urlsplit(redirect).path == CALLBACK_PATH


def test_the_shortcuts_are_declared_with_the_ids_the_app_routes_on(manifest):
    shortcuts = {s["callback_id"]: s for s in manifest["features"]["shortcuts"]}
    assert set(shortcuts) == {member.value for member in ShortcutId}
    assert shortcuts[ShortcutId.REQUEST.value]["type"] == "global"
    assert shortcuts[ShortcutId.REQUEST_FROM_MESSAGE.value]["type"] == "message"
    assert "commands" in manifest["oauth_config"]["scopes"]["bot"]  # Slack: shortcuts need it


def test_the_home_tab_and_its_event_are_declared(manifest):
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]  # the one event the app listens to
    assert urlsplit(events["request_url"]).path == EVENTS_PATH
