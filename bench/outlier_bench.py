"""Slow requests under saturation, and the machine's share: `./scripts/bench --only outliers`.

At 20 closed-loop connections the floor and the bot's ack both showed a few requests of
600–900 ms in some runs and none in others, with the same code and load. This suite runs the
floor and the ack at 20 clients (bench/http_bench.py: same servers, stand-in, collector log,
stall probe, server-side request times), BENCH_ROUNDS (3) times alternately with the bench's
session at autogroup nice BENCH_SESSION_NICE (-10) and at 0, the order reversed every other
round. Linux shares the CPUs between sessions first and between a session's threads only
within its share (sched(7), "The autogroup feature"), and on this shared machine every
engineer's shell is a session: at nice 0 the bench (servers, client, stand-in) gets about one
session's share of the 2 cores; at -10 it gets what it asks for. What changes between the two
is the machine's doing, not the app's. Setting the nice needs root (CAP_SYS_NICE); without it
the suite runs at 0 only, and says so.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from bench.http_bench import ACK, FLOOR, ROUNDS, SLOW_MS, Bench, Run, _explain, _run_clients, outliers, quantile, served

NICE = int(os.environ.get("BENCH_SESSION_NICE", "-10"))
CLIENTS = 20


def set_session_nice(value: int) -> bool:
    """Give this process's autogroup (this session: the bench, its servers, client and
    stand-in) this nice; False if the kernel refused."""
    try:
        Path("/proc/self/autogroup").write_text(str(value))
    except OSError:
        return False
    return True


def session_share_check(bench: Bench, nice: int, count: int) -> list[Run]:
    """The floor and the ack at CLIENTS, ROUNDS times alternately at autogroup nice `nice` and
    at 0 (the order reversed every other round)."""
    runs = []
    levels = (0, nice) if nice and set_session_nice(0) else (0,)
    try:
        for round_ in range(1, ROUNDS + 1):
            for value in levels if round_ % 2 else tuple(reversed(levels)):
                set_session_nice(value)
                for what, server in ((FLOOR, bench.floor), (ACK, bench.bot)):
                    run = _run_clients(what, bench.ack_requests(count), clients=CLIENTS, round_=round_, server=server)
                    run.session_nice = value
                    _explain(run, server, bench.stall_log)
                    runs.append(run)
                    print(
                        f"  [{bench.backend} round {round_}, session nice {value}] {what}: p99 {quantile(run.seconds, .99):.1f} ms, "
                        f"max {max(run.seconds) * 1000:.0f} ms, {len(run.slow)} over {SLOW_MS:.0f} ms; "
                        f"the session had {run.sessions.own_cores if run.sessions else 0:.2f} cores",
                        flush=True,
                    )
    finally:
        if len(levels) > 1:
            set_session_nice(0)
    return runs


def render(results: dict[str, list[Run]], *, count: int) -> str:
    levels = sorted({r.session_nice for runs in results.values() for r in runs}, reverse=True)
    lines = [
        "## Slow requests under saturation and the machine's share (`bench/outlier_bench.py`)",
        "",
        f"The floor and the `/impersonate` ack at {CLIENTS} closed-loop clients ({count} requests per run), {ROUNDS} rounds, "
        + (
            f"each alternately with the bench's session at autogroup nice {NICE} and at 0 (the order reversed every other round). "
            if len(levels) > 1
            else "with the bench's session at autogroup nice 0 only (the kernel refused to change it). "
        )
        + "Linux shares the CPUs between sessions first (sched(7), \"The autogroup feature\"), and every engineer's shell on "
        "this 2-core machine is a session: the same code and load, with only the CPU the scheduler gives the bench changed. "
        "*Web waiting for a CPU*: the web threads' time runnable without a CPU (/proc schedstat); the *bench's session*: the "
        "cores its servers, client and stand-in used; *other busy sessions*: sessions that used 0.1 core or more meanwhile.",
        "",
        f"| backend | path | session nice | runs | runs with none over {SLOW_MS:.0f} ms | requests over {SLOW_MS:.0f} ms | p50 ms | p99 ms "
        "| max ms per run | web CPU ms/request | web waiting for a CPU, ms/request | bench's session, cores per run | other busy sessions per run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, runs in results.items():
        for what in (FLOOR, ACK):
            for nice in levels:
                mine = [r for r in runs if r.what == what and r.session_nice == nice]
                if not mine:
                    continue
                pooled = [s for r in mine for s in r.seconds]
                lines.append(
                    f"| {backend} | {what} | {nice} | {len(mine)} | {sum(1 for r in mine if not r.slow)} | {sum(len(r.slow) for r in mine)} | "
                    f"{quantile(pooled, .5):.1f} | {quantile(pooled, .99):.1f} | {' / '.join(f'{max(r.seconds) * 1000:.0f}' for r in mine)} | "
                    f"{statistics.median(r.web_cpu_ms for r in mine):.2f} | {statistics.median(r.web_wait_ms for r in mine):.2f} | "
                    f"{' / '.join(f'{r.sessions.own_cores:.2f}' if r.sessions else '–' for r in mine)} | "
                    f"{' / '.join(str(r.sessions.busy_others) if r.sessions else '–' for r in mine)} |"
                )
    lines.append("")
    for nice in levels:
        table = outliers({backend: [r for r in runs if r.session_nice == nice] for backend, runs in results.items()})
        table[0] = f"### Requests over {SLOW_MS:.0f} ms at session nice {nice}, and what they overlapped"
        lines += table if nice == levels[0] else [table[0], "", *table[4:]]
    return "\n".join(lines) + "\n"


def run(*, backends: list[str], count: int) -> str:
    results = {}
    for backend in backends:
        print(f"[outliers] {backend} …", flush=True)
        with served(backend, count=count, submissions=0) as bench:
            results[backend] = session_share_check(bench, NICE, count)
    return render(results, count=count)
