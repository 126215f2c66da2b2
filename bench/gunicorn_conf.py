"""The bot's gunicorn configuration (bot/web/gunicorn_conf.py), unchanged, plus one probe for
the benchmark: every garbage-collector pass in a worker that stops it for 10 ms or more is
appended, with its generation and wall-clock start, to the file named by BENCH_GC_LOG. The
bench serves the bot and the floor with this, so a slow request can be matched against the
collector's pauses in the same process at the same moment."""
from __future__ import annotations

import gc
import os
import time

from bot.web import gunicorn_conf as _base
from bot.web.gunicorn_conf import *  # noqa: F403 - the production settings and hooks, as they are

#: pauses shorter than this are not written (a young-generation pass takes well under 1 ms)
LOGGED_PAUSE_SECONDS = 0.010


def post_worker_init(worker: object) -> None:
    _base.post_worker_init(worker)
    path = os.environ.get("BENCH_GC_LOG")
    if not path:
        return
    started: list[float] = [0.0, 0.0]

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            started[0], started[1] = time.perf_counter(), time.time()
            return
        paused = time.perf_counter() - started[0]
        if paused >= LOGGED_PAUSE_SECONDS:
            with open(path, "a") as log:
                log.write(f"{os.getpid()} {info['generation']} {started[1]:.4f} {paused:.4f}\n")

    gc.callbacks.append(record)


def pre_request(worker: object, req: object) -> None:
    req.bench_started = (time.time(), time.perf_counter())  # type: ignore[attr-defined]


def post_request(worker: object, req: object, environ: dict, resp: object) -> None:
    """With BENCH_REQUEST_LOG set, append for every request that carries an X-Bench-Id header
    (bench/http_bench.py): the worker's pid, the id, when the app got it (wall clock, once
    gunicorn had read its head) and the seconds until gunicorn had written the answer. The
    client's time minus this is what the request waited outside the app: in the kernel's
    accept queue, the worker's poller, its thread pool's queue."""
    path = os.environ.get("BENCH_REQUEST_LOG")
    started = getattr(req, "bench_started", None)
    ident = next((value for name, value in getattr(req, "headers", ()) if name == "X-BENCH-ID"), None)
    if path and started and ident:
        with open(path, "a") as log:
            log.write(f"{os.getpid()} {ident} {started[0]:.4f} {time.perf_counter() - started[1]:.4f}\n")
