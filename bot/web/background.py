"""Work that follows a response but must not hold a request thread.

Every change that owes Slack messages writes them to the outbox in its own transaction
(bot/domain/outbox.py); sending them at once is only about latency. Sending them on the request
thread made the answer wait for Slack: after a redemption the agent's DM edit kept a gunicorn
thread — and, on SQLite, the writer lock — busy for about two thirds of a redemption's time
under load (docs/benchmarks.md), and a deciding approve click waited for every approver's DM
edit and the agent's link DM, while the clicker waits for the answer. So the listeners, the
landing page and the product API hand the targets their change owed to the one Deliverer
(bot.domain.ports), which in the running app is `BackgroundDeliverer`: one background thread
per process (`AfterResponse`) sends them in order with the outbox's claims
(bot.domain.outbox.InlineDeliverer): whoever claims a row first sends it, never both. If the
process dies before the thread gets to it, the scheduler's outbox job sends it.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence

from flask import Response

from bot.domain.ports import Deliverer

log = logging.getLogger(__name__)

#: how long shutdown() and wait_idle() wait by default: a few Slack round trips per job
IDLE_TIMEOUT_SECONDS = 30.0


class AfterResponse:
    """One daemon thread per process draining a FIFO queue of jobs. Fork-safe: a thread does
    not survive fork (gunicorn forks workers after the app is built), so a process that finds
    itself without its thread starts one. `wait_idle()` lets tests (and shutdown) wait until
    every job handed over so far has run, without sleeping and hoping."""

    def __init__(self, *, name: str = "after-response") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._unfinished = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                if self._pid != os.getpid():
                    # a forked child inherits the parent's queue and counters, not its thread
                    self._queue, self._unfinished = queue.SimpleQueue(), 0
                self._thread = threading.Thread(target=self._drain, args=(self._queue,), name=self._name, daemon=True)
                self._pid = os.getpid()
                self._thread.start()
            self._unfinished += 1
            self._queue.put(job)

    def _drain(self, jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - best effort: the outbox job retries
                log.exception("background job failed; the scheduler's outbox delivery will retry what it owed")
            finally:
                with self._lock:
                    self._unfinished -= 1
                    if self._unfinished <= 0:
                        self._idle.notify_all()

    def wait_idle(self, timeout: float = IDLE_TIMEOUT_SECONDS) -> bool:
        """Block until every job submitted so far has run; False if `timeout` passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: self._unfinished <= 0, timeout=timeout)

    def shutdown(self, timeout: float = IDLE_TIMEOUT_SECONDS) -> None:
        """Let queued jobs finish, then stop the thread (a later submit starts a new one)."""
        with self._lock:
            thread = self._thread if self._pid == os.getpid() else None
            self._thread = None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)


class BackgroundDeliverer:
    """The Deliverer port: the targets one change owed, handed to `inner` (the outbox's
    InlineDeliverer over the Slack courier, bot/wiring.py) on the process's AfterResponse
    thread, in the order given; returns at once."""

    def __init__(self, inner: Deliverer, worker: AfterResponse) -> None:
        self.inner = inner
        self.worker = worker

    def deliver(self, targets: Sequence[str]) -> None:
        owed = tuple(targets)
        if owed:
            self.worker.submit(lambda: self.inner.deliver(owed))

    def wait_idle(self, timeout: float = IDLE_TIMEOUT_SECONDS) -> bool:
        return self.worker.wait_idle(timeout)


def deliver_after(response: Response, deliverer: Deliverer | None, targets: Sequence[str]) -> Response:
    """Hand what a page's change owed to the deliverer once the response has been sent (WSGI
    close()), so a slow hand-over never delays the answer. Without a deliverer (a web app
    built alone, in tests) the rows wait for the scheduler's outbox job. A failure is logged,
    never shown: the change is already committed."""
    owed = tuple(targets)
    if deliverer is not None and owed:
        response.call_on_close(lambda: _deliver(deliverer, owed))
    return response


def _deliver(deliverer: Deliverer, targets: tuple[str, ...]) -> None:
    try:
        deliverer.deliver(targets)
    except Exception:  # noqa: BLE001 - best effort: the outbox job sends what was owed
        log.exception("could not hand over the outbox targets a page's change owed")
