"""Memory over a long run: the resident set (VmRSS, /proc/PID/status) of each web worker and
of the scheduler process, after a warm-up and after 20,000 more requests:
`./scripts/bench --only memory` (about 15 minutes per database).

The bot is served as in bench/http_bench.py (its Server, Slack stand-in and request mix) and
the scheduler runs beside it as the Procfile's `clock` does (`impersonation-bot scheduler`),
delivering what the workers' background threads have not. Requests come in batches of the
three hot paths and the requests that set them up — slash commands, request submissions,
landing pages, link redemptions, approve clicks — from BENCH_MEMORY_CLIENTS (4) keep-alive
clients. The warm-up is BENCH_MEMORY_WARM_UP (2,000) requests of the same mix: caches that
fill once (SQLAlchemy's compiled statements, Jinja's templates, the pools) are full by then,
so what grows afterwards is what a long-lived worker keeps per request. Goal: each worker's
RSS grows by at most 10 % over BENCH_MEMORY_REQUESTS (20,000) requests.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import http_bench
from bench.common import fresh_database
from bench.cpu import children
from bench.slack_stub import SlackStub

WARM_UP = int(os.environ.get("BENCH_MEMORY_WARM_UP", "2000"))
REQUESTS = int(os.environ.get("BENCH_MEMORY_REQUESTS", "20000"))
CLIENTS = int(os.environ.get("BENCH_MEMORY_CLIENTS", "4"))
#: requests of each path per batch; a batch sends 6 × BATCH requests (see `Soak.batch`)
BATCH = 50
#: the goal: growth of a worker's RSS between the warm-up and the end, in percent
GOAL_GROWTH_PERCENT = 10.0


def rss_kib(pid: int) -> int | None:
    """The process's resident set size (VmRSS, kB as /proc writes it); None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Sample:
    #: requests answered so far (set-up requests included)
    requests: int
    #: kB by process name (`worker <pid>`, `master`, `scheduler`)
    rss: dict[str, int]


@dataclass
class Soak:
    backend: str
    samples: list[Sample] = field(default_factory=list)
    #: the sample taken after the warm-up
    warm: Sample | None = None
    restarted: bool = False


def _sample(bench: http_bench.Bench, scheduler: http_bench.Scheduler, workers: list[int], sent: int) -> Sample:
    rss = {f"worker {pid}": rss_kib(pid) for pid in workers}
    rss["master"] = rss_kib(bench.bot.process.pid)
    rss["scheduler"] = rss_kib(scheduler.pid)
    return Sample(sent, {name: kib for name, kib in rss.items() if kib is not None})


def _batch(bench: http_bench.Bench) -> int:
    """One batch of every path (BATCH each) and its set-up; the requests it sent."""
    prepared = [bench.ack_requests(), bench.redemption_requests(), bench.approve_requests()]
    for requests in prepared:
        http_bench._run_clients("memory", requests, clients=CLIENTS, round_=0, server=bench.bot)
    http_bench._drain(bench.factory)
    # ack, submission + landing page + redemption, submission + approve click
    return 6 * bench.count


