"""bot/web/background.py: notices leave the request thread and are all delivered, in order."""
from __future__ import annotations

import threading

from bot.web.background import BackgroundSessionNotifier


class SlowRecorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.release = threading.Event()

    def session_started(self, session_id: str) -> None:
        self.release.wait(5)
        if session_id == "boom":
            raise RuntimeError("slack down")
        self.seen.append((session_id, threading.current_thread().name))


def test_notices_run_off_the_calling_thread_in_order_and_survive_failures():
    inner = SlowRecorder()
    notifier = BackgroundSessionNotifier(inner)
    for sid in ("s1", "boom", "s2", "s3"):
        notifier.session_started(sid)  # returns at once although the inner notifier blocks
    assert inner.seen == []
    inner.release.set()
    notifier.shutdown()
    assert [sid for sid, _ in inner.seen] == ["s1", "s2", "s3"]
    assert all(name.startswith("after-response") for _, name in inner.seen)
