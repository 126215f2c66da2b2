"""Open-loop load: the three hot paths mixed, arriving as a Poisson process at fixed offered
rates, each rate for a fixed time: `./scripts/bench --only openloop`.

Closed-loop clients (bench/http_bench.py) send their next request only once the previous one
was answered, so they measure saturation, and a slow server receives less load exactly while
it is slow. Slack and people do not wait for each other: here requests are sent at moments
drawn in advance (bench/loadgen.py), answered or not, and each latency runs from its
scheduled moment to the answer's last byte, so every queue shows in it (coordinated omission).

Each rate (BENCH_OPENLOOP_RATES, requests per second, default 10,25,50,100) runs for
BENCH_OPENLOOP_SECONDS (30) with the paths mixed evenly: the `/impersonate` ack, the link
redemption (POST) and the approve click, prepared through the app as bench/http_bench.py
prepares them (submissions, link DMs, landing pages, approvers' DMs; not timed). The floor
(bench/floor_app.py: a bare Bolt + Flask app that acks after one `views.open`) receives the
same arrival times, all acks, beside it in the same round; floor and bot alternate (the order
reversed every other round) and so do the rates (ascending, then descending), over
BENCH_OPENLOOP_ROUNDS (3) rounds. Servers, Slack stand-in, stall probe and collector log are
bench/http_bench.py's.

CPU per answered request is measured per component from /proc (bench/cpu.py) from the first
request until the outbox is drained (the messages a request owes are part of its cost): the
web server (gunicorn master and workers), its PostgreSQL backends (by application_name), the
Slack stand-in and the load generator's thread; and what every other process of this shared
machine took meanwhile.
"""
from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.cpu import CpuMeter, Sessions, autogroup_seconds, run_queue_seconds
from bench.http_bench import ACK, APPROVE, FLOOR, PATHS, REDEEM, REQUEST_ID, SLOW_MS, Bench, Slow, _drain, overlapping, quantile, served
from bench.loadgen import LoadRun, Request, mixed_kinds, poisson_offsets, run_open_loop

RATES = tuple(float(r) for r in os.environ.get("BENCH_OPENLOOP_RATES", "10,25,50,100").split(",") if r)
SECONDS = float(os.environ.get("BENCH_OPENLOOP_SECONDS", "30"))
ROUNDS = int(os.environ.get("BENCH_OPENLOOP_ROUNDS", "3"))
#: the paths in equal parts
MIX = {ACK: 1.0, REDEEM: 1.0, APPROVE: 1.0}
#: every path's p99 at this offered rate, on each database
GOAL_RATE, GOAL_P99_MS = 50.0, 100.0
#: the knee: the offered rate at which a path's p99 passes this
KNEE_MS = SLOW_MS
#: a request not answered within this counts as failed (Slack itself gives up after 3 s)
TIMEOUT_SECONDS = 30.0
#: how long the bench waits for the outbox to drain after a run before it gives up
DRAIN_SECONDS = 600.0
#: a run stops sending once its oldest unanswered request is this late: past saturation more
#: load only lengthens the queue, and Slack itself gives up on a request after 3 s
STOP_BEHIND_SECONDS = 5.0
COMPONENTS = ("web", "PostgreSQL", "Slack stand-in", "load generator")


def arrivals(rate: float, seconds: float, seed: int) -> list[tuple[float, str]]:
    """(offset in seconds, path) of every request of one run: Poisson arrivals at `rate`, each
    path drawn from MIX; the same seed gives the same run."""
    rng = random.Random(seed)
    offsets = poisson_offsets(rate, seconds, rng)
    return list(zip(offsets, mixed_kinds(len(offsets), MIX, rng), strict=True))


def assign(schedule: Sequence[tuple[float, str]], prepared: Mapping[str, Sequence[Request]]) -> list[tuple[float, Request]]:
    """The schedule with each arrival given the next prepared request of its path."""
    taken = dict.fromkeys(prepared, 0)
    out = []
    for at, kind in schedule:
        out.append((at, prepared[kind][taken[kind]]))
        taken[kind] += 1
    return out


@dataclass(frozen=True)
class Knee:
    """Where p99 passes the bar between the measured rates: above the last rate under it,
    at or below the first rate over it (None when every rate was over, or none was)."""

    under: float | None
    over: float | None

    def describe(self) -> str:
        if self.over is None:
            return f"not passed up to {self.under:g}/s"
        if self.under is None:
            return f"passed already at {self.over:g}/s"
        return f"between {self.under:g} and {self.over:g}/s"


def knee(p99_ms_by_rate: Mapping[float, float], limit_ms: float = KNEE_MS) -> Knee:
    """The first offered rate, ascending, whose p99 is over `limit_ms`, and the rate before it."""
    under = None
    for rate in sorted(p99_ms_by_rate):
        if p99_ms_by_rate[rate] > limit_ms:
            return Knee(under, rate)
        under = rate
    return Knee(under, None)


