"""Scale-out on PostgreSQL — what a deployment does when one machine is not enough: two web
hosts and two schedulers against one database, under open-loop load:
`./scripts/bench --only scaleout` (about 15 minutes; PostgreSQL only, whatever --backends says).

Two hosts are two gunicorn masters on their own ports (each the bot's configuration,
bench/http_bench.py Server), the load generator sends each request to them in turn
(bench/loadgen.py: Poisson arrivals, the three hot paths mixed as in bench/open_loop_bench.py);
two `impersonation-bot scheduler` processes run beside them throughout. At each offered rate
(BENCH_SCALEOUT_RATES, default 25,50,100 requests/s; BENCH_SCALEOUT_SECONDS, 10 s each) the
bench runs one host and then the pair — the order reversed every other round, over
BENCH_SCALEOUT_ROUNDS (3) rounds — and reports the throughput each achieved (answers per
second from the first arrival to the last answer) and the pair's over one host's in the same
round. All of it shares one 2-core machine: the pair cannot have more CPU than one host had,
so what it can gain here is what one host leaves idle (its threads waiting on the database or
on each other); on two machines it would have twice the cores.

Then a run at BENCH_SCALEOUT_KILL_RATE (50/s) for twice as long with the pair, host B
SIGKILLed halfway with its workers (no cleanup runs): requests it was serving get no answer;
later ones find it refused and go to host A (the generator's failover, as a load balancer's
health check). The bench waits until the outbox is drained, including the rows host B had
claimed, which the schedulers take again once their lease (bot/domain/outbox.py LEASE) has
passed.

After the throughput runs and again after the kill, bench/exactly_once.py judges everything the
database and the Slack stand-in saw: every approve click and redemption answered 200 has its
change once, every audit event of a request once, every outbox row finished, every message
posted once (a duplicate post is counted and timed against the kill), and the audit chain
verifies.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from sqlalchemy import select

from bench import exactly_once
from bench.common import fresh_database
from bench.exactly_once import APPROVE as APPROVED
from bench.exactly_once import REDEEM as REDEEMED
from bench.exactly_once import Answered, SlackCall, Verdict
from bench.http_bench import ACCOUNTS, ACK, AGENTS, APPROVE, PATHS, POLICY, REDEEM, SLOW_MS, Bench, Scheduler, Server, _directory, _drain, quantile, server_env
from bench.loadgen import LoadRun, Request, run_open_loop
from bench.open_loop_bench import arrivals, assign
from bench.slack_stub import SlackStub
from bot.db.models import OutboxMessage
from bot.domain.clock import utcnow
from bot.domain.outbox import LEASE

RATES = tuple(float(r) for r in os.environ.get("BENCH_SCALEOUT_RATES", "25,50,100").split(",") if r)
SECONDS = float(os.environ.get("BENCH_SCALEOUT_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_SCALEOUT_ROUNDS", "3"))
KILL_RATE = float(os.environ.get("BENCH_SCALEOUT_KILL_RATE", "50"))
ONE, PAIR = "one host", "two hosts"
TIMEOUT_SECONDS = 30.0
#: the outbox must drain within this after a run (the kill run: after the claims' lease)
DRAIN_SECONDS = 600.0


@dataclass
class Measured:
    what: str
    rate: float
    round: int
    load: LoadRun

    @property
    def throughput(self) -> float:
        """Answers per second, from the first arrival to the last answer."""
        return sum(1 for a in self.load.answers if a.ok) / self.load.wall

    def seconds(self, kind: str | None = None) -> list[float]:
        return [a.latency for a in self.load.answers if kind is None or a.kind == kind]


@dataclass
class Killed:
    load: LoadRun
    #: seconds after the start of the run
    killed_at: float
    #: answered by each host, before and after the kill
    by_host: dict[str, tuple[int, int]]
    #: requests that got no answer, by error
    unanswered: dict[str, int]
    #: outbox rows in `sending` right after the kill (claimed by host B, or being sent by a
    #: live process), and the channels their messages go to
    claimed_at_kill: int
    claimed_channels: set[str]
    drained_after: float | None
    verdict: Verdict | None = None
    #: messages posted twice to a channel of a row claimed at the kill (the dead host's window)
    orphans_explained: int = 0


@dataclass
class Results:
    runs: list[Measured] = field(default_factory=list)
    after_throughput: Verdict | None = None
    killed: Killed | None = None


def key_of(request: Request) -> Answered | None:
    """What an answered request must have changed: an approve click's request id, a
    redemption's link token (an ack changes nothing)."""
    if request.kind == APPROVE:
        payload = json.loads(parse_qs(request.body.decode())["payload"][0])
        return Answered(APPROVED, payload["actions"][0]["value"])
    if request.kind == REDEEM:
        return Answered(REDEEMED, request.target.rsplit("/", 1)[1])
    return None


