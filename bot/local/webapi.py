"""A stand-in for Slack's Web API, served over real HTTP, shared by the test suite
(tests/fakes/slack_api.py) and the local workspace (`serve` without Slack credentials,
bot/local/workspace.py): one implementation of what Slack answers and what it refuses.

The app's `WebClient(base_url=standin.url)` (SLACK_API_URL) calls it. It answers the Web API
methods this app uses the way Slack does, and it checks every call against Slack's contract:

- the method exists (`unknown_method`);
- the token is the configured bot token, sent as `Authorization: Bearer …` or a `token`
  form field (`not_authed` / `invalid_auth`); Slack ignores a token inside a JSON body;
  methods that take an app-level token (apps.connections.open) want the app token instead,
  and refuse the bot token (`not_allowed_token_type`);
- the token carries the method's bot scope (`missing_scope` with `needed`/`provided`), where
  the token's scopes are the bot scopes of manifest.yaml (one source of truth), or the
  app-level scope for app-token methods;
- required arguments and "one of these" argument groups are present (the error Slack's
  reference lists for that method);
- form-encoded, multipart and JSON bodies are read as Slack reads them (JSON bodies only for
  the methods that accept them; JSON-valued arguments arrive as strings in forms);
- `blocks` and `view` respect Block Kit's limits (bot/slack/limits.py);
- a `trigger_id` is one issued for an interaction, used once, within 3 s;
- with Slack's reference data at hand (`../shared/slack-reference`, bot/local/reference.py),
  every argument sent is one the reference documents for the method; without it that check
  is left out and the rest still apply.

Every breach of the contract is also appended to `violations`, so a test can end with
`assert standin.violations == []` and the local workspace can show them; data misses that a
correct app must handle (an unknown user for users.info, an unknown user group) are answered
like Slack but are not violations.

The table of methods below (`METHODS`) is the project's own data. tests/fakes/test_slack_api.py
cross-checks it against the reference when that folder is present.
"""
from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from bot.local.reference import MethodNotInReference, SlackReference
from bot.slack import limits

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifest.yaml"

#: Slack: "trigger_id … expires in 3 seconds" (docs.slack.dev/interactivity/handling-user-interaction)
TRIGGER_TTL_SECONDS = 3.0
#: Slack: a modal's view stack holds at most 3 views (views.push "push_limit_reached")
VIEW_STACK_MAX = 3

# Block Kit limits that bot/slack/limits.py does not (yet) name, because no builder needs them
# to cut text. Sources: docs.slack.dev/reference/block-kit/blocks (actions: 25 elements),
# …/block-elements (overflow 2–5 options, radio buttons and checkboxes ≤ 10 options),
# …/composition-objects (option description ≤ 75, option group label ≤ 75, ≤ 100 groups),
# …/blocks#image (alt_text ≤ 2000, image_url ≤ 3000), views.open "view_too_large" (250 kB).
ACTIONS_ELEMENTS_MAX = 25
OVERFLOW_OPTIONS_MIN = 2
OVERFLOW_OPTIONS_MAX = 5
RADIO_CHECKBOX_OPTIONS_MAX = 10
OPTION_DESCRIPTION_MAX = 75
OPTION_GROUP_LABEL_MAX = 75
OPTION_GROUPS_MAX = 100
IMAGE_ALT_TEXT_MAX = 2000
IMAGE_URL_MAX = 3000
VIEW_JSON_BYTES_MAX = 250_000


# --------------------------------------------------------------------------------------------
# The method table (the project's own data)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """What Slack requires of one Web API method, as far as this app uses it."""

    name: str
    #: the scope Slack requires (on the token kind below), or None where any valid token will do
    scope: str | None
    #: arguments Slack marks required (the token excluded), each with the error Slack returns
    #: when it is missing
    required: Mapping[str, str] = field(default_factory=dict)
    #: argument groups of which at least one must be given, with the error when none is
    one_of: tuple[tuple[frozenset[str], str], ...] = ()
    #: arguments whose value is JSON (a JSON string when the body is form-encoded)
    json_args: frozenset[str] = frozenset()
    #: whether Slack reads a JSON request body for this method (others read forms only)
    accepts_json_body: bool = False
    #: every other error this fake can answer for the method (validation and data misses)
    errors: frozenset[str] = frozenset()
    #: scopes that are not required but change the answer, with what they unlock
    optional_scopes: Mapping[str, str] = field(default_factory=dict)
    #: the token kind Slack wants: "bot" (xoxb-) or "app" (an app-level xapp- token)
    token: str = "bot"

    @property
    def required_args(self) -> frozenset[str]:
        return frozenset(self.required)

    def all_errors(self) -> frozenset[str]:
        """Every method-specific error name this fake may return for the method."""
        return frozenset(self.required.values()) | {e for _, e in self.one_of} | self.errors


