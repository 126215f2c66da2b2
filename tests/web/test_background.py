"""bot/web/background.py: notices leave the request thread and are all delivered, in order."""
from __future__ import annotations

import threading

from bot.web.background import AfterResponse, BackgroundSessionNotifier


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


def test_wait_idle_returns_once_every_job_handed_over_has_run():
    worker = AfterResponse(name="after-response-test")
    release = threading.Event()
    done: list[int] = []
    worker.submit(lambda: (release.wait(5), done.append(1)))
    worker.submit(lambda: done.append(2))
    assert worker.wait_idle(timeout=0.01) is False  # the first job is still blocked
    release.set()
    assert worker.wait_idle() is True and done == [1, 2]
    worker.shutdown()
    # a job handed over after a shutdown starts a fresh thread
    worker.submit(lambda: done.append(3))
    assert worker.wait_idle() is True and done == [1, 2, 3]
    worker.shutdown()


def test_the_deliverer_sends_each_change_s_targets_in_order_off_the_calling_thread(monkeypatch):
    from bot.web import background

    seen: list[tuple[list[str], str]] = []

    def fake_deliver_now(ctx, client, targets):
        if targets == ["boom"]:
            raise RuntimeError("database is down")
        seen.append((list(targets), threading.current_thread().name))

    monkeypatch.setattr("bot.slack.courier.deliver_now", fake_deliver_now)
    worker = AfterResponse(name="after-response-test")
    deliverer = background.BackgroundDeliverer(ctx=None, client=None, worker=worker)
    deliverer.deliver(["boom"])
    deliverer.deliver(["agent:r1:U1", "feed:r1:security", "agent:r1:U1"])
    deliverer.deliver([])
    assert deliverer.wait_idle()
    # one change's failure does not stop the next change's delivery; a target named twice
    # is delivered once, in the order first named (rows within it: outbox.deliver_due)
    assert [targets for targets, _ in seen] == [["agent:r1:U1", "feed:r1:security"]]
    assert all(name == "after-response-test" for _, name in seen)
    worker.shutdown()
