"""Work that follows a response but must not hold a request thread.

After a redemption the agent's DM is edited ("Session active until …"). The edit is already
owed in the outbox (written in the redemption's transaction), so sending it now is only about
latency; doing it on the gunicorn request thread (WSGI close) kept that thread — and, on
SQLite, the writer lock — busy for about two thirds of a redemption's time under load
(docs/benchmarks.md). One background thread per process sends these in order instead; if the
process dies first, the scheduler's outbox delivery sends them.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from bot.domain.ports import SessionNotifier

log = logging.getLogger(__name__)


class BackgroundSessionNotifier:
    """A SessionNotifier that hands each notice to one per-process background thread."""

    def __init__(self, inner: SessionNotifier) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():  # threads do not survive fork
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="after-response")
                self._pid = os.getpid()
            return self._executor

    def session_started(self, session_id: str) -> None:
        self._pool().submit(self._run, session_id)

    def _run(self, session_id: str) -> None:
        try:
            self._inner.session_started(session_id)
        except Exception:  # noqa: BLE001 - best effort: the outbox delivery job retries
            log.exception("could not tell the agent that session %s started", session_id)

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