_MESSAGE_CONTENT = frozenset({"text", "blocks", "attachments", "markdown_text"})

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec(
            "views.open",
            scope=None,
            required={"view": "invalid_arguments"},
            one_of=((frozenset({"trigger_id", "interactivity_pointer"}), "invalid_arguments"),),
            json_args=frozenset({"view"}),
            accepts_json_body=True,
            errors=frozenset({"invalid_arguments", "invalid_trigger_id", "expired_trigger_id",
                              "exchanged_trigger_id", "view_too_large"}),
        ),
        MethodSpec(
            "views.push",
            scope=None,
            required={"view": "invalid_arguments"},
            one_of=((frozenset({"trigger_id", "interactivity_pointer"}), "invalid_arguments"),),
            json_args=frozenset({"view"}),
            accepts_json_body=True,
            errors=frozenset({"invalid_arguments", "invalid_trigger_id", "expired_trigger_id",
                              "exchanged_trigger_id", "view_too_large", "push_limit_reached"}),
        ),
        MethodSpec(
            "views.update",
            scope=None,
            required={"view": "invalid_arguments"},
            one_of=((frozenset({"view_id", "external_id"}), "not_found"),),
            json_args=frozenset({"view"}),
            accepts_json_body=True,
            errors=frozenset({"invalid_arguments", "not_found", "hash_conflict", "view_too_large"}),
        ),
        MethodSpec(
            # the Home tab: no trigger needed, no scope (docs.slack.dev "no_scope_required");
            # a view that fails validation gets invalid_arguments (in the reference's examples)
            "views.publish",
            scope=None,
            required={"user_id": "invalid_arguments", "view": "invalid_arguments"},
            json_args=frozenset({"view"}),
            accepts_json_body=True,
            errors=frozenset({"invalid_arguments", "view_too_large", "hash_conflict"}),
        ),
        MethodSpec(
            "chat.postMessage",
            scope="chat:write",
            required={"channel": "channel_not_found"},
            one_of=((_MESSAGE_CONTENT, "no_text"),),
            json_args=frozenset({"blocks", "attachments", "metadata"}),
            accepts_json_body=True,
            errors=frozenset({"channel_not_found", "invalid_blocks", "invalid_blocks_format",
                              "invalid_metadata_format", "markdown_text_conflict"}),
        ),
        MethodSpec(
            "chat.update",
            scope="chat:write",
            required={"channel": "channel_not_found", "ts": "message_not_found"},
            one_of=((_MESSAGE_CONTENT, "no_text"),),
            json_args=frozenset({"blocks", "attachments", "metadata"}),
            accepts_json_body=True,
            errors=frozenset({"channel_not_found", "message_not_found", "invalid_blocks",
                              "invalid_blocks_format", "invalid_metadata_format",
                              "markdown_text_conflict"}),
        ),
        MethodSpec(
            "chat.postEphemeral",
            scope="chat:write",
            required={"channel": "channel_not_found", "user": "user_not_in_channel"},
            one_of=((_MESSAGE_CONTENT, "no_text"),),
            json_args=frozenset({"blocks", "attachments", "metadata"}),
            accepts_json_body=True,
            errors=frozenset({"channel_not_found", "user_not_in_channel", "invalid_blocks",
                              "invalid_blocks_format", "markdown_text_conflict"}),
        ),
        MethodSpec(
            "chat.getPermalink",
            scope=None,
            required={"channel": "channel_not_found", "message_ts": "message_not_found"},
            errors=frozenset({"channel_not_found", "message_not_found"}),
        ),
        MethodSpec(
            "conversations.open",
            # im:write is the one of Slack's accepted scopes that covers a DM with one person
            scope="im:write",
            one_of=((frozenset({"channel", "users"}), "users_list_not_supplied"),),
            accepts_json_body=True,
            errors=frozenset({"user_not_found", "channel_not_found", "too_many_users"}),
        ),
        MethodSpec(
            "users.info",
            scope="users:read",
            required={"user": "user_not_found"},
            errors=frozenset({"user_not_found"}),
            optional_scopes={"users:read.email": "profile.email"},
        ),
        MethodSpec("usergroups.list", scope="usergroups:read"),
        MethodSpec(
            "usergroups.users.list",
            scope="usergroups:read",
            required={"usergroup": "no_such_subteam"},
            errors=frozenset({"no_such_subteam"}),
        ),
        MethodSpec("auth.test", scope=None, accepts_json_body=True),
        MethodSpec(
            # Socket Mode: a WebSocket URL for the app (bot/slack/socket_mode.py); the
            # method takes only an app-level token, with the connections:write scope
            "apps.connections.open",
            scope="connections:write",
            token="app",
            accepts_json_body=True,
            errors=frozenset({"not_allowed_token_type"}),
        ),
        MethodSpec(
            "files.getUploadURLExternal",
            scope="files:write",
            required={"length": "missing_argument", "filename": "missing_argument"},
            errors=frozenset({"missing_argument"}),
        ),
        MethodSpec(
            "files.completeUploadExternal",
            scope="files:write",
            required={"files": "invalid_form_data"},
            json_args=frozenset({"files", "blocks"}),
            accepts_json_body=True,
            errors=frozenset({"file_not_found", "channel_not_found", "invalid_blocks"}),
        ),
    ]
}

#: Errors any method may answer: Slack's generic errors (reference `_errors/common.json`, and
#: `invalid_auth`, documented with auth.test, the method whose whole job is the token check).
GENERIC_ERRORS = frozenset({
    "unknown_method", "not_authed", "invalid_auth", "missing_scope", "invalid_post_type",
    "missing_post_type", "invalid_form_data", "invalid_charset",
})


#: Scopes an app-level token can carry (docs.slack.dev/authentication/tokens, "App-level
#: tokens"); the reference data lists bot and user scopes only.
APP_LEVEL_SCOPES = frozenset({"connections:write", "authorizations:read", "app_configurations:write"})


def manifest_bot_scopes(path: Path = MANIFEST_PATH) -> frozenset[str]:
    """The bot scopes manifest.yaml grants: what an installed app's bot token carries."""
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    return frozenset(manifest["oauth_config"]["scopes"]["bot"])


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP call to a Web API method, as the fake understood it."""

    method: str
    #: arguments (form, query and JSON body merged; JSON-valued arguments decoded); no token
    args: dict[str, Any]
    #: the fake's clock when the call arrived
    time: float
    #: the answer: HTTP status and JSON body
    status: int
    response: dict[str, Any]
    #: True when the answer came from `fail_next`
    injected: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return self.response.get("error")

    def flag(self, name: str) -> bool | None:
        """A boolean argument as Slack reads it (JSON true/false, or "1"/"0"/"true"/"false"
        in a form — slack_sdk sends form booleans as "1"/"0"); None when absent."""
        if name not in self.args:
            return None
        return _as_bool(self.args[name])


@dataclass(frozen=True)
class Violation:
    """A call that broke Slack's contract: a bug in the app, whatever Slack would do next."""

    method: str
    error: str
    detail: str


@dataclass
class StandInUser:
    id: str
    email: str | None = None
    tz: str = "UTC"
    enterprise_user_id: str | None = None
    name: str | None = None
    real_name: str | None = None
    is_bot: bool = False
    deleted: bool = False


