"""A minimal stand-in for the Slack Web API, for benchmarks only.

The tests hold the code to Slack's contract with bot/local/webapi.py, which validates
every argument, scope and Block Kit limit — and costs milliseconds of CPU per call. In a
benchmark on a 2-core machine that CPU would be taken from the server under test, although in
production it is Slack's, not ours. So the benchmarks answer Slack calls with this: one
asyncio process, keep-alive, realistic `ok` responses, no validation. It records the
chat.postMessage bodies so the bench can find the links it was sent.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing as mp
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

TOKEN = "xoxb-bench-token"


def _args(body: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type:
        return json.loads(body or b"{}")
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def stub_answer(method: str, args: dict[str, Any], n: int, people: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Slack's answer to `method`, as the stand-in gives it (`n` numbers messages and views)."""
    if method == "auth.test":
        return {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "TBENCH", "team": "bench", "url": "https://bench.slack.com/"}
    if method == "chat.postMessage":
        channel = str(args.get("channel", ""))
        if channel.startswith(("U", "W")):
            channel = "D" + channel[1:]
        return {"ok": True, "channel": channel, "ts": f"1700000000.{n:06d}"}
    if method == "chat.update":
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
    if method == "chat.postEphemeral":
        return {"ok": True, "message_ts": f"1700000000.{n:06d}"}
    if method in ("views.open", "views.update", "views.push"):
        return {"ok": True, "view": {"id": f"V{n:08d}"}}
    if method == "users.info":
        user = str(args.get("user", ""))
        person = people.get(user, {})
        return {"ok": True, "user": {"id": user, "tz": person.get("tz", "UTC"), "profile": {"email": person.get("email")}}}
    if method == "usergroups.list":
        return {"ok": True, "usergroups": []}
    if method == "usergroups.users.list":
        return {"ok": True, "users": []}
    if method == "conversations.open":
        return {"ok": True, "channel": {"id": "D" + str(args.get("users", "X"))[1:]}}
    return {"ok": False, "error": "unknown_method"}


def _serve(conn, people: dict[str, dict[str, Any]]) -> None:
    posted: list[str] = []
    messages: list[tuple[str, str, str, float]] = []
    lock = threading.Lock()
    counter = itertools.count(1)

    def answer(method: str, args: dict[str, Any]) -> dict[str, Any]:
        return stub_answer(method, args, next(counter), people)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                method = path.split("?")[0].rsplit("/", 1)[-1]
                args = _args(body, headers.get("content-type", ""))
                reply = answer(method, args)
                if method == "chat.postMessage":
                    with lock:
                        posted.append(body.decode())
                        messages.append((method, reply["channel"], reply["ts"], time.time()))
                elif method == "chat.update":
                    with lock:
                        messages.append((method, str(args.get("channel")), str(args.get("ts")), time.time()))
                payload = json.dumps(reply).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def commands() -> None:
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            name, since = command
            with lock:
                conn.send(posted[since:] if name == "posted" else messages[since:] if name == "messages" else None)

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        conn.send(server.sockets[0].getsockname()[1])
        threading.Thread(target=commands, daemon=True).start()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class SlackStub:
    bot_token = TOKEN

    def __init__(self, people: dict[str, dict[str, Any]]) -> None:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, people), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{self._conn.recv()}/api/"
        self.pid = self._process.pid

    def posted_messages(self, since: int = 0) -> list[dict[str, Any]]:
        """chat.postMessage arguments received so far from the `since`-th on (blocks decoded)."""
        self._conn.send(("posted", since))
        out = []
        for body in self._conn.recv():
            args = json.loads(body) if body.startswith("{") else {k: v[0] for k, v in parse_qs(body).items()}
            if isinstance(args.get("blocks"), str):
                args["blocks"] = json.loads(args["blocks"])
            out.append(args)
        return out

    def messages(self, since: int = 0) -> list[tuple[str, str, str, float]]:
        """(method, channel, ts, wall-clock time) of every chat.postMessage (the channel and
        ts it answered) and chat.update (the message edited) so far, from the `since`-th on."""
        self._conn.send(("messages", since))
        return self._conn.recv()

    def __enter__(self) -> SlackStub:
        return self

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        self._process.join(timeout=10)


class StubClient(WebClient):
    """The same answers in this process, without HTTP: a WebClient for in-process benchmarks
    (the alert storm) that records the methods it was asked for."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN, base_url="https://slack.invalid/api/")
        self.methods: list[str] = []
        self._numbers = itertools.count(1)

    def calls_to(self, method: str) -> int:
        return self.methods.count(method)

    def api_call(self, api_method: str, *, http_verb: str = "POST", files=None, data=None, params=None, json=None, headers=None, auth=None) -> SlackResponse:  # type: ignore[override]
        args = {**(params or {}), **(data or {}), **(json or {})}
        self.methods.append(api_method)
        body = stub_answer(api_method, args, next(self._numbers), {})
        return SlackResponse(client=self, http_verb=http_verb, api_url=self.base_url + api_method, req_args={}, data=body, headers={}, status_code=200).validate()
