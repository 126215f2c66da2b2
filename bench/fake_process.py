"""The fake Slack Web API in a process of its own, so that its CPU (and GIL) is not shared
with the benchmark's clients — as the real Slack would not be. The bench talks to it through
a pipe: trigger ids, recorded calls and contract violations."""
from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from typing import Any


def _serve(conn, users) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from tests.fakes.slack_api import FakeSlack

    with FakeSlack(users=users) as fake:
        conn.send(("ready", fake.url, fake.bot_token))
        lock = threading.Lock()

        def handle(command: str, arg: Any) -> Any:
            if command == "trigger":
                return fake.issue_trigger_id()
            if command == "calls":
                return [{"args": c.args, "response": c.response} for c in fake.calls_to(arg)]
            if command == "violations":
                return [str(v) for v in fake.violations]
            raise ValueError(command)

        while True:
            try:
                command, arg = conn.recv()
            except EOFError:
                return
            if command == "stop":
                return
            with lock:
                conn.send(handle(command, arg))


class FakeSlackProcess:
    def __init__(self, users) -> None:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, users), daemon=True)
        self._process.start()
        tag, self.url, self.bot_token = self._conn.recv()
        assert tag == "ready"
        self._lock = threading.Lock()

    def _ask(self, command: str, arg: Any = None) -> Any:
        with self._lock:
            self._conn.send((command, arg))
            return self._conn.recv()

    def issue_trigger_id(self) -> str:
        return self._ask("trigger")

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return self._ask("calls", method)

    @property
    def violations(self) -> list[str]:
        return self._ask("violations")

    def __enter__(self) -> FakeSlackProcess:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._conn.send(("stop", None))
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
