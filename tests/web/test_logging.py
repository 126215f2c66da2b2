"""Link tokens (and hand-off JWTs, Slack tokens) never reach a log line."""
from __future__ import annotations

import http.client
import logging
import sys
import threading
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from gunicorn.config import Config
from sqlalchemy import select
from werkzeug.serving import make_server

from bot.db.models import AuditEvent
from bot.web.app import create_web_app
from bot.web.logging import RedactingGunicornLogger, RedactSecretsFilter, escape_controls, install_log_redaction, redact
from tests.web.conftest import csrf_proof, parse_page

TOKEN = "dGhpcy1pcy1hLWxpbmstdG9rZW4tb2YtNDMtY2hhcnM"
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1LWJvYiJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"GET /l/{TOKEN} HTTP/1.1", "GET /l/<redacted> HTTP/1.1"),
        (f"https://bot.test/l/{TOKEN}?x=1", "https://bot.test/l/<redacted>?x=1"),
        (f'"POST /l/{TOKEN}" 200', '"POST /l/<redacted>" 200'),
        (f"/l%2F{TOKEN}", "/l/<redacted>"),
        ("/l/truncated-tok", "/l/<redacted>"),
        (f"token={JWT}", "token=<redacted-jwt>"),
        ("auth xoxb-1234-5678-abcdef and xapp-1-A1-99", "auth <redacted-slack-token> and <redacted-slack-token>"),
        ("GET /healthz HTTP/1.1", "GET /healthz HTTP/1.1"),
        ("/login /l/", "/login /l/"),
        # Slack interactions' bearer credentials: response URLs and trigger ids
        ("posting to https://hooks.slack.com/commands/T1/123/AbCd", "posting to <redacted>"),
        ("url=https%3A%2F%2Fhooks.slack.com%2Factions%2FT1%2F1%2Fx&a=1", "url=<redacted>&a=1"),
        ('{"response_url": "https://example.invalid/r", "trigger_id": "1.2.x"}', '{"response_url": "<redacted>", "trigger_id": "<redacted>"}'),
        ("trigger_id=abc&response_url=xyz&text=hi", "trigger_id=<redacted>&response_url=<redacted>&text=hi"),
        ('payload=%7B%22trigger_id%22%3A%221337.5.t%22%2C%22x%22%3A1%7D', 'payload=%7B%22trigger_id%22%3A%22<redacted>%22%2C%22x%22%3A1%7D'),
        ("opened 13345224609.738474920.8088930838d88f008e0 now", "opened <redacted> now"),
        ("version 1.2.3 took 3.14159 s", "version 1.2.3 took 3.14159 s"),
        # Sign in with Slack's return: the code (a credential until exchanged) and the state
        ("GET /l/oidc/callback?code=4724.46.232b&state=Ksh0b_p-u HTTP/1.1", "GET /l/<redacted>/callback?code=<redacted>&state=<redacted> HTTP/1.1"),
        ("GET /l/oidc/callback?state=abc&code=def", "GET /l/<redacted>/callback?state=<redacted>&code=<redacted>"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("one\ntwo", "one\\ntwo"),
        ("a\r\nb", "a\\r\\nb"),
        ("bell\x07 esc\x1b[31m del\x7f", "bell\\x07 esc\\x1b[31m del\\x7f"),
        ("line\u2028sep\u2029para\x85nel", "line\\u2028sep\\u2029para\\x85nel"),
        ("plain text, ünïcode 😀", "plain text, ünïcode 😀"),
    ],
)
def test_escape_controls_keeps_every_record_on_one_line(text, expected):
    assert escape_controls(text) == expected


def test_the_filter_puts_a_message_with_line_breaks_on_one_line():
    record = _record("refused %s", ("x\n2026-12-04 INFO forged",))
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == "refused x\\n2026-12-04 INFO forged"


def _record(msg, args=(), exc_info=None):
    return logging.LogRecord("test", logging.INFO, __file__, 1, msg, args, exc_info)


def test_filter_redacts_message_arguments_and_traceback():
    record = _record('"%s" %s', (f"GET /l/{TOKEN} HTTP/1.1", 200))
    assert RedactSecretsFilter().filter(record) is True
    assert record.getMessage() == '"GET /l/<redacted> HTTP/1.1" 200'

    try:
        raise RuntimeError(f"failed on /l/{TOKEN}")
    except RuntimeError:
        record = _record("boom", exc_info=sys.exc_info())
    RedactSecretsFilter().filter(record)
    assert TOKEN not in logging.Formatter().format(record)
    assert "/l/<redacted>" in record.exc_text