def run_backend(backend: str) -> Soak:
    agents = http_bench.AGENTS
    people = {a: {"email": f"{a.lower()}@corp.example", "tz": "Europe/Paris"} for a in [*agents, "UMANAGER1", "UMANAGER2"]}
    submissions = 2 * (WARM_UP + REQUESTS) // 6 + 4 * BATCH
    soak = Soak(backend)
    with fresh_database(backend) as db_url, tempfile.TemporaryDirectory(prefix="impbot-memory-") as folder, SlackStub(people) as fake:
        workdir = Path(folder)
        (workdir / "policy.toml").write_text(http_bench.POLICY % {"agents": ", ".join(f'"{a}"' for a in agents)})
        http_bench._directory(workdir / "directory.json", accounts=http_bench.ACCOUNTS, customers=submissions // len(agents) + 1)
        bench = http_bench.Bench(backend, BATCH, db_url, fake, workdir)
        scheduler = http_bench.Scheduler(http_bench.server_env(db_url, fake, workdir), workdir / "scheduler.log")
        try:
            workers = sorted(children(bench.bot.process.pid))
            sent = 0
            while sent < WARM_UP:
                sent += _batch(bench)
            soak.warm = _sample(bench, scheduler, workers, sent)
            soak.samples.append(soak.warm)
            print(f"  [{backend}] after warm-up ({sent} requests): {soak.warm.rss}", flush=True)
            target = sent + REQUESTS
            next_print = time.monotonic() + 30
            while sent < target:
                sent += _batch(bench)
                soak.samples.append(_sample(bench, scheduler, workers, sent))
                if time.monotonic() > next_print:
                    print(f"  [{backend}] {sent - soak.warm.requests} requests: {soak.samples[-1].rss}", flush=True)
                    next_print = time.monotonic() + 30
            soak.restarted = sorted(children(bench.bot.process.pid)) != workers or scheduler.process.poll() is not None
        finally:
            scheduler.stop()
            bench.close()
    return soak


def _growth(before: int, after: int) -> float:
    return 100.0 * (after - before) / before


def _at(soak: Soak, fraction: float, name: str) -> str:
    """The process's RSS (MiB) in the sample nearest to `fraction` of the way through the run."""
    assert soak.warm is not None
    wanted = soak.warm.requests + fraction * (soak.samples[-1].requests - soak.warm.requests)
    sample = min(soak.samples, key=lambda s: abs(s.requests - wanted))
    kib = sample.rss.get(name)
    return "–" if kib is None else f"{kib / 1024:.1f}"


def render(soaks: list[Soak]) -> str:
    lines = [
        "## Memory of the web workers and the scheduler (`bench/memory_bench.py`)",
        "",
        f"The bot under gunicorn (2 gthread workers, as in the HTTP bench) and `impersonation-bot scheduler` beside it, "
        f"against the Slack stand-in; {CLIENTS} keep-alive clients send batches of every hot path and the requests that "
        f"set them up (slash command, submission, landing page, redemption, approve click). RSS is VmRSS from "
        f"/proc/PID/status after a warm-up of {WARM_UP:,} requests and after {REQUESTS:,} more. "
        f"Goal: each web worker grows by at most {GOAL_GROWTH_PERCENT:g} % (the master and the scheduler are shown beside).",
        "",
        "| backend | process | RSS after warm-up MiB | at +25 % | at +50 % | at +75 % | after the run MiB | growth | goal | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for soak in soaks:
        assert soak.warm is not None
        last = soak.samples[-1]

        for name in soak.warm.rss:
            before, after = soak.warm.rss[name], last.rss.get(name)
            if after is None:
                lines.append(f"| {soak.backend} | {name} | {before / 1024:.1f} | – | – | – | gone | – | – | **no** |")
                continue
            growth = _growth(before, after)
            worker = name.startswith("worker")
            goal = f"≤ {GOAL_GROWTH_PERCENT:g} %" if worker else "–"
            met = ("yes" if growth <= GOAL_GROWTH_PERCENT else "**no**") if worker else "–"
            lines.append(
                f"| {soak.backend} | {name.split(' ')[0]} | {before / 1024:.1f} | {_at(soak, .25, name)} | {_at(soak, .5, name)} | {_at(soak, .75, name)} | "
                f"{after / 1024:.1f} | {growth:+.1f} % | {goal} | {met} |"
            )
        if soak.restarted:
            lines.append(f"| {soak.backend} | a worker or the scheduler restarted during the run: the figures above do not hold | | | | | | | | **no** |")
    return "\n".join(lines) + "\n"


def run(*, backends: list[str], count: int) -> str:
    """`count` (requests per HTTP path) is the HTTP bench's knob; the soak's length is
    BENCH_MEMORY_REQUESTS."""
    soaks = []
    for backend in backends:
        print(f"[memory] {backend} …", flush=True)
        soaks.append(run_backend(backend))
    return render(soaks)