@dataclass
class Message:
    """A message the app posted; chat.update edits it in place and keeps the earlier versions."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict] | None
    args: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    #: for chat.postEphemeral: the one user who sees it
    ephemeral_user: str | None = None


@dataclass
class StandInFile:
    id: str
    filename: str
    length: int
    upload_url: str
    content: bytes | None = None
    title: str | None = None
    completed: bool = False
    channel_id: str | None = None
    initial_comment: str | None = None
    thread_ts: str | None = None


@dataclass
class _Trigger:
    issued_at: float
    #: the view the interaction came from (views.push stacks onto it)
    view_id: str | None
    #: who interacted: a view opened with the trigger is shown to that user
    user: str | None = None
    used: bool = False


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None
    #: only calls whose arguments include all of these (e.g. {"user": "U1"}); None: any call
    when: dict[str, str] | None = None

    def applies_to(self, args: dict[str, Any]) -> bool:
        return self.when is None or all(str(args.get(k)) == v for k, v in self.when.items())


class SlackError(Exception):
    """An `ok: false` answer. `violation` marks it as a breach of Slack's contract."""

    def __init__(self, error: str, *, violation: bool, detail: str = "", messages: list[str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.violation = violation
        self.detail = detail or error
        self.messages = messages or []
        self.extra = extra or {}


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() in {"1", "true", "yes"}


def _ts_digits(ts: str) -> str:
    return ts.replace(".", "")


# --------------------------------------------------------------------------------------------
# Block Kit checks
# --------------------------------------------------------------------------------------------

_BLOCK_TYPES = {"section", "divider", "image", "actions", "context", "input", "file", "header",
                "video", "rich_text", "markdown"}
_TEXT_INPUT_ELEMENTS = {"plain_text_input", "email_text_input", "url_text_input", "number_input",
                        "rich_text_input"}
_SELECTS_WITH_OPTIONS = {"static_select", "multi_static_select"}
_ELEMENT_TYPES = {
    "button", "checkboxes", "datepicker", "datetimepicker", "timepicker", "image", "overflow",
    "radio_buttons", "workflow_button", "file_input",
    "static_select", "external_select", "users_select", "conversations_select", "channels_select",
    "multi_static_select", "multi_external_select", "multi_users_select",
    "multi_conversations_select", "multi_channels_select",
} | _TEXT_INPUT_ELEMENTS


class _BlockKitChecker:
    """Collects Block Kit breaches as Slack words them: "[ERROR] … [json-pointer:/…]"."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def error(self, pointer: str, message: str) -> None:
        self.messages.append(f"[ERROR] {message} [json-pointer:{pointer}]")

    # composition objects ------------------------------------------------------------------
    def text(self, obj: Any, pointer: str, max_len: int, *, plain_only: bool = False) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
            self.error(pointer, "must be a text object of type plain_text or mrkdwn")
            return
        if plain_only and obj["type"] != "plain_text":
            self.error(f"{pointer}/type", "must be plain_text")
        value = obj.get("text")
        if not isinstance(value, str) or not value:
            self.error(f"{pointer}/text", "must be a non-empty string")
        elif len(value) > max_len:
            self.error(f"{pointer}/text", f"must be less than {max_len + 1} characters")

    def max_len(self, value: Any, pointer: str, max_len: int) -> None:
        if value is not None and (not isinstance(value, str) or len(value) > max_len):
            self.error(pointer, f"must be a string of less than {max_len + 1} characters")

    def confirm(self, obj: Any, pointer: str) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            self.error(pointer, "must be a confirmation object")
            return
        self.text(obj.get("title"), f"{pointer}/title", limits.CONFIRM_TITLE_MAX, plain_only=True)
        self.text(obj.get("text"), f"{pointer}/text", limits.CONFIRM_TEXT_MAX)
        self.text(obj.get("confirm"), f"{pointer}/confirm", limits.CONFIRM_BUTTON_MAX, plain_only=True)
        self.text(obj.get("deny"), f"{pointer}/deny", limits.CONFIRM_BUTTON_MAX, plain_only=True)

    def option(self, obj: Any, pointer: str) -> None:
        if not isinstance(obj, dict):
            self.error(pointer, "must be an option object")
            return
        self.text(obj.get("text"), f"{pointer}/text", limits.OPTION_TEXT_MAX)
        value = obj.get("value")
        if not isinstance(value, str) or not value:
            self.error(f"{pointer}/value", "must be a non-empty string")
        else:
            self.max_len(value, f"{pointer}/value", limits.OPTION_VALUE_MAX)
        if "description" in obj:
            self.text(obj["description"], f"{pointer}/description", OPTION_DESCRIPTION_MAX, plain_only=True)

    def options(self, options: Any, pointer: str, *, min_count: int = 1, max_count: int) -> list[dict]:
        if not isinstance(options, list) or not (min_count <= len(options) <= max_count):
            self.error(pointer, f"must be an array of {min_count} to {max_count} options")
            return []
        for i, option in enumerate(options):
            self.option(option, f"{pointer}/{i}")
        return [o for o in options if isinstance(o, dict)]

    # elements -------------------------------------------------------------------------------
    def element(self, element: Any, pointer: str, action_ids: set[str]) -> None:
        if not isinstance(element, dict):
            self.error(pointer, "must be an element object")
            return
        kind = element.get("type")
        if kind not in _ELEMENT_TYPES:
            self.error(f"{pointer}/type", f"unsupported element type {kind!r}")
            return
        if kind == "image":  # image elements (in context blocks) are not interactive
            self.max_len(element.get("alt_text"), f"{pointer}/alt_text", IMAGE_ALT_TEXT_MAX)
            return
        action_id = element.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str) or not action_id or len(action_id) > limits.ACTION_ID_MAX:
                self.error(f"{pointer}/action_id", f"must be 1 to {limits.ACTION_ID_MAX} characters")
            elif action_id in action_ids:
                # Block Kit: "action_id … should be unique among all other action_ids in the
                # containing block"
                self.error(f"{pointer}/action_id", f"duplicate action_id {action_id!r} in the block")
            else:
                action_ids.add(action_id)
        if "placeholder" in element:
            self.text(element["placeholder"], f"{pointer}/placeholder", limits.PLACEHOLDER_MAX, plain_only=True)
        self.confirm(element.get("confirm"), f"{pointer}/confirm")
        if kind == "button":
            self.text(element.get("text"), f"{pointer}/text", limits.BUTTON_TEXT_MAX, plain_only=True)
            self.max_len(element.get("value"), f"{pointer}/value", limits.BUTTON_VALUE_MAX)
            self.max_len(element.get("url"), f"{pointer}/url", limits.BUTTON_URL_MAX)
            if element.get("style") not in (None, "primary", "danger"):
                self.error(f"{pointer}/style", "must be primary or danger")
        elif kind in _SELECTS_WITH_OPTIONS:
            self.select_options(element, pointer)
        elif kind in ("external_select", "multi_external_select"):
            for key in ("initial_option",):
                if key in element:
                    self.option(element[key], f"{pointer}/{key}")
            if "min_query_length" in element and not isinstance(element["min_query_length"], int):
                self.error(f"{pointer}/min_query_length", "must be an integer")
        elif kind == "overflow":
            self.options(element.get("options"), f"{pointer}/options",
                         min_count=OVERFLOW_OPTIONS_MIN, max_count=OVERFLOW_OPTIONS_MAX)
        elif kind in ("radio_buttons", "checkboxes"):
            options = self.options(element.get("options"), f"{pointer}/options", max_count=RADIO_CHECKBOX_OPTIONS_MAX)
            self.initial_options_among(element, options, pointer)
        elif kind in _TEXT_INPUT_ELEMENTS:
            self.text_input(element, pointer)

    def select_options(self, element: dict, pointer: str) -> None:
        has_options, has_groups = "options" in element, "option_groups" in element
        if has_options == has_groups:
            self.error(pointer, "must have exactly one of options or option_groups")
            return
        if has_options:
            options = self.options(element["options"], f"{pointer}/options", max_count=limits.OPTIONS_MAX)
        else:
            groups = element["option_groups"]
            options = []
            if not isinstance(groups, list) or not (1 <= len(groups) <= OPTION_GROUPS_MAX):
                self.error(f"{pointer}/option_groups", f"must be an array of 1 to {OPTION_GROUPS_MAX} groups")
                return
            for i, group in enumerate(groups):
                gp = f"{pointer}/option_groups/{i}"
                if not isinstance(group, dict):
                    self.error(gp, "must be an option group object")
                    continue
                self.text(group.get("label"), f"{gp}/label", OPTION_GROUP_LABEL_MAX, plain_only=True)
                options += self.options(group.get("options"), f"{gp}/options", max_count=limits.OPTIONS_MAX)
        self.initial_options_among(element, options, pointer)

    def initial_options_among(self, element: dict, options: list[dict], pointer: str) -> None:
        """Slack refuses an initial option that is not exactly one of the element's options."""
        initial = []
        if "initial_option" in element:
            initial.append(("initial_option", element["initial_option"]))
        if isinstance(element.get("initial_options"), list):
            initial += [(f"initial_options/{i}", o) for i, o in enumerate(element["initial_options"])]
        for key, chosen in initial:
            if chosen not in options:
                self.error(f"{pointer}/{key}", "must exactly match one of the provided options")

    def text_input(self, element: dict, pointer: str) -> None:
        lo, hi = element.get("min_length"), element.get("max_length")
        for key, value in (("min_length", lo), ("max_length", hi)):
            if value is not None and (not isinstance(value, int) or not 0 <= value <= limits.PLAIN_TEXT_INPUT_MAX):
                self.error(f"{pointer}/{key}", f"must be an integer from 0 to {limits.PLAIN_TEXT_INPUT_MAX}")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            self.error(f"{pointer}/min_length", "must not exceed max_length")
        initial = element.get("initial_value")
        if isinstance(initial, str) and isinstance(hi, int) and len(initial) > hi:
            self.error(f"{pointer}/initial_value", "must not be longer than max_length")

    # blocks -----------------------------------------------------------------------------------
    def blocks(self, blocks: Any, pointer: str, *, max_blocks: int) -> bool:
        """Checks a blocks array; returns whether it contains an input block."""
        if not isinstance(blocks, list):
            self.error(pointer, "must be an array of blocks")
            return False
        if len(blocks) > max_blocks:
            self.error(pointer, f"must contain no more than {max_blocks} blocks")
        block_ids: set[str] = set()
        has_input = False
        for i, block in enumerate(blocks):
            has_input |= self.block(block, f"{pointer}/{i}", block_ids)
        return has_input

    def block(self, block: Any, pointer: str, block_ids: set[str]) -> bool:
        if not isinstance(block, dict):
            self.error(pointer, "must be a block object")
            return False
        kind = block.get("type")
        if kind not in _BLOCK_TYPES:
            self.error(f"{pointer}/type", f"unsupported block type {kind!r}")
            return False
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id or len(block_id) > limits.BLOCK_ID_MAX:
                self.error(f"{pointer}/block_id", f"must be 1 to {limits.BLOCK_ID_MAX} characters")
            elif block_id in block_ids:
                # Block Kit: "block_id … should be unique for each message or view"
                self.error(f"{pointer}/block_id", f"duplicate block_id {block_id!r}")
            else:
                block_ids.add(block_id)
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.error(pointer, "must have text or fields")
            if "text" in block:
                self.text(block["text"], f"{pointer}/text", limits.SECTION_TEXT_MAX)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= limits.SECTION_FIELDS_MAX:
                    self.error(f"{pointer}/fields", f"must be an array of 1 to {limits.SECTION_FIELDS_MAX} text objects")
                else:
                    for i, text in enumerate(fields):
                        self.text(text, f"{pointer}/fields/{i}", limits.SECTION_FIELD_TEXT_MAX)
            if "accessory" in block:
                self.element(block["accessory"], f"{pointer}/accessory", action_ids)
        elif kind == "header":
            self.text(block.get("text"), f"{pointer}/text", limits.HEADER_TEXT_MAX, plain_only=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= limits.CONTEXT_ELEMENTS_MAX:
                self.error(f"{pointer}/elements", f"must be an array of 1 to {limits.CONTEXT_ELEMENTS_MAX} elements")
            else:
                for i, element in enumerate(elements):
                    if isinstance(element, dict) and element.get("type") == "image":
                        self.element(element, f"{pointer}/elements/{i}", action_ids)
                    else:
                        self.text(element, f"{pointer}/elements/{i}", limits.SECTION_TEXT_MAX)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= ACTIONS_ELEMENTS_MAX:
                self.error(f"{pointer}/elements", f"must be an array of 1 to {ACTIONS_ELEMENTS_MAX} elements")
            else:
                for i, element in enumerate(elements):
                    self.element(element, f"{pointer}/elements/{i}", action_ids)
        elif kind == "input":
            self.text(block.get("label"), f"{pointer}/label", limits.INPUT_LABEL_MAX, plain_only=True)
            if "hint" in block:
                self.text(block["hint"], f"{pointer}/hint", limits.INPUT_HINT_MAX, plain_only=True)
            if "element" not in block:
                self.error(f"{pointer}/element", "is required")
            else:
                self.element(block["element"], f"{pointer}/element", action_ids)
            return True
        elif kind == "image":
            self.max_len(block.get("image_url"), f"{pointer}/image_url", IMAGE_URL_MAX)
            self.max_len(block.get("alt_text"), f"{pointer}/alt_text", IMAGE_ALT_TEXT_MAX)
        return False

    def view(self, view: Any, *, surface: str = "modal") -> None:
        """`surface`: "modal" (views.open/push/update) or "home" (views.publish: a Home tab,
        no title or buttons of its own, at most limits.HOME_BLOCKS_MAX blocks)."""
        pointer = "/view"
        if not isinstance(view, dict):
            self.error(pointer, "must be a view object")
            return
        if view.get("type") != surface:
            self.error(f"{pointer}/type", f"must be {surface}")
        max_blocks = limits.HOME_BLOCKS_MAX if surface == "home" else limits.MODAL_BLOCKS_MAX
        has_input = self.blocks(view.get("blocks"), f"{pointer}/blocks", max_blocks=max_blocks)
        if view.get("type") == "modal":
            self.text(view.get("title"), f"{pointer}/title", limits.MODAL_TITLE_MAX, plain_only=True)
            if "submit" in view:
                self.text(view["submit"], f"{pointer}/submit", limits.MODAL_SUBMIT_MAX, plain_only=True)
            elif has_input:
                # Block Kit: "submit … required when an input block is within the blocks array"
                self.error(f"{pointer}/submit", "is required when the view has an input block")
            if "close" in view:
                self.text(view["close"], f"{pointer}/close", limits.MODAL_CLOSE_MAX, plain_only=True)
        self.max_len(view.get("private_metadata"), f"{pointer}/private_metadata", limits.PRIVATE_METADATA_MAX)
        self.max_len(view.get("callback_id"), f"{pointer}/callback_id", limits.CALLBACK_ID_MAX)
        self.max_len(view.get("external_id"), f"{pointer}/external_id", limits.CALLBACK_ID_MAX)


def block_kit_errors(*, blocks: Any = None, view: Any = None, surface: str = "modal") -> list[str]:
    """Slack-style error messages for a message's `blocks` or a `view` (empty when valid);
    `surface`: the kind of view expected ("modal", or "home" for views.publish)."""
    checker = _BlockKitChecker()
    if view is not None:
        checker.view(view, surface=surface)
    if blocks is not None:
        checker.blocks(blocks, "/blocks", max_blocks=limits.MESSAGE_BLOCKS_MAX)
    return checker.messages


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class SlackStandIn:
    """The Web API stand-in. Use as a context manager, or call start() / stop()."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token",
        scopes: Iterable[str] | None = None,
        app_token: str = "xapp-1-A0FAKEAPP-1-fake-app-level-token",
        app_scopes: Iterable[str] = ("connections:write",),
        users: Iterable[StandInUser] = (),
        groups: Mapping[str, Iterable[str]] | None = None,
        channels: Iterable[str] = (),
        team_id: str = "T0FAKE",
        enterprise_id: str | None = None,
        bot_user_id: str = "U0FAKEBOT",
        bot_id: str = "B0FAKEBOT",
        app_id: str = "A0FAKEAPP",
        clock: Callable[[], float] | None = None,
        reference: SlackReference | None = None,
    ) -> None:
        self._lock = threading.RLock()
        #: held while the stand-in changes its state; readers of it (the local workspace) take it too
        self.lock = self._lock
        self.bot_token = bot_token
        self.scopes: frozenset[str] = frozenset(scopes) if scopes is not None else manifest_bot_scopes()
        self.app_token = app_token
        self.app_scopes: frozenset[str] = frozenset(app_scopes)
        self.team_id = team_id
        self.enterprise_id = enterprise_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        # time.monotonic is looked up at each call so freezegun's frozen clock applies to it
        self._clock = clock or (lambda: time.monotonic())
        #: Slack's reference data, where present: arguments are checked against it
        self.reference = reference
        self.users: dict[str, StandInUser] = {u.id: u for u in users}
        self.channels: set[str] = set(channels)
        self.usergroups: dict[str, dict[str, Any]] = {}
        for handle, members in (groups or {}).items():
            self.set_usergroup(handle, members)

        self.calls: list[Call] = []
        self.violations: list[Violation] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemeral_messages: list[Message] = []
        self.views: dict[str, dict[str, Any]] = {}
        #: each user's published Home tab (views.publish), by user id
        self.home_views: dict[str, dict[str, Any]] = {}
        self.view_owners: dict[str, tuple[str | None, int]] = {}
        self.files: dict[str, StandInFile] = {}
        self.uploads: list[tuple[str, bytes]] = []
        #: counts every answered call, so a watcher (the local workspace) sees that something changed
        self.version = 0

        self._triggers: dict[str, _Trigger] = {}
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._counter = itertools.count(1)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: the Socket Mode server (tests/fakes/slack_api.py starts one; nothing else needs it)
        self._socket_mode: Any = None
        self.base_url = ""

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> SlackStandIn:
        self._server = server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{server.server_port}"
        # a short poll interval makes stop() quick (serve_forever checks for shutdown per poll)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="slack-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        # After the Web API: a client still running then cannot fetch a fresh URL. The object
        # stays, so that a test can still read what it recorded.
        if self._socket_mode is not None:
            self._socket_mode.stop()

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Web API base URL for `WebClient(base_url=…)` / SLACK_API_URL."""
        if not self.base_url:
            raise RuntimeError("the Slack stand-in is not started")
        return f"{self.base_url}/api/"

    def socket_mode_url(self) -> str:
        """The WebSocket URL apps.connections.open hands out. The local workspace receives
        requests over HTTP only; the test suite's subclass serves Socket Mode."""
        raise SlackError("not_allowed_token_type", violation=True, detail="this stand-in serves HTTP requests only")

    # test set-up --------------------------------------------------------------------------------
    def add_user(self, user_id: str, **attrs: Any) -> StandInUser:
        with self._lock:
            user = StandInUser(id=user_id, **attrs)
            self.users[user_id] = user
            return user

    def add_channel(self, channel_id: str) -> None:
        """A channel the bot is a member of (it may post there)."""
        with self._lock:
            self.channels.add(channel_id)

    def set_usergroup(self, handle: str, members: Iterable[str], *, name: str | None = None) -> str:
        """Creates or replaces a user group; returns its id (S…)."""
        with self._lock:
            existing = next((g for g in self.usergroups.values() if g["handle"] == handle), None)
            group_id = existing["id"] if existing else f"S{len(self.usergroups) + 1:08d}"
            self.usergroups[group_id] = {"id": group_id, "handle": handle, "name": name or handle,
                                         "users": list(members)}
            return group_id

    def usergroup_id(self, handle: str) -> str:
        return next(g["id"] for g in self.usergroups.values() if g["handle"] == handle)

    def issue_trigger_id(self, *, view_id: str | None = None, user: str | None = None) -> str:
        """A trigger_id as Slack puts in a slash command or interaction payload: usable once,
        within TRIGGER_TTL_SECONDS of now (the stand-in's clock). `view_id`: the modal the
        interaction happened in (a block_actions / view_submission trigger), for views.push;
        `user`: who interacted (a modal opened with the trigger is theirs)."""
        with self._lock:
            trigger_id = f"{next(self._counter)}.{int(self._clock()) % 10**10}.{secrets.token_hex(16)}"
            self._triggers[trigger_id] = _Trigger(self._clock(), view_id, user)
            return trigger_id

    def fail_next(self, method: str, error: str = "fatal_error", *, status: int = 200,
                  retry_after: int | None = None, times: int = 1, when: dict[str, str] | None = None) -> None:
        """The next `times` calls to `method` answer `{"ok": false, "error": error}` with HTTP
        `status` (429 carries a Retry-After header, default 1 s). With `when`, only calls whose
        arguments include those values fail (e.g. `users.info` for one user). Contract checks
        still run and still record violations."""
        if method not in METHODS:
            raise ValueError(f"{method} is not in the fake's method table")
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            for _ in range(times):
                self._failures[method].append(_Failure(error, status, retry_after, when))

    # inspection ---------------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM with a user (what chat.postMessage answers for `channel=U…`)."""
        return "D" + user_id[1:]

    def messages_in(self, channel: str) -> list[Message]:
        with self._lock:
            return [m for (ch, _), m in self.messages.items() if ch == channel]

    def record_ephemeral(self, channel: str, user: str, *, text: str | None, blocks: list[dict] | None,
                         args: dict[str, Any]) -> Message:
        """An ephemeral message that reached the user another way than chat.postEphemeral
        (a command's or a click's HTTP answer, a response URL): the local workspace shows it."""
        with self._lock:
            message = Message(channel, self.new_ts(), text, blocks, dict(args), ephemeral_user=user)
            self.ephemeral_messages.append(message)
            self.version += 1
            return message

    def show_view(self, view: dict[str, Any], *, user: str, replacing: str | None = None,
                  pushed_onto: str | None = None) -> dict[str, Any]:
        """A view a modal submission's answer opens (response_action update or push), kept as
        views.update / views.push keep theirs."""
        with self._lock:
            self.version += 1
            if replacing is not None:
                current = self.views[replacing]
                return self._store_view(view, view_id=replacing, root_view_id=current["root_view_id"],
                                        previous_view_id=current["previous_view_id"])
            top = self.views[pushed_onto] if pushed_onto else None
            return self._store_view(view, user=user, root_view_id=top["root_view_id"] if top else None,
                                    previous_view_id=top["id"] if top else None)

    def snapshot(self) -> dict[str, Any]:
        """What a workspace shows, as JSON-able data: messages (with their edits), ephemeral
        messages and uploaded files. Modals, triggers and calls are not kept."""
        with self._lock:
            return {
                "messages": [dataclasses.asdict(m) for m in self.messages.values()],
                "ephemeral": [dataclasses.asdict(m) for m in self.ephemeral_messages],
                "files": [{**dataclasses.asdict(f), "content": base64.b64encode(f.content).decode() if f.content is not None else None}
                          for f in self.files.values()],
                "counter": next(self._counter),
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Back to a snapshot's messages and files, so that the app's later edits of them (it
        keeps their ts) find them; new ids continue after the snapshot's."""
        with self._lock:
            for data in snapshot.get("messages", []):
                message = Message(**data)
                self.messages[(message.channel, message.ts)] = message
            self.ephemeral_messages.extend(Message(**data) for data in snapshot.get("ephemeral", []))
            for data in snapshot.get("files", []):
                content = data.pop("content")
                self.files[data["id"]] = StandInFile(**data, content=base64.b64decode(content) if content is not None else None)
            self._counter = itertools.count(int(snapshot.get("counter", 1)))
            self.version += 1

    def assert_no_violations(self) -> None:
        assert self.violations == [], "Slack contract violations:\n" + "\n".join(
            f"  {v.method}: {v.error} — {v.detail}" for v in self.violations)

    # HTTP -----------------------------------------------------------------------------------------
    def wsgi(self, environ, start_response):
        request = Request(environ)
        path = request.path
        if path.startswith("/api/"):
            response = self._api(request, path[len("/api/"):])
        elif path.startswith("/upload/v1/"):
            response = self._upload(request, path[len("/upload/v1/"):])
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def _api(self, request: Request, method: str) -> Response:
        now = self._clock()
        spec = METHODS.get(method)
        injected: _Failure | None = None
        args: dict[str, Any] = {}
        headers: dict[str, str] = {}
        try:
            args, token = self._read_arguments(request, spec)
            with self._lock:
                if spec is not None:
                    pending = self._failures[method]
                    injected = next((f for f in pending if f.applies_to(args)), None)
                    if injected is not None:
                        pending.remove(injected)
            if spec is None:
                raise SlackError("unknown_method", violation=True, detail=f"no Web API method {method!r}")
            self._check_auth(token, spec)
            self._check_arguments(spec, args)
            self._check_against_reference(method, args)
            body = {}
            if injected is None:  # an injected failure means Slack did nothing
                with self._lock:
                    body = getattr(self, "_m_" + method.replace(".", "_"))(args, now)
            status = 200
        except SlackError as exc:
            self._ensure_documented(spec, exc.error)
            body = {"ok": False, "error": exc.error, **exc.extra}
            if exc.messages:
                body["response_metadata"] = {"messages": exc.messages}
            status = 200
            if exc.violation:
                with self._lock:
                    self.violations.append(Violation(method, exc.error, exc.detail))
        if injected is not None:
            body = {"ok": False, "error": injected.error}
            status = injected.status
            headers = {"Retry-After": str(injected.retry_after)} if injected.retry_after is not None else {}
        with self._lock:
            self.calls.append(Call(method, args, now, status, body, injected=injected is not None))
            self.version += 1
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        response.headers.update(headers)
        # Slack reports the token's scopes and the method's accepted scopes on every answer
        app_method = spec is not None and spec.token == "app"
        response.headers["x-oauth-scopes"] = ",".join(sorted(self.app_scopes if app_method else self.scopes))
        if spec is not None:
            response.headers["x-accepted-oauth-scopes"] = spec.scope or ""
        return response

    def _check_against_reference(self, method: str, args: dict[str, Any]) -> None:
        """Where Slack's reference is at hand: every argument sent is one it documents for the
        method (Slack ignores the others, so the app's intent would be silently lost)."""
        if self.reference is None:
            return
        try:
            documented = self.reference.documented_arguments(method)
        except MethodNotInReference:
            raise SlackError("unknown_method", violation=True, detail=f"{method} is not in Slack's reference") from None
        unknown = sorted(set(args) - documented)
        if unknown:
            with self._lock:
                self.violations.append(Violation(method, "undocumented_argument",
                                                 f"Slack's reference documents no {', '.join(unknown)} for {method}"))

    def _ensure_documented(self, spec: MethodSpec | None, error: str) -> None:
        """Keeps the method table honest: the fake answers only errors it declares, so the
        cross-check against Slack's reference covers everything it can say."""
        allowed = GENERIC_ERRORS | (spec.all_errors() if spec else frozenset())
        if error not in allowed:
            raise AssertionError(f"fake answered undeclared error {error!r} for {spec and spec.name}")

    def _read_arguments(self, request: Request, spec: MethodSpec | None) -> tuple[dict[str, Any], str | None]:
        """Arguments and token as Slack reads them from query, form or JSON body."""
        args: dict[str, Any] = {k: v for k, v in request.args.items()}
        token: str | None = args.pop("token", None)
        raw = request.get_data(cache=True)
        mimetype = request.mimetype
        if raw:
            if not request.content_type:
                raise SlackError("missing_post_type", violation=True, detail="body without Content-Type")
            if mimetype == "application/json":
                if spec is not None and not spec.accepts_json_body:
                    # Slack reads JSON bodies only for methods that accept them; the arguments
                    # are simply not seen, so this is recorded before whatever follows.
                    with self._lock:
                        self.violations.append(Violation(spec.name, "json_body_not_supported",
                                                         f"{spec.name} does not read JSON bodies; send a form"))
                else:
                    try:
                        payload = json.loads(raw)
                    except ValueError as exc:
                        raise SlackError("invalid_form_data", violation=True, detail=f"bad JSON body: {exc}") from exc
                    if not isinstance(payload, dict):
                        raise SlackError("invalid_form_data", violation=True, detail="JSON body is not an object")
                    payload.pop("token", None)  # Slack ignores a token inside a JSON body
                    args.update(payload)
            elif mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = dict(request.form.items())
                token = form.pop("token", None) or token
                args.update(form)
            else:
                raise SlackError("invalid_post_type", violation=True, detail=f"Content-Type {mimetype!r}")
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization[len("Bearer "):].strip()
        if spec is not None:
            for name in spec.json_args & set(args):
                if isinstance(args[name], str):
                    try:
                        args[name] = json.loads(args[name])
                    except ValueError:
                        args[name] = _Malformed(args[name])
        return args, token

    def _check_auth(self, token: str | None, spec: MethodSpec) -> None:
        if not token:
            raise SlackError("not_authed", violation=True, detail="no token sent")
        if spec.token == "app":
            if secrets.compare_digest(token.encode(), self.bot_token.encode()):
                raise SlackError("not_allowed_token_type", violation=True, detail="needs the app-level token, got the bot token")
            if not secrets.compare_digest(token.encode(), self.app_token.encode()):
                raise SlackError("invalid_auth", violation=True, detail="token is not the app-level token")
            if spec.scope is not None and spec.scope not in self.app_scopes:
                raise SlackError("missing_scope", violation=True, detail=f"needs {spec.scope}",
                                 extra={"needed": spec.scope, "provided": ",".join(sorted(self.app_scopes))})
            return
        if not secrets.compare_digest(token.encode(), self.bot_token.encode()):
            raise SlackError("invalid_auth", violation=True, detail="token is not the bot token")
        if spec.scope is not None and spec.scope not in self.scopes:
            raise SlackError("missing_scope", violation=True, detail=f"needs {spec.scope}",
                             extra={"needed": spec.scope, "provided": ",".join(sorted(self.scopes))})

    def _check_arguments(self, spec: MethodSpec, args: dict[str, Any]) -> None:
        def present(name: str) -> bool:
            return args.get(name) not in (None, "")

        for name, error in spec.required.items():
            if not present(name):
                raise SlackError(error, violation=True, detail=f"missing required argument {name!r}",
                                 messages=[f"[ERROR] missing required field: {name}"])
        for group, error in spec.one_of:
            if not any(present(name) for name in group):
                raise SlackError(error, violation=True, detail=f"needs one of {sorted(group)}",
                                 messages=[f"[ERROR] missing one of: {', '.join(sorted(group))}"])
        for name in spec.json_args & set(args):
            if isinstance(args[name], _Malformed):
                error = {"view": "invalid_arguments", "blocks": "invalid_blocks_format",
                         "metadata": "invalid_metadata_format"}.get(name, "invalid_form_data")
                raise SlackError(error, violation=True, detail=f"{name} is not valid JSON")
        posts_message = any(group == _MESSAGE_CONTENT for group, _ in spec.one_of)
        if posts_message and "text" in args and "markdown_text" in args:
            raise SlackError("markdown_text_conflict", violation=True, detail="text and markdown_text both given")
        if "blocks" in spec.json_args and "blocks" in args:
            messages = block_kit_errors(blocks=args["blocks"])
            if messages:
                raise SlackError("invalid_blocks", violation=True, detail="; ".join(messages), messages=messages)
        if "view" in spec.json_args:
            view = args["view"]
            if len(json.dumps(view).encode()) > VIEW_JSON_BYTES_MAX:
                raise SlackError("view_too_large", violation=True, detail="view JSON over 250 kB")
            messages = block_kit_errors(view=view, surface="home" if spec.name == "views.publish" else "modal")
            if messages:
                raise SlackError("invalid_arguments", violation=True, detail="; ".join(messages), messages=messages)

    # trigger ids ------------------------------------------------------------------------------
    def _use_trigger(self, args: dict[str, Any], now: float) -> _Trigger:
        trigger = self._triggers.get(args.get("trigger_id") or args.get("interactivity_pointer") or "")
        if trigger is None:
            raise SlackError("invalid_trigger_id", violation=True, detail="trigger_id was not issued by Slack")
        if trigger.used:
            raise SlackError("exchanged_trigger_id", violation=True, detail="trigger_id already used")
        trigger.used = True
        if now - trigger.issued_at > TRIGGER_TTL_SECONDS:
            raise SlackError("expired_trigger_id", violation=True,
                             detail=f"trigger_id used {now - trigger.issued_at:.1f} s after it was issued")
        return trigger

    # method handlers (called with the lock held) ------------------------------------------------
    def new_ts(self) -> str:
        """A fresh message ts, as Slack gives each message in a channel."""
        return f"1700000000.{next(self._counter):06d}"

    def _store_view(self, view: dict[str, Any], *, view_id: str | None = None, root_view_id: str | None = None,
                    previous_view_id: str | None = None, user: str | None = None) -> dict[str, Any]:
        earlier = self.views.get(view_id) if view_id else None
        view_id = view_id or f"V{next(self._counter):010d}"
        # who sees the view and when it was opened (kept by views.update): the local workspace's
        # view stacks; Slack's own answer carries neither
        if earlier is None:
            self.view_owners[view_id] = (user, next(self._counter))
        stored = {
            "id": view_id, "team_id": self.team_id, "type": view.get("type"),
            "title": view.get("title"), "submit": view.get("submit"), "close": view.get("close"),
            "blocks": view.get("blocks", []), "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""), "external_id": view.get("external_id", ""),
            "state": {"values": {}}, "hash": f"{next(self._counter)}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": root_view_id or view_id, "previous_view_id": previous_view_id,
            "app_id": self.app_id, "bot_id": self.bot_id,
        }
        self.views[view_id] = stored
        return stored

    def _m_views_open(self, args, now):
        trigger = self._use_trigger(args, now)
        return {"ok": True, "view": self._store_view(args["view"], user=trigger.user)}

    def _m_views_push(self, args, now):
        trigger = self._use_trigger(args, now)
        # Slack pushes onto the modal the interaction came from; a trigger from a slash command
        # has no modal to push onto
        top = self.views.get(trigger.view_id) if trigger.view_id else None
        if top is None:
            raise SlackError("invalid_trigger_id", violation=True,
                             detail="views.push needs a trigger_id from an interaction inside an open modal")
        root = top["root_view_id"]
        if sum(1 for v in self.views.values() if v["root_view_id"] == root) >= VIEW_STACK_MAX:
            raise SlackError("push_limit_reached", violation=True, detail=f"a view stack holds {VIEW_STACK_MAX} views")
        return {"ok": True, "view": self._store_view(args["view"], root_view_id=root, previous_view_id=top["id"],
                                                     user=trigger.user or self.view_owners[top["id"]][0])}

    def _m_views_publish(self, args, now):
        """The user's Home tab, replaced whole (kept in `home_views` by user id)."""
        user = args["user_id"]
        current = self.home_views.get(user)
        if args.get("hash") and current is not None and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict", violation=False, detail="the Home changed since that hash")
        stored = self._store_view(args["view"], view_id=current["id"] if current else None)
        self.home_views[user] = stored
        return {"ok": True, "view": stored}

    def _m_views_update(self, args, now):
        if args.get("view_id"):
            current = self.views.get(args["view_id"])
        else:
            current = next((v for v in self.views.values() if v["external_id"] == args["external_id"]), None)
        if current is None:
            raise SlackError("not_found", violation=False, detail="no such view")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict", violation=False, detail="view changed since that hash")
        stored = self._store_view(args["view"], view_id=current["id"], root_view_id=current["root_view_id"],
                                  previous_view_id=current["previous_view_id"])
        return {"ok": True, "view": stored}

    def _resolve_channel(self, channel: str) -> str:
        """Where a message to `channel` lands: a user id means the bot's DM with that user."""
        if channel[:1] in ("U", "W"):
            if channel not in self.users:
                raise SlackError("channel_not_found", violation=False, detail=f"no user {channel}")
            return self.dm_channel(channel)
        if channel[:1] == "D" and channel in {self.dm_channel(u) for u in self.users}:
            return channel
        if channel in self.channels:
            return channel
        raise SlackError("channel_not_found", violation=False, detail=f"no channel {channel} with the bot in it")

    def _message_text(self, method: str, args: dict[str, Any]) -> str | None:
        text = args.get("text")
        if isinstance(text, str) and len(text) > limits.MESSAGE_TEXT_MAX:
            # Slack truncates rather than refuses: the reader silently loses the end
            self.violations.append(Violation(method, "text_truncated",
                                             f"text of {len(text)} characters; Slack keeps {limits.MESSAGE_TEXT_MAX}"))
            return text[: limits.MESSAGE_TEXT_MAX]
        return text

    def _message_body(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": message.text or "", "ts": message.ts,
                "user": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id, "team": self.team_id}
        if message.blocks is not None:
            body["blocks"] = message.blocks
        return body

    def _m_chat_postMessage(self, args, now):
        channel = self._resolve_channel(args["channel"])
        ts = self.new_ts()
        message = Message(channel, ts, self._message_text("chat.postMessage", args), args.get("blocks"), dict(args))
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": self._message_body(message)}

    def _m_chat_update(self, args, now):
        channel = args["channel"]
        if channel[:1] in ("U", "W"):
            # chat.update needs the conversation id that chat.postMessage answered
            raise SlackError("channel_not_found", violation=True, detail="chat.update needs the D… id, not a user id")
        message = self.messages.get((channel, args["ts"]))
        if message is None:
            raise SlackError("message_not_found", violation=True, detail=f"no message {args['ts']} in {channel}")
        message.history.append({"text": message.text, "blocks": message.blocks, "args": message.args})
        message.text = self._message_text("chat.update", args)
        message.blocks = args.get("blocks")
        message.args = dict(args)
        return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text or "",
                "message": self._message_body(message)}

    def _m_chat_postEphemeral(self, args, now):
        channel = self._resolve_channel(args["channel"])
        if args["user"] not in self.users:
            raise SlackError("user_not_in_channel", violation=False, detail=f"no user {args['user']}")
        ts = self.new_ts()
        self.ephemeral_messages.append(Message(channel, ts, self._message_text("chat.postEphemeral", args),
                                               args.get("blocks"), dict(args), ephemeral_user=args["user"]))
        return {"ok": True, "message_ts": ts}

    def _m_chat_getPermalink(self, args, now):
        channel, ts = args["channel"], args["message_ts"]
        if (channel, ts) not in self.messages:
            raise SlackError("message_not_found", violation=False, detail=f"no message {ts} in {channel}")
        return {"ok": True, "channel": channel,
                "permalink": f"https://fake-workspace.slack.com/archives/{channel}/p{_ts_digits(ts)}"}

    def _m_conversations_open(self, args, now):
        if args.get("channel"):
            channel = args["channel"]
            if channel not in self.channels and channel not in {self.dm_channel(u) for u in self.users}:
                raise SlackError("channel_not_found", violation=False, detail=f"no channel {channel}")
            return {"ok": True, "channel": {"id": channel}}
        users = [u.strip() for u in str(args["users"]).split(",") if u.strip()]
        if len(users) > 8:
            raise SlackError("too_many_users", violation=True, detail="at most 8 users")
        for user in users:
            if user not in self.users:
                raise SlackError("user_not_found", violation=False, detail=f"no user {user}")
        if len(users) == 1:
            channel = {"id": self.dm_channel(users[0]), "is_im": True, "user": users[0]}
        else:
            channel = {"id": "G" + secrets.token_hex(5).upper(), "is_mpim": True}
            self.channels.add(channel["id"])
        return {"ok": True, "channel": channel}

    def _m_users_info(self, args, now):
        user = self.users.get(args["user"])
        if user is None:
            raise SlackError("user_not_found", violation=False, detail=f"no user {args['user']}")
        # an aware datetime always has an offset; utcoffset() is Optional only for naive ones
        local_offset = datetime.now(UTC).astimezone(ZoneInfo(user.tz)).utcoffset()
        assert local_offset is not None
        offset = int(local_offset.total_seconds())
        name = user.name or user.id.lower()
        profile: dict[str, Any] = {"real_name": user.real_name or name, "display_name": name}
        if "users:read.email" in self.scopes and user.email:
            profile["email"] = user.email  # Slack leaves e-mail out without users:read.email
        body: dict[str, Any] = {
            "id": user.id, "team_id": self.team_id, "name": name, "deleted": user.deleted,
            "real_name": user.real_name or name, "tz": user.tz, "tz_label": user.tz, "tz_offset": offset,
            "is_bot": user.is_bot, "is_admin": False, "is_owner": False, "profile": profile,
        }
        if user.enterprise_user_id:
            body["enterprise_user"] = {"id": user.enterprise_user_id, "enterprise_id": self.enterprise_id or "E0FAKE",
                                       "enterprise_name": "Fake Grid", "is_admin": False, "is_owner": False,
                                       "teams": [self.team_id]}
        return {"ok": True, "user": body}

    def _m_usergroups_list(self, args, now):
        include_users = _as_bool(args.get("include_users", False))
        groups = []
        for group in self.usergroups.values():
            item = {"id": group["id"], "team_id": self.team_id, "is_usergroup": True, "name": group["name"],
                    "handle": group["handle"], "user_count": len(group["users"]), "date_delete": 0}
            if include_users:
                item["users"] = list(group["users"])
            groups.append(item)
        return {"ok": True, "usergroups": groups}

    def _m_usergroups_users_list(self, args, now):
        group = self.usergroups.get(args["usergroup"])
        if group is None:
            raise SlackError("no_such_subteam", violation=False, detail=f"no user group {args['usergroup']}")
        return {"ok": True, "users": list(group["users"])}

    def _m_auth_test(self, args, now):
        body = {"ok": True, "url": "https://fake-workspace.slack.com/", "team": "Fake Workspace",
                "user": "impersonation-bot", "team_id": self.team_id, "user_id": self.bot_user_id,
                "bot_id": self.bot_id, "is_enterprise_install": False}
        if self.enterprise_id:
            body["enterprise_id"] = self.enterprise_id
        return body

    def _m_apps_connections_open(self, args, now):
        return {"ok": True, "url": self.socket_mode_url()}

    def _m_files_getUploadURLExternal(self, args, now):
        try:
            length = int(args["length"])
        except (TypeError, ValueError) as exc:
            raise SlackError("invalid_form_data", violation=True, detail="length is not an integer") from exc
        file_id = f"F{next(self._counter):010d}"
        upload_url = f"{self.base_url}/upload/v1/{file_id}"
        self.files[file_id] = StandInFile(file_id, str(args["filename"]), length, upload_url)
        return {"ok": True, "upload_url": upload_url, "file_id": file_id}

    def _m_files_completeUploadExternal(self, args, now):
        files = args["files"]
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            raise SlackError("invalid_form_data", violation=True, detail="files must be a JSON array of {id, title}")
        channel_id = args.get("channel_id") or None
        if channel_id is not None:
            channel_id = self._resolve_channel(channel_id)
        if "blocks" in args:
            messages = block_kit_errors(blocks=args["blocks"])
            if messages:
                raise SlackError("invalid_blocks", violation=True, detail="; ".join(messages), messages=messages)
        answered = []
        for entry in files:
            stored = self.files.get(entry["id"])
            if stored is None or stored.content is None or stored.completed:
                raise SlackError("file_not_found", violation=True,
                                 detail=f"file {entry['id']} was not uploaded (or already completed)")
        for entry in files:
            stored = self.files[entry["id"]]
            stored.completed = True
            stored.title = entry.get("title") or stored.filename
            stored.channel_id, stored.initial_comment = channel_id, args.get("initial_comment")
            stored.thread_ts = args.get("thread_ts")
            answered.append({"id": stored.id, "name": stored.filename, "title": stored.title,
                             "size": len(stored.content or b""),
                             "permalink": f"https://fake-workspace.slack.com/files/{self.bot_user_id}/{stored.id}"})
        return {"ok": True, "files": answered}

    # the upload URL ---------------------------------------------------------------------------------
    def _upload(self, request: Request, file_id: str) -> Response:
        """The URL files.getUploadURLExternal hands out: the bytes are POSTed here, raw
        (slack_sdk) or as a multipart `file` field."""
        content = request.get_data(cache=True)  # read before any form parsing consumes the stream
        if request.mimetype == "multipart/form-data" and request.files.get("file"):
            content = request.files["file"].read()
        with self._lock:
            stored = self.files.get(file_id)
            self.uploads.append((file_id, content))
            if request.method != "POST" or stored is None:
                self.violations.append(Violation("upload", "file_not_found", f"{request.method} to unknown upload {file_id}"))
                return Response("file not found", status=404)
            if stored.completed:
                self.violations.append(Violation("upload", "already_completed", f"upload {file_id} already completed"))
                return Response("already completed", status=400)
            if len(content) != stored.length:
                self.violations.append(Violation("upload", "length_mismatch",
                                                 f"{len(content)} bytes sent, {stored.length} declared"))
            stored.content = content
        return Response(f"OK - {len(content)}", status=200, mimetype="text/plain")


class _Malformed(str):
    """A JSON-valued argument whose string is not JSON (kept as sent, flagged for the checks)."""
