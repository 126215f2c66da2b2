"""bot/web/background.py: what changes owed leaves the request thread and is all delivered, in order."""
from __future__ import annotations

import threading

from flask import Flask

from bot.web.background import AfterResponse, BackgroundDeliverer, deliver_after


class SlowRecorder:
    """A Deliverer that blocks until released, and fails for the target "boom"."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, ...], str]] = []
        self.release = threading.Event()

    def deliver(self, targets) -> None:
        self.release.wait(5)
        if "boom" in targets:
            raise RuntimeError("database is down")
        self.seen.append((tuple(targets), threading.current_thread().name))


def test_deliveries_run_off_the_calling_thread_in_order_and_survive_failures():
    inner = SlowRecorder()
    worker = AfterResponse()
    deliverer = BackgroundDeliverer(inner, worker)
    for targets in (["s1"], ["boom"], ["s2", "s2b"], [], ["s3"]):
        deliverer.deliver(targets)  # returns at once although the inner deliverer blocks
    assert inner.seen == []
    inner.release.set()
    worker.shutdown()
    # one change's failure does not stop the next change's delivery; nothing owed, no job
    assert [targets for targets, _ in inner.seen] == [("s1",), ("s2", "s2b"), ("s3",)]
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


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.delivered: list[tuple[str, ...]] = []
        self.fail = fail

    def deliver(self, targets) -> None:
        if self.fail:
            raise RuntimeError("database is down")
        self.delivered.append(tuple(targets))


def test_a_page_hands_its_targets_over_only_once_its_response_is_closed():
    recorder = Recorder()
    app = Flask(__name__)
    with app.test_request_context():
        response = deliver_after(app.make_response("ok"), recorder, ["agent:r1:U1", "feed:r1:security"])
        assert recorder.delivered == []  # the response is not sent yet
        response.close()
    assert recorder.delivered == [("agent:r1:U1", "feed:r1:security")]


def test_nothing_owed_or_no_deliverer_hands_nothing_over_and_a_failure_is_only_logged(caplog):
    app = Flask(__name__)
    quiet, broken = Recorder(), Recorder(fail=True)
    with app.test_request_context():
        deliver_after(app.make_response("ok"), quiet, []).close()
        deliver_after(app.make_response("ok"), None, ["agent:r1:U1"]).close()
        deliver_after(app.make_response("ok"), broken, ["agent:r1:U1"]).close()  # does not raise
    assert quiet.delivered == []
    assert "RuntimeError" in caplog.text
