"""Reporting writes to the bot's actions API without ever slowing a response.

`report()` only puts the action on a bounded in-memory queue (or, when the queue is full,
appends it to the spool on disk) and returns. One background thread takes batches off the
queue and POSTs them; a transient failure (network, 408, 429, 5xx) is retried with capped
exponential backoff and full jitter (AWS Architecture Blog, "Exponential Backoff And
Jitter"); after `attempts` failures the rest of the batch is spooled to disk and sent again
later, oldest first, once the bot answers. Every action carries an idempotency key made once,
when it was reported, and kept through retries and the spool (the `Idempotency-Key` header,
draft-ietf-httpapi-idempotency-key-header, also written as `details.write_id`): the bot records
a key once per session, so a retry after a lost answer makes no duplicate. A 4xx other than
408/429 cannot succeed by retrying; it is logged and dropped.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from impersonation_kit.botapi import BotApi, BotUnavailable

log = logging.getLogger("impersonation_kit")
RETRYABLE = {408, 425, 429}


class ActionReporter:
    def __init__(
        self,
        api: BotApi,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        max_queue: int = 10_000,
        batch_size: int = 50,
        attempts: int = 4,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        spool_retry_seconds: float = 5.0,
    ) -> None:
        self._api = api
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._spool = Path(spool_dir) if spool_dir is not None else None
        if self._spool is not None:
            self._spool.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._attempts = attempts
        self._backoff = (backoff_base, backoff_cap)
        self._spool_retry = spool_retry_seconds
        self._spool_lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0

    # --- the request path ---------------------------------------------------------------

    def report(self, session_id: str, action: str, target: str, *, details: dict[str, Any] | None = None, at: datetime | None = None) -> str:
        """Queue one write for the bot; returns its idempotency key. Never blocks."""
        key = str(uuid.uuid4())
        item = {
            "sid": session_id,
            "key": key,
            "body": {
                "action": action,
                "target": target[:256],
                "at": (at or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "details": {**(details or {}), "write_id": key},
            },
        }
        self._ensure_started()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if self._spool is None:
                self.dropped += 1
                log.error("impersonation kit: action queue full and no spool; dropped %s for session %s", action, session_id)
            else:
                self._spool_items([item])
        return key

    # --- lifecycle ------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._spool_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._stop.clear()
                    self._thread = threading.Thread(target=self._run, name="impersonation-kit-reporter", daemon=True)
                    self._thread.start()

    def start(self) -> None:
        """Start sending (also what `report` does); call at start-up to send a spool left by
        an earlier process."""
        self._ensure_started()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue and the spool are empty (tests, shutdown). True if they are."""
        self._ensure_started()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and not self.spooled_files():
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def spooled_files(self) -> list[Path]:
        if self._spool is None:
            return []
        return sorted(self._spool.glob("*.json"))

    # --- the background thread ------------------------------------------------------------

    def _run(self) -> None:
        next_spool_try = 0.0
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                first = None
            if first is not None:
                batch = [first]
                while len(batch) < self._batch_size:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    rest = self._send_batch(batch, attempts=self._attempts)
                    if rest:
                        self._spool_items(rest)
                        next_spool_try = time.monotonic() + self._spool_retry
                finally:
                    for _ in batch:
                        self._queue.task_done()
            elif time.monotonic() >= next_spool_try and self.spooled_files():
                if not self._drain_spool():
                    next_spool_try = time.monotonic() + self._spool_retry

    def _send_batch(self, batch: list[dict[str, Any]], *, attempts: int) -> list[dict[str, Any]]:
        """Send in order; return what is left unsent after `attempts` transient failures."""
        for index, item in enumerate(batch):
            for attempt in range(attempts):
                outcome = self._send(item)
                if outcome != "retry":
                    break
                if attempt + 1 < attempts and not self._stop.is_set():
                    base, cap = self._backoff
                    time.sleep(random.uniform(0, min(cap, base * 2**attempt)))
            else:
                return batch[index:]
        return []

    def _send(self, item: dict[str, Any]) -> str:
        try:
            answer = self._api.call(
                "POST", f"/api/v1/sessions/{quote(item['sid'], safe='')}/actions", body=item["body"], headers={"Idempotency-Key": item["key"]}
            )
        except BotUnavailable:
            return "retry"
        if 200 <= answer.status < 300:
            self.sent += 1
            return "sent"
        if answer.status in RETRYABLE or answer.status >= 500:
            return "retry"
        self.dropped += 1
        log.error(
            "impersonation kit: the bot refused action %s of session %s: %s %s",
            item["body"]["action"], item["sid"], answer.status, answer.body.get("error"),
        )
        return "dropped"

    # --- the spool --------------------------------------------------------------------------

    def _spool_items(self, items: list[dict[str, Any]]) -> None:
        if self._spool is None:
            self.dropped += len(items)
            log.error("impersonation kit: the bot is unreachable and there is no spool; dropped %d actions", len(items))
            return
        with self._spool_lock:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
            tmp = self._spool / f"{name}.tmp"
            tmp.write_text(json.dumps(items))
            os.replace(tmp, self._spool / f"{name}.json")  # atomic: a crash leaves no half file
        log.warning("impersonation kit: spooled %d actions to %s", len(items), self._spool)

    def _drain_spool(self) -> bool:
        """Send spooled files oldest first; False at the first one the bot will not take yet."""
        for path in self.spooled_files():
            try:
                items = json.loads(path.read_text())
            except (OSError, ValueError):
                log.error("impersonation kit: unreadable spool file %s set aside as .bad", path)
                os.replace(path, path.with_suffix(".bad"))
                continue
            rest = self._send_batch(items, attempts=1)
            with self._spool_lock:
                if rest:
                    if len(rest) != len(items):
                        tmp = path.with_suffix(".tmp")
                        tmp.write_text(json.dumps(rest))
                        os.replace(tmp, path)
                    return False
                path.unlink()
        return True