@dataclass
class RateRun:
    what: str
    rate: float
    round: int
    load: LoadRun
    #: CPU milliseconds per answered request, by component (COMPONENTS)
    cpu_ms: dict[str, float]
    #: of which spent after the last answer, all components together (the outbox's sending)
    after_ms: float
    #: milliseconds per answered request the web server's threads waited, runnable, for a CPU
    web_wait_ms: float
    #: how the machine's CPUs were shared between sessions meanwhile (bench/cpu.py)
    sessions: Sessions
    #: seconds from the last answer until every Slack message owed was sent
    drained_after: float | None = None
    slow: list[Slow] = field(default_factory=list)
    gc_pauses: list[float] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)

    def seconds(self, kind: str | None = None) -> list[float]:
        """Latencies (seconds) of the answers of one path or of all; a failed request counts
        with the time it was given."""
        return [a.latency for a in self.load.answers if kind is None or a.kind == kind]


class OpenLoop:
    """One database's bench (bench/http_bench.py's Bench) driven at fixed offered rates."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def measure(self, what: str, rate: float, round_: int, schedule: list[tuple[float, Request]]) -> RateRun:
        bench = self.bench
        server = bench.floor if what == FLOOR else bench.bot
        meter = CpuMeter({"web": server.pids, "PostgreSQL": bench.postgres_pids, "Slack stand-in": lambda: [bench.fake.pid]})
        waits = CpuMeter({"web": server.pids}, measure=run_queue_seconds)
        before, waited_before, sessions_before, started = meter.snapshot(), waits.snapshot(), autogroup_seconds(), time.perf_counter()
        load = run_open_loop([server.url], schedule, timeout=TIMEOUT_SECONDS, stop_when_behind=STOP_BEHIND_SECONDS)
        answered_at = meter.snapshot()
        drained_after = None
        if what != FLOOR:
            waited = _drain(bench.factory, timeout=DRAIN_SECONDS)
            if waited is not None:
                drained_after = time.time() - (load.started_wall + load.wall)
        done = meter.snapshot()
        spent, after = meter.spent(before, done), meter.spent(answered_at, done)
        waited = waits.spent(waited_before, waits.snapshot())["web"]
        sessions = Sessions.between(sessions_before, autogroup_seconds(), time.perf_counter() - started)
        answered = max(1, sum(1 for a in load.answers if a.ok))
        cpu_ms = {
            "web": spent["web"],
            "PostgreSQL": spent["PostgreSQL"],
            "Slack stand-in": spent["Slack stand-in"],
            "load generator": load.generator_cpu,
        }
        after_ms = 1000 * (after["web"] + after["PostgreSQL"] + after["Slack stand-in"]) / answered
        run = RateRun(what, rate, round_, load, {k: 1000 * v / answered for k, v in cpu_ms.items()}, after_ms, 1000 * waited / answered, sessions, drained_after)
        requests = [(load.started_wall + a.scheduled, a.latency) for a in load.answers]
        window = (load.started_wall, load.started_wall + load.wall)
        ids = [request.headers.get(REQUEST_ID, "") for _, request in schedule]
        run.slow, run.gc_pauses, run.stalls = overlapping(requests, window, server.gc_log, bench.stall_log, ids=ids, request_log=server.request_log)
        failed = load.errors
        print(
            f"  [{bench.backend} round {round_}, {rate:g}/s] {'floor' if what == FLOOR else 'bot'}: {len(load.answers)} requests in {load.wall:.1f} s, "
            + (f"stopped at {load.stopped_at:.1f} s ({load.not_sent} not sent), " if load.stopped_at is not None else "")
            + ", ".join(f"{kind} p50 {quantile(run.seconds(kind), .5):.1f} p99 {quantile(run.seconds(kind), .99):.1f} ms" for kind in sorted({a.kind for a in load.answers}))
            + f"; {len(failed)} failed{' (first: ' + str(failed[0].error) + ')' if failed else ''}; web {run.cpu_ms['web']:.1f} ms/request,"
            + f" waiting for a CPU {run.web_wait_ms:.1f}; bench's session {sessions.own_cores:.2f} cores, {sessions.busy_others} other sessions busy"
            + (f"; outbox drained {drained_after:.1f} s after" if drained_after is not None else ""),
            flush=True,
        )
        return run

    def rate(self, rate: float, round_: int) -> list[RateRun]:
        """The floor and the bot at one offered rate, with the same arrival times."""
        schedule = arrivals(rate, SECONDS, seed=round_ * 1000 + int(rate))
        counts = {kind: sum(1 for _, k in schedule if k == kind) for kind in PATHS}
        began = time.perf_counter()
        # the signed ones last: Bolt refuses a signature more than 5 minutes old, and the
        # set-up of a high rate can take minutes on a busy machine
        prepared = {REDEEM: self.bench.redemption_requests(counts[REDEEM]), APPROVE: self.bench.approve_requests(counts[APPROVE])}
        if _drain(self.bench.factory, timeout=DRAIN_SECONDS) is None:
            raise RuntimeError(f"the set-up's Slack messages were not sent within {DRAIN_SECONDS:g} s")
        prepared[ACK] = self.bench.ack_requests(counts[ACK])
        took = time.perf_counter() - began
        print(f"  [{self.bench.backend} round {round_}, {rate:g}/s] set-up: {counts[REDEEM]} links, {counts[APPROVE]} pending requests in {took:.0f} s", flush=True)
        floor = [(at, request) for (at, _), request in zip(schedule, self.bench.ack_requests(len(schedule)), strict=True)]
        runs = {FLOOR: lambda: self.measure(FLOOR, rate, round_, floor), "bot": lambda: self.measure("bot", rate, round_, assign(schedule, prepared))}
        order = [FLOOR, "bot"] if round_ % 2 else ["bot", FLOOR]
        return [runs[what]() for what in order]


def submissions_needed() -> int:
    """Submissions the set-up makes over every round (two paths of three need one each), with
    room for Poisson's spread."""
    expected = ROUNDS * sum(RATES) * SECONDS * 2 / 3
    return int(expected + 4 * math.sqrt(expected) + 10)


