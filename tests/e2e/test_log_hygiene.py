"""Nothing a request carries reaches a log as it was sent: over real HTTP against the whole
bot, with every logger at DEBUG and the process's log filter installed as `serve` installs it
(bot.wiring.configure_logging → install_log_redaction on the root handlers)."""
from __future__ import annotations

import logging
import time

import pytest

from bot.web.logging import install_log_redaction
from tests.slack.signed import slash_command

FORGED = "2026-12-04 09:00:00 INFO bot.web admin USECURITY1 approved everything"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    # Bolt's loggers copy their level from the app's logger when it is built: an operator's
    # DEBUG, as the refused-body line appeared under gunicorn --log-level debug.
    caplog.set_level(logging.DEBUG, logger="slack_bolt.RequestVerification")
    install_log_redaction()  # on caplog's handler too: what the process's handlers write
    return caplog


def _lines(caplog) -> list[str]:
    """Each record as its handler writes it (the filters run before emit)."""
    return caplog.text.splitlines()


def test_an_unsigned_body_cannot_forge_a_log_line(running_bot, logs):
    bot = running_bot
    body = f"command=%2Fimpersonate&text=x\n{FORGED}\r\n{FORGED}"
    reply = bot.http.post(
        f"{bot.url}/slack/events", data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"},
    )
    assert reply.status_code == 401
    assert not any(line.startswith("2026-12-04 09:00:00") for line in _lines(logs))
    assert all("\n" not in r.getMessage() and "\r" not in r.getMessage() for r in logs.records)
    assert FORGED not in logs.text  # Bolt's dump of the raw body is gone altogether
    assert "slack request refused (401): invalid or stale signature" in logs.text


@pytest.mark.parametrize("timestamp", ["12abc", "", "1e9", "-5", "9" * 40, "12 34"])
def test_a_malformed_timestamp_is_a_401_and_logs_nothing_of_the_body(running_bot, logs, timestamp):
    bot = running_bot
    long_type = "A" * 3000
    reply = bot.http.post(
        f"{bot.url}/slack/events", data=b'payload=%7B%22type%22%3A%22' + long_type.encode() + b'%22%7D',
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"},
    )
    assert reply.status_code == 401
    assert reply.json() == {"error": "invalid request"}
    assert "AAAAAAAAAA" not in logs.text
    assert not [r for r in logs.records if r.levelno >= logging.ERROR]


def test_a_genuine_but_stale_request_logs_neither_its_response_url_nor_its_trigger_id(running_bot, logs):
    bot = running_bot
    trigger = "13345224609.738474920.8088930838d88f008e0"
    body = slash_command("acme", trigger_id=trigger)
    assert bot.send(body, timestamp=int(time.time()) - 400).status == 401
    assert bot.send(body, timestamp=int(time.time()) - 400, secret="not-the-secret").status == 401
    assert trigger not in logs.text and "secret-response-url" not in logs.text
    assert "hooks.slack" not in logs.text


def test_an_accepted_request_logs_its_route_not_its_secrets(running_bot, logs):
    bot = running_bot
    trigger = bot.fake.issue_trigger_id()
    assert bot.send(slash_command("acme", trigger_id=trigger)).status == 200
    assert "slack slash_command /impersonate user=UAGENT1" in logs.text
    assert trigger not in logs.text and "secret-response-url" not in logs.text