class ScaleOut:
    def __init__(self, bench: Bench, host_b: Server, fake: SlackStub) -> None:
        self.bench, self.host_b, self.fake = bench, host_b, fake
        self.answered: list[Answered] = []

    def schedule(self, rate: float, seconds: float, seed: int) -> list[tuple[float, Request]]:
        schedule = arrivals(rate, seconds, seed)
        counts = {kind: sum(1 for _, k in schedule if k == kind) for kind in PATHS}
        bench = self.bench
        prepared = {REDEEM: bench.redemption_requests(counts[REDEEM]), APPROVE: bench.approve_requests(counts[APPROVE])}
        if _drain(bench.factory, DRAIN_SECONDS) is None:
            raise RuntimeError(f"the set-up's Slack messages were not sent within {DRAIN_SECONDS:g} s")
        # the acks signed last: Bolt refuses a signature over 5 minutes old, and a set-up takes minutes on a busy machine
        prepared[ACK] = bench.ack_requests(counts[ACK])
        return assign(schedule, prepared)

    def record(self, schedule: list[tuple[float, Request]], load: LoadRun) -> None:
        for (_, request), answer in zip(schedule, load.answers, strict=True):
            key = key_of(request)
            if answer.ok and key is not None:
                self.answered.append(key)

    def measure(self, what: str, rate: float, round_: int) -> Measured:
        schedule = self.schedule(rate, SECONDS, seed=round_ * 1000 + int(rate))
        urls = [self.bench.bot.url] if what == ONE else [self.bench.bot.url, self.host_b.url]
        load = run_open_loop(urls, schedule, timeout=TIMEOUT_SECONDS)
        self.record(schedule, load)
        if _drain(self.bench.factory, DRAIN_SECONDS) is None:
            raise RuntimeError(f"the outbox was not drained within {DRAIN_SECONDS:g} s")
        run = Measured(what, rate, round_, load)
        print(
            f"  [round {round_}, {rate:g}/s] {what}: {run.throughput:.1f} answered/s, p50 {quantile(run.seconds(), .5):.1f} ms, "
            f"p99 {quantile(run.seconds(), .99):.1f} ms, {len(load.errors)} failed",
            flush=True,
        )
        return run

    def verdict(self) -> Verdict:
        """Once every row due by now is finished — alerts too, which only the schedulers send
        (http_bench's drain leaves them out)."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            with self.bench.factory() as db:
                owed = db.execute(
                    select(OutboxMessage.id).where(OutboxMessage.state.in_(("pending", "sending")), OutboxMessage.due_at <= utcnow())
                ).first()
            if owed is None:
                break
            time.sleep(0.5)
        calls = [SlackCall(method, channel, ts, at) for method, channel, ts, at in self.fake.messages()]
        return exactly_once.check(self.bench.factory, self.answered, calls)

    def kill_run(self) -> Killed:
        """The pair at KILL_RATE for 2 × SECONDS; host B SIGKILLed (master and workers) halfway."""
        schedule = self.schedule(KILL_RATE, 2 * SECONDS, seed=99)
        victims = self.host_b.pids()

        def kill() -> None:
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        timer = threading.Timer(SECONDS, kill)
        timer.start()
        began = time.time()
        load = run_open_loop([self.bench.bot.url, self.host_b.url], schedule, timeout=TIMEOUT_SECONDS, failover=True)
        timer.join()
        killed_at = SECONDS - (load.started_wall - began)
        self.host_b.process.wait(timeout=30)
        with self.bench.factory() as db:
            recipients = db.execute(select(OutboxMessage.recipient).where(OutboxMessage.state == "sending")).scalars().all()
        claimed = len(recipients)
        # the stand-in answers a post to a person (U…) in their DM (D…), as Slack does
        channels = {"D" + r[1:] if r.startswith(("U", "W")) else r for r in recipients}
        self.record(schedule, load)
        by_host = {}
        for url, name in ((self.bench.bot.url, "A"), (self.host_b.url, "B")):
            mine = [a for a in load.answers if a.ok and a.url == url]
            by_host[name] = (sum(1 for a in mine if a.scheduled + a.latency < killed_at), sum(1 for a in mine if a.scheduled + a.latency >= killed_at))
        unanswered: dict[str, int] = {}
        for answer in load.errors:
            kind = (answer.error or "").split(":")[0].split("(")[0][:40]
            unanswered[kind] = unanswered.get(kind, 0) + 1
        drained = _drain(self.bench.factory, LEASE.total_seconds() + DRAIN_SECONDS)
        killed = Killed(load, killed_at, by_host, unanswered, claimed, channels, drained)
        killed.verdict = self.verdict()
        killed.orphans_explained = sum(1 for post in killed.verdict.orphan_posts if post.channel in channels)
        print(
            f"  [kill at {KILL_RATE:g}/s] answered by host (before, after the kill): {by_host}; unanswered: {unanswered}; "
            f"claimed at the kill: {claimed}; drained after {drained}; problems: {killed.verdict.problems[:3]}; "
            f"duplicate posts: {killed.verdict.duplicates} ({killed.orphans_explained} to a channel of a row claimed at the kill)",
            flush=True,
        )
        return killed


def run_postgresql() -> Results:
    people = {a: {"email": f"{a.lower()}@corp.example", "tz": "Europe/Paris"} for a in [*AGENTS, "UMANAGER1", "UMANAGER2"]}
    expected = ROUNDS * 2 * sum(RATES) * SECONDS * 2 / 3 + KILL_RATE * 2 * SECONDS * 2 / 3
    results = Results()
    with fresh_database("postgresql") as db_url, tempfile.TemporaryDirectory(prefix="impbot-scaleout-") as folder, SlackStub(people) as fake:
        workdir = Path(folder)
        (workdir / "policy.toml").write_text(POLICY % {"agents": ", ".join(f'"{a}"' for a in AGENTS)})
        _directory(workdir / "directory.json", accounts=ACCOUNTS, customers=int(expected * 1.2) // len(AGENTS) + 10)
        bench = Bench("postgresql", 0, db_url, fake, workdir)
        env = server_env(f"{db_url}&application_name={bench.application_name}", fake, workdir)
        host_b = Server("bot.web.wsgi:app", env, workdir / "bot-b.log", workdir / "bot-b-gc.log")
        schedulers = [Scheduler(env, workdir / f"scheduler-{n}.log") for n in (1, 2)]
        try:
            bench.warm_up()
            driver = ScaleOut(bench, host_b, fake)
            for round_ in range(1, ROUNDS + 1):
                for rate in sorted(RATES, reverse=not round_ % 2):
                    for what in ([ONE, PAIR] if round_ % 2 else [PAIR, ONE]):
                        results.runs.append(driver.measure(what, rate, round_))
            results.after_throughput = driver.verdict()
            print(f"  after the throughput runs: {results.after_throughput.problems[:3]}, duplicates {results.after_throughput.duplicates}", flush=True)
            results.killed = driver.kill_run()
        finally:
            for scheduler in schedulers:
                scheduler.stop()
            if host_b.process.poll() is None:
                host_b.stop()
            else:
                host_b.log.close()
            bench.close()
    return results


# --- the report --------------------------------------------------------------------------


def _spread(values: list[float], digits: int = 1) -> str:
    ordered = sorted(values)
    return f"{ordered[0]:.{digits}f}–{ordered[-1]:.{digits}f}"


def _knee(runs: list[Measured], what: str) -> str:
    under = None
    for rate in sorted(RATES):
        pooled = quantile([s for r in runs if r.rate == rate and r.what == what for s in r.seconds()], .99)
        if pooled > SLOW_MS:
            return f"passed already at {rate:g}/s" if under is None else f"between {under:g} and {rate:g}/s"
        under = rate
    return f"not passed up to {under:g}/s"


def _verdict_lines(verdict: Verdict) -> list[str]:
    rows = ", ".join(f"{kind} {state} {n}" for (kind, state), n in sorted(verdict.rows.items()))
    return [
        f"- answered 200 and checked: {verdict.answered[APPROVED]} approve clicks, {verdict.answered[REDEEMED]} redemptions; "
        f"problems: {'none' if not verdict.problems else '; '.join(verdict.problems[:5])}",
        f"- outbox rows by kind and final state: {rows}",
        f"- Slack stand-in: {verdict.posts} messages posted for {verdict.posted_targets} targets, {verdict.edits} edits; "
        f"posted again (ts kept by nothing): {verdict.duplicates}",
        f"- audit chain: {'valid' if verdict.chain_ok else '**broken**'} over {verdict.audit_events} events",
    ]


def render(results: Results) -> str:
    rates = sorted(RATES)
    lines = [
        "## Scale-out on PostgreSQL: two web hosts and two schedulers (`bench/scaleout_bench.py`)",
        "",
        f"Two gunicorn masters on their own ports (the bot's configuration: 2 gthread workers × 8 threads each) and two "
        f"`impersonation-bot scheduler` processes against one PostgreSQL database and the Slack stand-in; open-loop Poisson "
        f"arrivals (bench/loadgen.py), the three hot paths in equal parts, sent to the hosts in turn. At each offered rate "
        f"one host and the pair run {SECONDS:g} s each, alternating (the order reversed every other round), over {ROUNDS} rounds. "
        "Without a security channel in the bench's policy, the feed and alert rows end skipped (tests/jobs/test_scale_out.py "
        "covers channel posts). **All of it runs on one shared 2-core machine**: the pair has no more CPU than one host had, so the ratio shows what "
        "a second host gains from cores one host leaves idle, not what a second machine would bring.",
        "",
        "Throughput is answers per second from the first arrival to the last answer, *median (lowest–highest round)*; "
        "the ratio is the pair's over one host's in the same round; latencies all rounds pooled.",
        "",
        "| offered /s | one host: answered /s | p50 ms | p99 ms | two hosts: answered /s | p50 ms | p99 ms | two / one |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rate in rates:
        one = {r.round: r for r in results.runs if r.rate == rate and r.what == ONE}
        pair = {r.round: r for r in results.runs if r.rate == rate and r.what == PAIR}
        ratios = [pair[k].throughput / one[k].throughput for k in one]
        cells = [f"{rate:g}"]
        for runs in (one, pair):
            throughputs = [r.throughput for r in runs.values()]
            pooled = [s for r in runs.values() for s in r.seconds()]
            cells += [f"{statistics.median(throughputs):.1f} ({_spread(throughputs)})", f"{quantile(pooled, .5):.1f}", f"{quantile(pooled, .99):.1f}"]
        cells.append(f"{statistics.median(ratios):.2f} ({_spread(ratios, 2)})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"**Knee** (p99 of all paths, rounds pooled, passes {SLOW_MS:g} ms): one host {_knee(results.runs, ONE)}; "
        f"two hosts {_knee(results.runs, PAIR)}.",
        "",
        "### Exactly once, after the throughput runs",
        "",
        *(_verdict_lines(results.after_throughput) if results.after_throughput else ["- not reached"]),
        "",
    ]
    killed = results.killed
    if killed is None:
        return "\n".join(lines) + "\n"
    load = killed.load
    lines += [
        f"### One host killed mid-run ({KILL_RATE:g} requests/s for {2 * SECONDS:g} s, host B SIGKILLed with its workers after {killed.killed_at:.1f} s)",
        "",
        f"- {len(load.answers)} requests: answered by host A {killed.by_host['A'][0]} before the kill and {killed.by_host['A'][1]} after; "
        f"by host B {killed.by_host['B'][0]} before and {killed.by_host['B'][1]} after; "
        f"{sum(1 for a in load.answers if a.ok and a.attempts > 1)} answered by host A after host B refused them; "
        f"unanswered: {', '.join(f'{n} ({kind})' for kind, n in killed.unanswered.items()) or 'none'}",
        f"- outbox rows claimed (`sending`) right after the kill: {killed.claimed_at_kill}; every row finished "
        + (f"{killed.drained_after:.0f} s after the run" if killed.drained_after is not None else "**not** within the wait")
        + f" (a dead host's claim is taken again once its lease, {LEASE.total_seconds():g} s, has passed; later rows of the same message wait behind it)",
        *(_verdict_lines(killed.verdict) if killed.verdict else []),
        f"- of the messages posted again, {killed.orphans_explained} went to the channel of a row claimed when host B died: a sender that "
        "dies after Slack accepted a new message and before it kept the ts makes the next sender post it again once the claim's "
        "lease has passed (bot/domain/outbox.py; chat.postMessage has no idempotency key); "
        + ("no other." if killed.verdict and killed.orphans_explained == killed.verdict.duplicates else "**others too: not explained by the kill.**"),
        "",
    ]
    return "\n".join(lines) + "\n"


def run(*, backends: list[str], count: int) -> str:
    """PostgreSQL only (several processes writing at once is a PostgreSQL deployment);
    `backends` and `count` do not apply."""
    print("[scaleout] postgresql …", flush=True)
    return render(run_postgresql())
