"""gunicorn settings for the web process: `gunicorn -c python:bot.web.gunicorn_conf
bot.web.wsgi:app` (the Procfile's `web`); `impersonation-bot serve` / `web` use the same
values. Operators may override any of them with GUNICORN_CMD_ARGS, as gunicorn documents.

Why gthread, 2 workers × 8 threads (4 on SQLite, see `threads`): measured on a 2-core machine (DESIGN.md "Web stack and
speed") this keeps slash-command acks far inside Slack's 3 s while one slow Slack Web API call
holds only one thread, not a whole worker. WEB_CONCURRENCY is the conventional knob (Heroku
sets it from the dyno size).
"""
from __future__ import annotations

import gc
import os
import sys

from bot.config import ConfigError, load_settings


def _stop(message: str) -> None:
    """One line on stderr and exit status 2, as the CLI does for configuration errors."""
    print(f"impersonation-bot: {message}", file=sys.stderr)
    raise SystemExit(2)


def _positive_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip() or str(default)
    if not text.isdigit() or int(text) < 1:
        _stop(f"{name} must be a positive whole number, got {text!r}")
    return int(text)


try:
    _settings = load_settings()
except ConfigError as _error:
    _stop(str(_error))

#: HOST: loopback in dev, every interface elsewhere (bot/config.py); gunicorn's own
#: "Listening at:" line names it at start
bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
workers = _positive_int("WEB_CONCURRENCY", 2)
#: Threads per worker. SQLite lets one transaction write at a time (bot/db/engine.py queues
#: writers on a lock): threads beyond a few only wait there, and while they wait for the GIL
#: the thread that holds the writer lock waits with them. With 4 the link redemption's p99
#: under 20 clients was 98–100 ms against 148–150 ms with 8, in alternating runs of
#: bench/http_bench.py at 20 closed-loop clients; on PostgreSQL, whose writers do not
#: queue on one lock, 8 did better (101–104 against 120–125 ms). `--threads` in
#: GUNICORN_CMD_ARGS overrides either.
SQLITE_THREADS = 4
POSTGRESQL_THREADS = 8
threads = SQLITE_THREADS if _settings.database_url.startswith("sqlite") else POSTGRESQL_THREADS
#: Seconds an idle keep-alive connection stays open (gunicorn's default is 2). Longer than the
#: front door's upstream `keepalive_timeout` (deploy/nginx/impersonation-bot.conf, 4 s), so
#: nginx closes an idle connection before gunicorn does and never sends a request on one that
#: gunicorn is closing (a 502 for a POST; bench/front_door_bench.py saw one). An idle
#: connection waits in the worker's poller, not in a thread.
keepalive = 5
#: gunicorn's "-": the access log goes to stdout, the error log to stderr, with every /l/<token> path, JWT and Slack token redacted
logger_class = "bot.web.logging.RedactingGunicornLogger"
accesslog = "-"
errorlog = "-"
#: the app is built in each worker after the fork (own engine and connection pool)
preload_app = False
#: gunicorn ≥ 25.1 opens a management socket (resize, reload, stop) under $HOME by default;
#: nothing here uses it, and two instances on one host would contend for the same path.
control_socket_disable = True


def on_starting(server: object) -> None:
    """In the master, before any worker forks: check the whole configuration once, so that a
    mistake stops gunicorn with one line instead of every worker failing to boot, and so that
    in dev the signing key is generated once, not raced for by several workers."""
    from bot.wiring import STARTUP_ERRORS, preflight

    try:
        preflight(load_settings())
    except STARTUP_ERRORS as error:
        _stop(str(error))


def post_fork(server: object, worker: object) -> None:
    """In each worker: hand the GIL over more often than CPython's default 5 ms. A request
    thread that holds a database lock (SQLite's writer lock, PostgreSQL's audit-chain head)
    and then waits its turn for the GIL keeps every other writer waiting too; with 8 threads
    per worker the default interval let that wait grow to tens of milliseconds under load
    (bench/http_bench.py)."""
    sys.setswitchinterval(float(os.environ.get("PYTHON_SWITCH_INTERVAL", "0.001")))


def post_worker_init(worker: object) -> None:
    """In each worker, once the app is built: move every object that exists by now (imported
    modules, Bolt's listeners, SQLAlchemy's mappers, Jinja's templates: about 140,000) to
    the permanent generation with `gc.freeze()`, so that the collector's full passes stop
    walking them again and again (Python docs, gc.freeze; Instagram Engineering, "Dismissing
    Python Garbage Collection at Instagram", 2017). A full pass stops every thread of the
    worker while it runs; before this, bench/http_bench.py measured them at 160–220 ms under
    load, and they made most of the redemption's p99. They are now over
    the few thousand objects that requests leave behind."""
    gc.collect()
    gc.freeze()


def worker_exit(server: object, worker: object) -> None:
    """In each worker, as it stops: write the summary of the refusals its throttle left out of
    the audit log in the current window (bot/domain/refusals.py), so a restart loses no count."""
    from bot.web.app import REFUSALS_EXTENSION

    app = getattr(worker, "wsgi", None)
    refusals = getattr(app, "extensions", {}).get(REFUSALS_EXTENSION)
    if refusals is not None:
        refusals.close()


def child_exit(server: object, worker: object) -> None:
    """In the master, when a worker has exited: prometheus-client's multiprocess mode keeps
    live-process gauges per pid, and drops a dead worker's here (its counters stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