def test_filter_leaves_clean_records_untouched():
    record = _record("user %s did %d things", ("UAGENT1", 3))
    RedactSecretsFilter().filter(record)
    assert (record.msg, record.args) == ("user %s did %d things", ("UAGENT1", 3))


def test_install_is_idempotent():
    logger = logging.getLogger("tests.web.install")
    install_log_redaction([logger], root_handlers=False)
    install_log_redaction([logger], root_handlers=False)
    assert sum(isinstance(f, RedactSecretsFilter) for f in logger.filters) == 1


# --- gunicorn ------------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def gunicorn_logger():
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s %(U)s "%(f)s" %({raw_uri}e)s')
    logger = RedactingGunicornLogger(cfg)
    collected = Collect()
    logger.access_log.addHandler(collected)
    logger.error_log.addHandler(collected)
    yield logger, collected
    for log in (logger.access_log, logger.error_log):
        for handler in list(log.handlers):
            log.removeHandler(handler)


def test_gunicorn_access_and_error_logs_are_redacted(gunicorn_logger):
    logger, collected = gunicorn_logger
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/l/{TOKEN}",
        "PATH_INFO": f"/l/{TOKEN}",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_REFERER": f"https://bot.test/l/{TOKEN}",
        "raw_uri": f"/l/{TOKEN}",
    }
    response = SimpleNamespace(status="200 OK", headers=[("Content-Type", "text/html")], sent=10)
    request = SimpleNamespace(headers=[("REFERER", f"https://bot.test/l/{TOKEN}")])

    logger.access(response, request, environ, timedelta(milliseconds=3))
    logger.exception("Error handling request %s", f"/l/{TOKEN}")

    access_line, error_line = collected.lines
    assert access_line == (
        '203.0.113.9 "GET /l/<redacted> HTTP/1.1" 200 /l/<redacted> "https://bot.test/l/<redacted>" /l/<redacted>'
    )
    assert error_line.startswith("Error handling request /l/<redacted>")
    assert TOKEN not in "".join(collected.lines)


# --- a real redemption, logged at DEBUG ------------------------------------------------


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _request(port, method, path, *, body=None, cookie=None):
    # http.client, not requests: urllib3 would log the URL itself at DEBUG, client side.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if cookie:
        headers["Cookie"] = cookie
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    result = response.status, response.getheader("Set-Cookie"), response.read().decode()
    connection.close()
    return result


def test_a_full_redemption_logs_no_secret(web_app, token, session_factory, caplog):
    caplog.set_level(logging.DEBUG)
    server, thread = _serve(web_app)
    try:
        path = f"/l/{token}"
        status, set_cookie, page = _request(server.port, "GET", path)
        assert status == 200
        cookie = set_cookie.split(";", 1)[0]
        body = urlencode({"csrf": csrf_proof(page)})
        assert _request(server.port, "POST", path, body=urlencode({"csrf": "wrong"}), cookie=cookie)[0] == 403
        status, _, redeemed = _request(server.port, "POST", path, body=body, cookie=cookie)
        assert status == 200
        assert _request(server.port, "POST", path, body=body, cookie=cookie)[0] == 409
    finally:
        server.shutdown()
        thread.join(timeout=30)

    handoff = parse_page(redeemed).forms[0].inputs["token"][1]
    messages = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("/l/<redacted>" in m for m in messages)  # the request log ran, redacted
    assert not [m for m in messages if token in m or handoff in m]

    with session_factory() as db:
        events = db.execute(select(AuditEvent)).scalars().all()
    types = {e.type for e in events}
    assert {"link.issued", "link.csrf_refused", "session.redeemed", "link.replay_refused"} <= types
    for event in events:
        row = " ".join(str(getattr(event, c.key)) for c in AuditEvent.__table__.columns)
        assert token not in row and handoff not in row


def test_an_unhandled_error_logs_the_path_redacted(ctx, csrf_secret, token, caplog):
    def no_database():
        raise ConnectionError("database down")

    app = create_web_app(replace(ctx, sessions=no_database), csrf_secret=csrf_secret)
    with caplog.at_level(logging.DEBUG):
        assert app.test_client().get(f"/l/{token}").status_code == 500
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Exception on")]
    assert record.getMessage() == "Exception on /l/<redacted> [GET]"
    assert all(token not in r.getMessage() + (r.exc_text or "") for r in caplog.records)
