"""Process logging (bot/wiring.py configure_logging, bot/web/logging.py): at INFO a running bot
says what changed and what failed, not that its jobs ran idle; LOG_FORMAT=json gives one JSON
object per line, redacted like the plain format."""
from __future__ import annotations

import io
import json
import logging
import threading

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.triggers.interval import IntervalTrigger

from bot import wiring
from bot.config import ConfigError, load_settings
from bot.jobs import scheduler as jobs
from bot.jobs import work
from bot.web.logging import RedactSecretsFilter, json_formatter
from tests.fakes.courier import FakeCourier


@pytest.fixture
def restore_logger_levels():
    names = [*wiring.QUIET_LOGGERS, "slack_bolt.App"]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _run_until(scheduler, executed: int) -> list[int]:
    seen: list[int] = []
    done = threading.Event()

    def count(event):
        seen.append(event.code)
        if len(seen) >= executed:
            done.set()

    scheduler.add_listener(count, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    jobs.start(scheduler)
    try:
        assert done.wait(60), "the scheduler never ran its jobs"
    finally:
        jobs.stop(scheduler)
    return seen


def test_idle_job_runs_log_nothing_at_info(ctx, caplog, restore_logger_levels):
    wiring.configure_logging(load_settings({}))
    caplog.set_level(logging.INFO)
    ctx.courier = FakeCourier()
    scheduler = jobs.background_scheduler(
        ctx, [jobs.ScheduledJob("outbox.deliver", work.deliver_outbox, IntervalTrigger(seconds=0.05))]
    )
    assert _run_until(scheduler, executed=3) == [EVENT_JOB_EXECUTED] * 3
    lines = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    # one line when the scheduler starts and one when it stops; nothing per run or per job added
    assert lines == [
        ("bot.jobs.scheduler", "scheduler started: 1 jobs (outbox.deliver)"),
        ("bot.jobs.scheduler", "scheduler stopped"),
    ]


def test_a_failing_job_is_still_logged(ctx, caplog, restore_logger_levels):
    wiring.configure_logging(load_settings({}))
    caplog.set_level(logging.INFO)

    def broken(_ctx):
        raise RuntimeError("the database went away")

    scheduler = jobs.background_scheduler(ctx, [jobs.ScheduledJob("broken", broken, IntervalTrigger(seconds=0.05))])
    _run_until(scheduler, executed=1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and errors[0].name.startswith("apscheduler.executors") and "broken" in errors[0].getMessage()


def test_bolt_does_not_warn_that_the_token_it_was_given_is_unused(ctx, caplog, monkeypatch, restore_logger_levels):
    from slack_sdk import WebClient

    from bot.slack.app import build_slack_app
    from tests.fakes.slack_api import FakeSlack

    caplog.set_level(logging.INFO)
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.bot_token)  # as in production: Bolt reads it too
        for _ in range(2):
            build_slack_app(ctx, client=WebClient(token=fake.bot_token, base_url=fake.url), signing_secret="s")
    assert [r.getMessage() for r in caplog.records if r.name == "slack_bolt.App"] == []


def test_json_lines_are_one_object_per_record_and_redacted():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.json_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("delivery %s failed for %s", 7, "/l/secret-token-123\nforged line")
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "tests.json_lines"
    assert record["message"] == "delivery 7 failed for /l/<redacted>\\nforged line"  # one line, escaped
    assert record["time"].endswith("Z") and "T" in record["time"]


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_bad_log_setting_stops_start_up_with_one_line(name, value):
    with pytest.raises(ConfigError) as refused:
        load_settings({name: value})
    assert str(refused.value).startswith(f"{name} must be one of") and "\n" not in str(refused.value)
