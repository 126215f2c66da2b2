"""A stand-in for Slack's `response_url`s over real HTTP (127.0.0.1), for listeners that
answer through Bolt's `respond()` (slack_sdk's WebhookClient POSTs JSON there). The tests run
it on its own server; the local workspace mounts `wsgi` beside its Web API stand-in and shows
what is posted (`issue(on_post=…)`).

Slack's rules, checked (Slack "Handling user interaction", responding with response_url;
../shared/slack-reference/README.md): a response URL accepts a JSON body, at most 5 times,
within 30 minutes; a message's blocks obey Block Kit (the same checker as the Web API fake).
A broken rule is recorded in `violations` and answered as Slack would (HTTP 4xx), so a test
can assert there were none.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from bot.local.webapi import block_kit_errors

MAX_USES = 5
TTL_SECONDS = 30 * 60


@dataclass(frozen=True)
class Posted:
    """One message sent to a response URL."""

    hook: str
    body: dict[str, Any]

    @property
    def replace_original(self) -> bool:
        return bool(self.body.get("replace_original"))


class FakeResponseUrls:
    def __init__(self, *, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._issued: dict[str, float] = {}
        self._uses: dict[str, int] = {}
        self.posted: list[Posted] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.violations: list[str] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> FakeResponseUrls:
        self._server = server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.base_url = f"http://127.0.0.1:{server.server_port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def issue(self, on_post: Callable[[dict[str, Any]], None] | None = None) -> str:
        """A fresh response URL, as Slack puts in a command or interaction payload; `on_post`
        is called with each message accepted there."""
        hook = secrets.token_hex(8)
        with self._lock:
            self._issued[hook] = self._clock()
            self._uses[hook] = 0
            if on_post is not None:
                self._handlers[hook] = on_post
        return f"{self.base_url}/hooks/{hook}"

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Posted]:
        """Block until at least `count` messages were posted (work done after the HTTP
        answer, e.g. Bolt's lazy listeners), then return them all. Fails the test if they
        never come; no assertion is made about how long they took."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.posted) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} response_url message(s), got {len(self.posted)}")
                self._lock.wait(remaining)
            return list(self.posted)

    def wsgi(self, environ, start_response):
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        hook = request.path.removeprefix("/hooks/")
        with self._lock:
            issued = self._issued.get(hook)
            if request.method != "POST" or issued is None:
                self.violations.append(f"{request.method} to unknown response URL {request.path}")
                return Response("no_service", status=404)
            if self._clock() - issued > TTL_SECONDS:
                self.violations.append(f"response URL {hook} used after 30 minutes")
                return Response("expired_url", status=404)
            if self._uses[hook] >= MAX_USES:
                self.violations.append(f"response URL {hook} used more than {MAX_USES} times")
                return Response("used_url", status=404)
            self._uses[hook] += 1
            try:
                body = json.loads(request.get_data(as_text=True))
            except ValueError:
                self.violations.append("response URL body is not JSON")
                return Response("invalid_payload", status=400)
            if not isinstance(body, dict) or not (body.get("text") or body.get("blocks") or body.get("delete_original")):
                self.violations.append("response URL message has no text or blocks")
                return Response("no_text", status=400)
            if "blocks" in body:
                errors = block_kit_errors(blocks=body["blocks"])
                if errors:
                    self.violations.append("invalid_blocks: " + "; ".join(errors))
                    return Response("invalid_blocks", status=400)
            self.posted.append(Posted(hook, body))
            self._lock.notify_all()
            handler = self._handlers.get(hook)
        if handler is not None:
            handler(body)
        return Response("ok", status=200)
