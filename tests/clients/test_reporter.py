"""Reporting writes to the bot's actions API: off the request path, batched, retried with
backoff, spooled to disk through an outage and sent after it, never twice. Against the real
bot over HTTP, behind a front that can fail or lose answers on demand."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from impersonation_kit import ActionReporter, KitConfig
from impersonation_kit.botapi import BotApi
from tests.clients.conftest import BOT_ISSUER, LAUNCH_PATH, PRODUCT, serve
from tests.web.conftest import audit_events


class Front:
    """A WSGI front for the bot: `down` answers 503 without forwarding; `lose` forwards the
    next N requests, then answers 502 as if the bot's answer was lost on the way back."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.down = False
        self.lose = 0
        self.seen = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.seen += 1
            down, lose = self.down, self.lose > 0
            if lose:
                self.lose -= 1
        if down:
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error":"down"}']
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = urllib.request.Request(self.upstream + environ["PATH_INFO"], data=environ["wsgi.input"].read(length) or None, method=environ["REQUEST_METHOD"])
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                request.add_header(key[5:].replace("_", "-").title(), value)
        if environ.get("CONTENT_TYPE"):
            request.add_header("Content-Type", environ["CONTENT_TYPE"])
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        if lose:
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return [b'{"error":"lost"}']
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [body]


@pytest.fixture
def front(bot):
    front = Front(bot.url)
    served = serve(front)
    front.url = served.url
    yield front
    served.server.shutdown()


def reporter_for(url: str, api_key: str, **options) -> ActionReporter:
    config = KitConfig(bot_url=BOT_ISSUER, launch_url=PRODUCT + LAUNCH_PATH, api_key=api_key, secret=b"s" * 32, api_url=url)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.05)
    return ActionReporter(BotApi(config), **options)


def recorded(session_factory, sid: str) -> list[dict]:
    return [json.loads(e.details) for e in audit_events(session_factory) if e.type == "action.recorded" and e.session_id == sid]


def test_reports_reach_the_audit_log_with_their_idempotency_key(bot, api_key, handoff, session_factory):
    sid, _token = handoff()
    reporter = reporter_for(bot.url, api_key)
    keys = [reporter.report(sid, "note.create", f"note/{n}", details={"n": n}) for n in range(5)]
    assert reporter.flush(timeout=30)
    reporter.close()
    rows = recorded(session_factory, sid)
    assert [r["target"] for r in rows] == [f"note/{n}" for n in range(5)]
    assert [r["idempotency_key"] for r in rows] == keys == [r["details"]["write_id"] for r in rows]


def test_a_retry_after_a_lost_answer_makes_no_duplicate(front, api_key, handoff, session_factory):
    sid, _token = handoff()
    front.lose = 2  # the bot records the first two attempts but the kit never hears so
    reporter = reporter_for(front.url, api_key)
    reporter.report(sid, "profile.update", "user/u-bob")
    assert reporter.flush(timeout=30)
    reporter.close()
    assert front.seen == 3 and len(recorded(session_factory, sid)) == 1


def test_an_outage_is_spooled_to_disk_and_sent_after_it_even_by_a_new_process(front, api_key, handoff, session_factory, tmp_path):
    sid, _token = handoff()
    front.down = True
    first = reporter_for(front.url, api_key, spool_dir=tmp_path / "spool", attempts=2, spool_retry_seconds=0.05)
    for n in range(3):
        first.report(sid, "note.create", f"note/{n}")
    # Wait until the batch has given up and lies on disk, then stop this "process".
    for _ in range(500):
        if first.spooled_files() and first._queue.unfinished_tasks == 0:
            break
        threading.Event().wait(0.02)
    first.close()
    assert first.spooled_files() and recorded(session_factory, sid) == []
    front.down = False
    second = reporter_for(front.url, api_key, spool_dir=tmp_path / "spool", spool_retry_seconds=0.05)
    second.start()
    assert second.flush(timeout=30)
    second.close()
    assert [r["target"] for r in recorded(session_factory, sid)] == ["note/0", "note/1", "note/2"]
    assert not list((tmp_path / "spool").iterdir())


def test_report_never_waits_for_the_bot_and_a_full_queue_spills_to_the_spool(api_key, tmp_path):
    release = threading.Event()
    sent: list[str] = []

    class StuckApi(BotApi):
        def call(self, method, path, body=None, headers=None):
            release.wait(30)  # the bot hangs
            sent.append(headers["Idempotency-Key"])
            from impersonation_kit.botapi import HttpAnswer

            return HttpAnswer(201, {})

    config = KitConfig(bot_url=BOT_ISSUER, launch_url=PRODUCT + LAUNCH_PATH, api_key=api_key, secret=b"s" * 32)
    reporter = ActionReporter(StuckApi(config), max_queue=3, batch_size=1, spool_dir=tmp_path / "spool", spool_retry_seconds=0.01)
    keys = [reporter.report("sid", "a.b", f"t/{n}") for n in range(10)]  # returns at once though the bot hangs
    assert len(keys) == 10 and reporter.spooled_files()  # what did not fit went to disk
    release.set()
    assert reporter.flush(timeout=30)
    reporter.close()
    assert sorted(sent) == sorted(keys)  # every one sent, none twice


def test_a_refused_report_is_dropped_not_retried(bot, api_key):
    reporter = reporter_for(bot.url, api_key)
    reporter.report("00000000-0000-4000-8000-000000000000", "note.create", "note/1")  # no such session: 404
    assert reporter.flush(timeout=30)
    reporter.close()
    assert reporter.dropped == 1 and reporter.sent == 0


def test_the_demo_products_writes_are_reported_through_the_middleware(demo, handoff, session_factory, kit):
    from tests.clients.test_session import csrf_of

    sid, token = handoff(scope="read_write")
    agent = demo.test_client()
    agent.post(LAUNCH_PATH, data={"token": token}, base_url=PRODUCT)
    agent.post("/notes", data={"body": "hello", "csrf": csrf_of(agent)}, base_url=PRODUCT)
    agent.post("/logout", data={"csrf": csrf_of(agent)}, base_url=PRODUCT)  # no explicit report: the automatic one
    assert kit.reporter.flush(timeout=30)
    rows = recorded(session_factory, sid)
    assert [(r["action"], r["target"]) for r in rows] == [("note.create", "note/1"), ("http.post", "/logout")]
    assert rows[1]["details"]["status"] == 302