def run_backend(backend: str) -> list[RateRun]:
    runs: list[RateRun] = []
    with served(backend, count=0, submissions=submissions_needed()) as bench:
        driver = OpenLoop(bench)
        for round_ in range(1, ROUNDS + 1):
            for rate in sorted(RATES, reverse=not round_ % 2):
                runs += driver.rate(rate, round_)
    return runs


# --- the report --------------------------------------------------------------------------


def _spread(values: list[float], digits: int = 1) -> str:
    ordered = sorted(values)
    return f"{ordered[0]:.{digits}f}–{ordered[-1]:.{digits}f}"


def _pooled(runs: list[RateRun], kind: str | None, q: float) -> float:
    return quantile([s for r in runs for s in r.seconds(kind)], q)


def render(results: dict[str, list[RateRun]]) -> str:
    rates = sorted(RATES)
    lines = [
        "## Open-loop load: the hot paths at fixed offered rates (`bench/open_loop_bench.py`)",
        "",
        f"Poisson arrivals, the three paths in equal parts, at {', '.join(f'{r:g}' for r in rates)} requests/s, "
        f"{SECONDS:g} s per rate, {ROUNDS} rounds; latency from each request's **scheduled** moment to the answer's last byte "
        "(requests are sent on time whether or not earlier ones were answered: bench/loadgen.py, raw HTTP/1.1 keep-alive, "
        "one asyncio thread). Beside each bot run, the **floor** (bench/floor_app.py, ack after one `views.open`) receives the "
        "same arrival times, all acks; floor and bot alternate, the order reversed every other round, and the rates go up, "
        "then down. Both are served by the bot's gunicorn configuration (2 gthread workers × 4 threads on SQLite, × 8 on "
        "PostgreSQL) against the same no-validation Slack stand-in, on the one shared 2-core machine that also runs the "
        "load generator and the stand-in.",
        "",
        "Milliseconds read *all rounds pooled (lowest–highest round)*; `× floor` is the path's p99 over the floor's p99 at "
        f"the same rate in the same round, *median (lowest–highest round)*. Goal: at {GOAL_RATE:g} requests/s, p99 ≤ "
        f"{GOAL_P99_MS:g} ms for every path.",
        "",
    ]
    for backend, runs in results.items():
        lines += [
            f"### {backend}",
            "",
            "| offered /s | path | requests | failed | p50 ms | p99 ms | floor p99 ms | p99 × floor | goal | met |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for rate in rates:
            bot = [r for r in runs if r.rate == rate and r.what == "bot"]
            floor = {r.round: r for r in runs if r.rate == rate and r.what == FLOOR}
            floor_p99 = f"{_pooled(list(floor.values()), None, .99):.1f} ({_spread([quantile(r.seconds(), .99) for r in floor.values()])})"
            lines.append(
                f"| {rate:g} | floor | {sum(len(r.load.answers) for r in floor.values())} | {sum(len(r.load.errors) for r in floor.values())} | "
                f"{_pooled(list(floor.values()), None, .5):.1f} ({_spread([quantile(r.seconds(), .5) for r in floor.values()])}) | {floor_p99} | – | 1 | – | – |"
            )
            for kind in PATHS:
                p99s = [quantile(r.seconds(kind), .99) for r in bot]
                ratios = sorted(quantile(r.seconds(kind), .99) / quantile(floor[r.round].seconds(), .99) for r in bot)
                pooled99 = _pooled(bot, kind, .99)
                goal, met = "–", "–"
                if rate == GOAL_RATE:
                    goal, met = f"p99 ≤ {GOAL_P99_MS:g} ms", "yes" if pooled99 <= GOAL_P99_MS else f"**no** (rounds {_spread(p99s)})"
                lines.append(
                    f"| {rate:g} | {kind} | {sum(len(r.seconds(kind)) for r in bot)} | {sum(1 for r in bot for a in r.load.of(kind) if not a.ok)} | "
                    f"{_pooled(bot, kind, .5):.1f} ({_spread([quantile(r.seconds(kind), .5) for r in bot])}) | {pooled99:.1f} ({_spread(p99s)}) | {floor_p99} | "
                    f"{statistics.median(ratios):.2f} ({_spread(ratios, 2)}) | {goal} | {met} |"
                )
        stopped = [r for r in runs if r.load.stopped_at is not None]
        if stopped:
            lines += [
                "",
                f"Stopped early, the oldest unanswered request over {STOP_BEHIND_SECONDS:g} s late (past saturation; Slack gives up after 3 s): "
                + "; ".join(f"{r.rate:g}/s round {r.round} {'floor' if r.what == FLOOR else 'bot'} at {r.load.stopped_at:.1f} s ({r.load.not_sent} not sent)" for r in stopped)
                + ". Their percentiles are of the requests sent.",
            ]
        lines += [
            "",
            f"**Knee** (the offered rate at which p99, all rounds pooled, passes {KNEE_MS:g} ms): "
            + "; ".join(f"{kind}: {knee({rate: _pooled([r for r in runs if r.rate == rate and r.what == 'bot'], kind, .99) for rate in rates}).describe()}" for kind in PATHS)
            + f"; the floor: {knee({rate: _pooled([r for r in runs if r.rate == rate and r.what == FLOOR], None, .99) for rate in rates}).describe()}.",
            "",
            "CPU milliseconds per answered request, by component, from the first request until the outbox was drained "
            "(median of the rounds); in brackets after the total, what web, PostgreSQL and the stand-in spent after the last "
            "answer, sending the Slack messages the requests owed (bot/web/background.py); *web waiting* is the time the web "
            "server's threads were runnable but had no CPU (bench/cpu.py run_queue_seconds). The machine is shared: Linux shares "
            "its 2 cores between sessions first (autogroups, bench/cpu.py Sessions), so the *bench's session* (servers, client, "
            "stand-in) had about 2 / (1 + other busy sessions) cores when they all wanted more (lowest–highest round, floor runs "
            "included). The outbox drained *after the last answer*, worst round:",
            "",
            "| offered /s | achieved /s | web | PostgreSQL | Slack stand-in | load generator | total (after the answers) | floor total (web) "
            "| web waiting for a CPU | bench's session, cores | other busy sessions | outbox drained after "
            f"| requests over {SLOW_MS:g} ms (in the app / collector pause / machine stall) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for rate in rates:
            bot = [r for r in runs if r.rate == rate and r.what == "bot"]
            floor = [r for r in runs if r.rate == rate and r.what == FLOOR]
            cells = [statistics.median(r.cpu_ms[c] for r in bot) for c in COMPONENTS]
            floor_total = statistics.median(sum(r.cpu_ms.values()) for r in floor)
            floor_web = statistics.median(r.cpu_ms["web"] for r in floor)
            drained = [r.drained_after for r in bot]
            slow = [s for r in bot for s in r.slow]
            in_app = sum(1 for s in slow if s.server_ms is not None and s.server_ms > SLOW_MS)
            after = statistics.median(r.after_ms for r in bot)
            lines.append(
                f"| {rate:g} | {statistics.median(len(r.load.answers) / r.load.wall for r in bot):.1f} | "
                + " | ".join(f"{c:.2f}" for c in cells)
                + f" | {sum(cells):.2f} ({after:.2f}) | {floor_total:.2f} ({floor_web:.2f}) | {statistics.median(r.web_wait_ms for r in bot):.2f} "
                + f"| {_spread([r.sessions.own_cores for r in bot + floor], 2)} | {_spread([r.sessions.busy_others for r in bot + floor], 0)} | "
                + (f"{max(drained):.1f} s" if None not in drained else f"not within {DRAIN_SECONDS:g} s")
                + f" | {len(slow)} ({in_app} / {sum(1 for s in slow if s.server_gc)} / {sum(1 for s in slow if s.stall)}) |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def run(*, backends: list[str], count: int) -> str:
    """`count` (requests per closed-loop run) does not apply: an open-loop run is set by its
    rate and duration."""
    results = {}
    for backend in backends:
        print(f"[openloop] {backend} …", flush=True)
        results[backend] = run_backend(backend)
    return render(results)
