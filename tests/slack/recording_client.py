"""A WebClient that records every Web API call and answers from canned responses, with no
network. Unit tests of the Slack face use it; end-to-end wiring tests use the HTTP fake in
tests/fakes/slack_api.py instead.

It overrides `api_call`, the single method every WebClient method goes through, so the
arguments recorded are exactly what slack_sdk would send.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]

BOT_TOKEN = "xoxb-recording-test-token-0000"


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]


class RecordingWebClient(WebClient):
    def __init__(self, *, token: str = BOT_TOKEN) -> None:
        super().__init__(token=token, base_url="https://slack.invalid/api/")
        self.calls: list[Call] = []
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self.answer("auth.test", {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "team": "Test"})
        self.answer("views.open", {"ok": True, "view": {"id": "V1"}})
        self.answer("views.publish", {"ok": True, "view": {"id": "VHOME1"}})
        self.answer("chat.postMessage", lambda args: {"ok": True, "channel": _dm_channel(args["channel"]), "ts": self._next_ts()})
        self.answer("chat.update", lambda args: {"ok": True, "channel": args["channel"], "ts": args["ts"]})
        self.answer("chat.postEphemeral", lambda args: {"ok": True, "message_ts": self._next_ts()})

    def answer(self, method: str, answer: Answer) -> None:
        """Answer `method` with this response (a dict, or a function of the call's arguments)."""
        self._answers[method] = answer

    def fail(self, method: str, error: str) -> None:
        self.answer(method, {"ok": False, "error": error})

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c.args for c in self.calls if c.method == method]

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def api_call(  # type: ignore[override]
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict | None = None,
        data: dict | None = None,
        params: dict | None = None,
        json: dict | None = None,
        headers: dict | None = None,
        auth: dict | None = None,
    ) -> SlackResponse:
        merged = {**(params or {}), **(data or {}), **(json or {})}
        # slack_sdk drops None-valued arguments before sending (_build_req_args); so do we
        args = {key: value for key, value in merged.items() if value is not None}
        with self._lock:
            self.calls.append(Call(api_method, args))
        answer = self._answers.get(api_method)
        if answer is None:
            raise AssertionError(f"unexpected Slack API call {api_method}({sorted(args)})")
        body = answer(args) if callable(answer) else answer
        return SlackResponse(
            client=self,
            http_verb=http_verb,
            api_url=self.base_url + api_method,
            req_args={},
            data=body,
            headers={},
            status_code=200,
        ).validate()


def _dm_channel(channel: str) -> str:
    """Posting to a user id lands in the app's DM with them, a `D…` channel."""
    return "D" + channel[1:] if channel.startswith(("U", "W")) else channel
