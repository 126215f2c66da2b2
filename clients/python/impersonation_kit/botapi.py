"""The bot's product API, server to server: session status (cached), ending a session, and
reporting actions. The API key travels only in the Authorization header of these calls."""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from impersonation_kit.config import KitConfig
from impersonation_kit.replay import JtiStore

log = logging.getLogger("impersonation_kit")


class BotUnavailable(Exception):
    """The bot could not be asked (network, 5xx, refused key): the kit fails closed."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]


class BotApi:
    def __init__(self, config: KitConfig) -> None:
        self._config = config

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> HttpAnswer:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        request = urllib.request.Request(f"{self._config.api_base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._config.api_key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self._config.http_timeout_seconds) as response:
                return HttpAnswer(response.status, _json(response.read()))
        except urllib.error.HTTPError as error:
            return HttpAnswer(error.code, _json(error.read()))
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets
            raise BotUnavailable(type(exc).__name__) from None

    def session_status(self, session_id: str) -> str:
        answer = self.call("GET", f"/api/v1/sessions/{quote(session_id, safe='')}")
        if answer.status == 200 and isinstance(answer.body.get("status"), str):
            return answer.body["status"]
        if answer.status == 404:
            return "unknown"
        raise BotUnavailable(f"session status answered {answer.status}")

    def end_session(self, session_id: str) -> bool:
        """Ask the bot to end the session (the agent's DM and the security feed then say so)."""
        try:
            answer = self.call("POST", f"/api/v1/sessions/{quote(session_id, safe='')}/end", body={})
        except BotUnavailable as exc:
            log.warning("impersonation kit: could not end session %s in the bot: %s", session_id, exc)
            return False
        if answer.status >= 300 and answer.status != 409:  # 409: it had already ended
            log.warning("impersonation kit: the bot refused to end session %s: %s", session_id, answer.status)
            return False
        return True


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class StatusCache:
    """The session's status from the bot, kept `ttl` seconds per session, so a session ended,
    revoked or expired in the bot stops at the first request after at most `ttl` seconds.
    A push (`end_now`, from a webhook or the End button) ends it at once."""

    FAILURE_BACKOFF_SECONDS = 2.0

    def __init__(self, api: BotApi, store: JtiStore, *, ttl: float, clock=None) -> None:
        self._api = api
        self._store = store
        self._ttl = ttl
        self._clock = clock or (lambda: time.monotonic())  # looked up per call: tests freeze it
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._down_until = float("-inf")

    def status(self, session_id: str) -> str:
        if self._store.is_ended(session_id):
            return "ended"
        hit = self._cache.get(session_id)
        now = self._clock()
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        if now < self._down_until:
            # The bot failed a moment ago: refuse at once instead of sending every request of
            # every session to a bot that is down (fail closed, without piling onto it).
            raise BotUnavailable("the bot was unreachable moments ago")
        try:
            status = self._api.session_status(session_id)
        except BotUnavailable:
            self._down_until = now + self.FAILURE_BACKOFF_SECONDS
            raise
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[session_id] = (status, now)
        return status

    def end_now(self, session_id: str, until: float) -> None:
        self._store.mark_ended(session_id, until)
        with self._lock:
            self._cache[session_id] = ("ended", self._clock())
