"""The local workspace: a web page that plays Slack for the bot (docs/local-workspace.md).

One WSGI app on localhost serves
- the Web API stand-in (`/api/…`, `/upload/…`: bot/local/webapi.py), which the bot's
  WebClient calls (SLACK_API_URL) and which checks every call as in the tests;
- response URLs (`/hooks/…`: bot/local/response_urls.py);
- the page (`/`) and the few JSON routes its script uses. A visitor picks a persona; what they
  type or click becomes the request Slack would send — a slash command, block_actions,
  view_submission, view_closed, block_suggestion — signed with the bot's signing secret
  (bot/local/signing.py) and POSTed to the bot's /slack/events like Slack does. The bot's
  HTTP answer is used as Slack uses it: an ephemeral reply, a modal's errors / update / push /
  clear, a menu's options.

What the page shows is read from the stand-in (messages, edits, ephemeral messages, modals
opened for the persona) and rendered by bot/local/render.py, escaped.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, render_template, request
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from bot.local import render
from bot.local.demo import Persona
from bot.local.response_urls import FakeResponseUrls
from bot.local.signing import signed_headers
from bot.local.webapi import Message, SlackStandIn
from bot.slack.ids import SlashCommand

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
#: how long the workspace waits for the bot's answer (Slack waits 3 s; the bot acks well before)
BOT_TIMEOUT_SECONDS = 10
COMMANDS = tuple(command.value for command in SlashCommand)
#: the channel list's entry for the persona's App Home tab
HOME = "HOME"


class BotUnreachable(Exception):
    """The bot did not answer over HTTP."""


@dataclass(frozen=True)
class BotAnswer:
    status: int
    body: str

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body) if self.body.strip() else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class Workspace:
    def __init__(
        self,
        standin: SlackStandIn,
        personas: Sequence[Persona],
        *,
        signing_secret: str,
        bot_events_url: str,
        channels: dict[str, str],
        on_digest: Callable[[], str] | None = None,
    ) -> None:
        self.standin = standin
        self.personas = {p.slack_id: p for p in personas}
        self.signing_secret = signing_secret
        self.bot_events_url = bot_events_url
        #: channel id → name, for the channels every persona sees (the security channel)
        self.channels = channels
        self.on_digest = on_digest
        self.response_urls = FakeResponseUrls()
        self._lock = threading.Lock()
        self.closed_views: set[str] = set()
        self.view_errors: dict[str, dict[str, str]] = {}
        #: messages and modals, rendered outside any request too (autoescaped, as Flask's are)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.app = self._flask()

    # ------------------------------------------------------------------ kept across restarts
    def keep_in(self, path: Path, *, every_seconds: float = 1.0) -> None:
        """Restore the messages saved at `path` and save them there whenever they change (the
        bot's database outlives a restart, and it edits the messages it posted by their ts)."""
        if path.is_file():
            self.standin.restore(json.loads(path.read_text(encoding="utf-8")))
        saved = [self.standin.version]

        def save_when_changed() -> None:
            while True:
                time.sleep(every_seconds)
                if self.standin.version != saved[0]:
                    saved[0] = self.standin.version
                    self.save(path)

        threading.Thread(target=save_when_changed, name="local-workspace-save", daemon=True).start()

    def save(self, path: Path) -> None:
        data = json.dumps(self.standin.snapshot())
        temporary = path.with_suffix(".tmp")
        temporary.write_text(data, encoding="utf-8")
        os.replace(temporary, path)

    # ------------------------------------------------------------------ serving
    def bind(self, base_url: str) -> None:
        """Where the workspace is reached: the stand-in's upload URLs and the response URLs
        point there."""
        self.standin.base_url = base_url
        self.response_urls.base_url = base_url

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(("/api/", "/upload/")):
            return self.standin.wsgi(environ, start_response)
        if path.startswith("/hooks/"):
            return self.response_urls.wsgi(environ, start_response)
        return self.app(environ, start_response)

    def name(self, slack_id: str) -> str:
        persona = self.personas.get(slack_id)
        if persona is not None:
            return persona.name
        return "impersonation-bot" if slack_id == self.standin.bot_user_id else slack_id

    def _persona(self, slack_id: str | None) -> Persona:
        persona = self.personas.get(slack_id or "")
        if persona is None:
            abort(400, "unknown persona")
        return persona

    def _flask(self) -> Flask:
        app = Flask(__name__, static_folder=str(HERE / "static"), template_folder=str(HERE / "templates"))

        @app.after_request
        def headers(response: Response) -> Response:
            # the page runs its own script only; links it shows open in a new tab
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        @app.get("/")
        def page():
            first = next(iter(self.personas.values()))
            persona = self.personas.get(request.args.get("as", "")) or first
            return render_template("workspace.html", personas=list(self.personas.values()), persona=persona,
                                   commands=COMMANDS)

        @app.get("/state")
        def state():
            persona = self._persona(request.args.get("as"))
            channel = request.args.get("channel") or self.standin.dm_channel(persona.slack_id)
            return jsonify(self.state(persona, channel))

        @app.post("/command")
        def command():
            data = request.get_json(force=True)
            persona = self._persona(data.get("as"))
            return jsonify(self.run_command(persona, str(data.get("channel") or ""), str(data.get("text") or "")))

        @app.post("/action")
        def action():
            data = request.get_json(force=True)
            return jsonify(self.click(self._persona(data.get("as")), data))

        @app.post("/submit")
        def submit():
            data = request.get_json(force=True)
            return jsonify(self.submit(self._persona(data.get("as")), str(data.get("view_id")), data.get("values") or {}))

        @app.post("/close")
        def close():
            data = request.get_json(force=True)
            return jsonify(self.close(self._persona(data.get("as")), str(data.get("view_id")), data.get("values") or {}))

        @app.post("/options")
        def options():
            data = request.get_json(force=True)
            return jsonify(self.options(self._persona(data.get("as")), data))

        @app.post("/home")
        def home():
            data = request.get_json(force=True)
            return jsonify(self.open_home(self._persona(data.get("as"))))

        @app.post("/digest")
        def digest():
            if self.on_digest is None:
                abort(404)
            return jsonify({"ok": True, "text": self.on_digest()})

        @app.get("/files/<file_id>")
        def file(file_id: str):
            stored = self.standin.files.get(file_id)
            if stored is None or not stored.completed or stored.content is None:
                abort(404)
            # served as a download, never rendered: the content is the bot's, not the page's
            return Response(stored.content, mimetype="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{_safe_filename(stored.filename)}"'})

        return app

    # ------------------------------------------------------------------ what the page shows
    def channel_name(self, persona: Persona, channel: str) -> str:
        if channel == HOME:
            return "impersonation-bot — Home"
        if channel in self.channels:
            return "#" + self.channels[channel]
        return "impersonation-bot (direct message)"

    def state(self, persona: Persona, channel: str) -> dict[str, Any]:
        dm = self.standin.dm_channel(persona.slack_id)
        if channel not in (dm, HOME) and channel not in self.channels:
            channel = dm
        with self.standin.lock:
            messages = sorted(
                [m for (ch, _), m in self.standin.messages.items() if ch == channel]
                + [m for m in self.standin.ephemeral_messages if m.channel == channel and m.ephemeral_user == persona.slack_id],
                key=lambda m: m.ts,
            )
            files = [f for f in self.standin.files.values() if f.completed and f.channel_id == channel]
            counts = {ch: sum(1 for (c, _) in self.standin.messages if c == ch) for ch in [dm, *self.channels]}
            violations = list(self.standin.violations)
        html = Markup("").join(self._message_html(m, persona, files) for m in messages)
        if channel == HOME:
            html = self._home_html(persona)
        channels = [{"id": HOME, "name": "Home", "kind": "home", "count": 0},
                    {"id": dm, "name": "impersonation-bot", "kind": "dm", "count": counts[dm]}] + [
            {"id": cid, "name": name, "kind": "channel", "count": counts[cid]} for cid, name in self.channels.items()]
        return {
            "channel": channel,
            "channel_name": self.channel_name(persona, channel),
            "channels": channels,
            "messages": str(html) or str(Markup('<p class="empty">Nothing here yet.</p>')),
            "modal": self._modal(persona),
            "problems": [f"{v.method}: {v.error} — {v.detail}" for v in violations]
            + [str(v) for v in self.response_urls.violations],
            "digest": self.on_digest is not None and channel in self.channels,
        }

    def _message_html(self, message: Message, persona: Persona, files: list) -> Markup:
        attached = [f for f in files if f.thread_ts == message.ts]
        return Markup(self.templates.get_template("message.html").render(
            message=message, body=render.message_body(message.text, message.blocks, self.name),
            edited=bool(message.history), files=attached, thread=message.args.get("thread_ts"),
        ))

    def _home_html(self, persona: Persona) -> Markup:
        """The persona's App Home tab as the bot last published it (views.publish)."""
        with self.standin.lock:
            view = self.standin.home_views.get(persona.slack_id)
            view = dict(view) if view else None
        if view is None:
            return Markup('<p class="empty">The bot has not published a Home for you yet.</p>')
        return Markup('<div class="home-view" data-view-id="{}">{}</div>').format(view["id"], render.blocks(view.get("blocks"), self.name))

    def _modal(self, persona: Persona) -> dict[str, Any] | None:
        """The top of the persona's newest open view stack, or None."""
        with self.standin.lock:
            open_views = [
                (seq, view_id) for view_id, (owner, seq) in self.standin.view_owners.items()
                if owner == persona.slack_id and view_id not in self.closed_views and view_id in self.standin.views
            ]
            if not open_views:
                return None
            view = dict(self.standin.views[max(open_views)[1]])
        errors = self.view_errors.get(view["id"], {})
        html = self.templates.get_template("modal.html").render(view=view, body=render.blocks(view.get("blocks"), self.name),
                               title=render.plain(view.get("title")), submit=render.plain(view.get("submit")),
                               close=render.plain(view.get("close")) or "Cancel")
        return {"id": view["id"], "hash": view["hash"], "html": html, "errors": errors}

    # ------------------------------------------------------------------ what the visitor does
    def _user(self, persona: Persona) -> dict[str, Any]:
        handle = persona.name.split()[0].lower()
        return {"id": persona.slack_id, "username": handle, "name": handle, "team_id": self.standin.team_id}

    def _team(self) -> dict[str, str]:
        return {"id": self.standin.team_id, "domain": "local-workspace"}

    def _channel_name(self, channel: str) -> str:
        return self.channels.get(channel, "directmessage")

    def _send(self, body: str, *, content_type: str | None = None) -> BotAnswer:
        """POST a body to the bot's request URL, signed as Slack signs it."""
        headers = signed_headers(body, self.signing_secret)
        if content_type is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.bot_events_url, data=body.encode(), method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=BOT_TIMEOUT_SECONDS) as answer:  # noqa: S310 — the bot's own URL
                return BotAnswer(answer.status, answer.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as error:
            return BotAnswer(error.code, error.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as error:
            raise BotUnreachable(str(error)) from None

    def _interaction(self, payload: dict[str, Any]) -> BotAnswer:
        return self._send(urlencode({"payload": json.dumps(payload)}))

    def open_home(self, persona: Persona) -> dict[str, Any]:
        """The persona opens the bot's Home tab: the Events API's app_home_opened, a JSON body
        signed like every request; the bot answers by publishing the Home (views.publish)."""
        body = json.dumps({
            "token": "local-workspace", "team_id": self.standin.team_id, "api_app_id": self.standin.app_id,
            "type": "event_callback", "event_id": "Ev" + self.standin.new_ts().replace(".", ""),
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": persona.slack_id, "tab": "home",
                      "channel": self.standin.dm_channel(persona.slack_id), "event_ts": self.standin.new_ts()},
        })
        return self._answered(lambda: self._send(body, content_type="application/json"), persona, None)

    def _reply_from(self, answer: BotAnswer, persona: Persona, channel: str) -> None:
        """A command's or a click's HTTP answer carrying a message: an ephemeral reply."""
        body = answer.json()
        if answer.status == 200 and (body.get("text") or body.get("blocks")):
            self.standin.record_ephemeral(channel, persona.slack_id, text=body.get("text"), blocks=body.get("blocks"),
                                          args={"source": "answer"})

    def _response_url(self, persona: Persona, channel: str, original: tuple[str, str] | None) -> str:
        """A response URL whose messages appear to the persona in `channel`; replace_original
        and delete_original act on `original` (channel, ts) where there is one."""

        def posted(body: dict[str, Any]) -> None:
            target = self._find(original) if original else None
            if target is not None and body.get("delete_original"):
                with self.standin.lock:
                    self._remove(target)
                    self.standin.version += 1
                return
            if target is not None and body.get("replace_original"):
                with self.standin.lock:
                    target.history.append({"text": target.text, "blocks": target.blocks, "args": target.args})
                    target.text, target.blocks = body.get("text"), body.get("blocks")
                    self.standin.version += 1
                return
            if body.get("response_type") == "in_channel":
                with self.standin.lock:
                    ts = self.standin.new_ts()
                    self.standin.messages[(channel, ts)] = Message(channel, ts, body.get("text"), body.get("blocks"),
                                                                   {"source": "response_url"})
                    self.standin.version += 1
                return
            self.standin.record_ephemeral(channel, persona.slack_id, text=body.get("text"), blocks=body.get("blocks"),
                                          args={"source": "response_url"})

        return self.response_urls.issue(on_post=posted)

    def _find(self, where: tuple[str, str]) -> Message | None:
        with self.standin.lock:
            found = self.standin.messages.get(where)
            if found is None:
                found = next((m for m in self.standin.ephemeral_messages if (m.channel, m.ts) == where), None)
            return found

    def _remove(self, message: Message) -> None:
        if message.ephemeral_user is not None:
            self.standin.ephemeral_messages.remove(message)
        else:
            self.standin.messages.pop((message.channel, message.ts), None)

    def run_command(self, persona: Persona, channel: str, text: str) -> dict[str, Any]:
        command, _, rest = text.strip().partition(" ")
        if command not in COMMANDS:
            return {"ok": False, "error": f"This workspace runs the bot's commands only: {', '.join(COMMANDS)}"}
        if channel not in self.channels:
            channel = self.standin.dm_channel(persona.slack_id)
        body = urlencode({
            "token": "local-workspace", "team_id": self.standin.team_id, "team_domain": "local-workspace",
            "channel_id": channel, "channel_name": self._channel_name(channel), "user_id": persona.slack_id,
            "user_name": self._user(persona)["name"], "command": command, "text": rest.strip(),
            "api_app_id": self.standin.app_id, "is_enterprise_install": "false",
            "response_url": self._response_url(persona, channel, None),
            "trigger_id": self.standin.issue_trigger_id(user=persona.slack_id),
        })
        return self._answered(lambda: self._send(body), persona, channel)

    def _answered(self, send: Callable[[], BotAnswer], persona: Persona, channel: str | None) -> dict[str, Any]:
        try:
            answer = send()
        except BotUnreachable as error:
            return {"ok": False, "error": f"the bot did not answer: {error}"}
        if answer.status != 200:
            return {"ok": False, "error": f"the bot answered HTTP {answer.status}"}
        if channel is not None:
            self._reply_from(answer, persona, channel)
        return {"ok": True, "answer": answer.json()}

    def click(self, persona: Persona, data: dict[str, Any]) -> dict[str, Any]:
        """A button pressed or a menu chosen, in a message or in a modal: block_actions."""
        action: dict[str, Any] = {"type": data.get("type") or "button", "action_id": data.get("action_id"),
                                  "block_id": data.get("block_id"), "action_ts": self.standin.new_ts()}
        if data.get("value") is not None:
            action["value"] = data["value"]
        if data.get("selected_option") is not None:
            action["selected_option"] = data["selected_option"]
        if data.get("text") is not None:
            action["text"] = {"type": "plain_text", "text": data["text"]}
        payload: dict[str, Any] = {"type": "block_actions", "user": self._user(persona), "team": self._team(),
                                   "api_app_id": self.standin.app_id, "token": "local-workspace",
                                   "actions": [action], "is_enterprise_install": False}
        view_id = data.get("view_id")
        if view_id:
            view = self._view_for(persona, str(view_id), data.get("values") or {})
            payload.update(container={"type": "view", "view_id": view["id"]}, view=view,
                           trigger_id=self.standin.issue_trigger_id(view_id=view["id"], user=persona.slack_id))
            return self._answered(lambda: self._interaction(payload), persona, None)
        channel, ts = str(data.get("channel")), str(data.get("ts"))
        message = self._find((channel, ts))
        if message is None or (message.ephemeral_user not in (None, persona.slack_id)):
            return {"ok": False, "error": "that message is not there any more"}
        if message.ephemeral_user is None and channel not in self.channels and channel != self.standin.dm_channel(persona.slack_id):
            return {"ok": False, "error": "that message is in someone else's conversation"}
        payload.update(
            container={"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": message.ephemeral_user is not None},
            channel={"id": channel, "name": self._channel_name(channel)},
            message={"type": "message", "ts": ts, "text": message.text or "", "blocks": message.blocks or [],
                     "user": self.standin.bot_user_id, "bot_id": self.standin.bot_id},
            state={"values": {}},
            response_url=self._response_url(persona, channel, (channel, ts)),
            trigger_id=self.standin.issue_trigger_id(user=persona.slack_id),
        )
        return self._answered(lambda: self._interaction(payload), persona, channel)

    def _view_for(self, persona: Persona, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.standin.lock:
            view = self.standin.views.get(view_id)
            owner = self.standin.view_owners.get(view_id, (None, 0))[0]
            home = self.standin.home_views.get(persona.slack_id)
            if view is None or (owner != persona.slack_id and (home is None or home["id"] != view_id)):
                abort(404, "no such view for this persona")
            return {**view, "state": {"values": values}}

    def submit(self, persona: Persona, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
        view = self._view_for(persona, view_id, values)
        payload = {"type": "view_submission", "user": self._user(persona), "team": self._team(),
                   "api_app_id": self.standin.app_id, "token": "local-workspace",
                   "trigger_id": self.standin.issue_trigger_id(view_id=view_id, user=persona.slack_id),
                   "view": view, "response_urls": [], "is_enterprise_install": False}
        result = self._answered(lambda: self._interaction(payload), persona, None)
        if not result["ok"]:
            return result
        answer = result["answer"]
        action = answer.get("response_action")
        with self._lock:
            self.view_errors.pop(view_id, None)
            if action == "errors":
                self.view_errors[view_id] = {str(k): str(v) for k, v in (answer.get("errors") or {}).items()}
            elif action == "update":
                self.standin.show_view(answer["view"], user=persona.slack_id, replacing=view_id)
            elif action == "push":
                self.standin.show_view(answer["view"], user=persona.slack_id, pushed_onto=view_id)
            elif action == "clear":
                self._close_stack(view_id)
            else:
                self.closed_views.add(view_id)
        with self.standin.lock:
            self.standin.version += 1
        return {"ok": True, "errors": self.view_errors.get(view_id, {})}

    def _close_stack(self, view_id: str) -> None:
        with self.standin.lock:
            root = self.standin.views[view_id]["root_view_id"]
            self.closed_views |= {vid for vid, v in self.standin.views.items() if v["root_view_id"] == root}

    def close(self, persona: Persona, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """The modal's Cancel (or ×): the whole stack closes; the bot hears of it only where
        the view asked (notify_on_close), as Slack does."""
        view = self._view_for(persona, view_id, values)
        with self._lock:
            self._close_stack(view_id)
        if view.get("notify_on_close"):
            payload = {"type": "view_closed", "user": self._user(persona), "team": self._team(),
                       "api_app_id": self.standin.app_id, "token": "local-workspace", "view": view, "is_cleared": True}
            return self._answered(lambda: self._interaction(payload), persona, None)
        return {"ok": True}

    def options(self, persona: Persona, data: dict[str, Any]) -> dict[str, Any]:
        """An external select's menu: block_suggestion, answered with the bot's options."""
        view = self._view_for(persona, str(data.get("view_id")), data.get("values") or {})
        payload = {"type": "block_suggestion", "user": self._user(persona), "team": self._team(),
                   "api_app_id": self.standin.app_id, "token": "local-workspace",
                   "action_id": data.get("action_id"), "block_id": data.get("block_id"), "value": str(data.get("value") or ""),
                   "container": {"type": "view", "view_id": view["id"]}, "view": view}
        result = self._answered(lambda: self._interaction(payload), persona, None)
        if not result["ok"]:
            return result
        answer = result["answer"]
        options = list(answer.get("options") or [])
        for group in answer.get("option_groups") or []:
            options += group.get("options") or []
        return {"ok": True, "options": [render.option_value(o) for o in options]}


def _safe_filename(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "._-") or "file"
