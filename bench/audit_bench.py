"""The audit log at scale, on SQLite and PostgreSQL, over a generated history
(bench/audit_history.py: 10,000,000 audit events at full size; BENCH_AUDIT_SCALE=0.3 etc. for
smaller runs, BENCH_AUDIT_ACCOUNTS to keep the busiest account as busy as at full size).
BENCH_ROUNDS (3) rounds, the backends in turn (their order reversed every other round); each
round measures, per backend:

- `/impersonation-log`: `log_query.look_up`, the one domain call the slash-command listener
  makes (authorise, parse, summary and first page, and its own `log.viewed` append, committed),
  for 24 accounts (the 4 busiest and 20 drawn at random) over the default 90 days, beside the
  raw indexed query for the same account (the account's id, its sessions in the period counted
  and the first page's keys, from `ix_sessions_account_period`, as plain SQL through the
  driver), the two alternating. Goals: p99 ≤ 20 ms and ≤ 2 × the raw query's p99.
- appends: 8 writers × 500 `audit.append`, each in its own transaction as the app does, as
  threads of one process and as separate processes. Goal ≥ 2,000 events/s on PostgreSQL.
- `audit verify`: `checkpoints.verify_log` as `impersonation-bot audit verify` runs it (a
  read-only transaction, one worker process per core) over the whole chain. Goal ≥ 500,000
  events/s; beside it, SHA-256 alone over the same canonical bytes (the floor of any
  verifier), in as many processes.

Once per backend: the previous verifier (ORM rows, the reference encoder) over the first
50,000 events and the current walk in one process over the first 1,000,000; and the CSV and
JSON access exports (`exports.access_export`) of the busiest and a quiet account's whole
history, read to the end, with tracemalloc's peak while streaming each (flat memory: the
peaks are alike although one export has thousands of times more rows).
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.audit_history import END, Scale, account_name, history_databases
from bench.common import Latency
from bot.db.engine import make_engine, make_session_factory, reading
from bot.db.models import Account, AuditEvent, ImpersonationSession
from bot.domain import audit, checkpoints, exports, log_query
from bot.domain.audit import Actor, EventDraft
from bot.domain.context import DomainContext
from bot.domain.keys import load_or_create_signing_key
from bot.domain.policy import parse_policy
from bot.domain.ports import Person, StaticPeople
from bot.reports.exports import access_file
from bot.slack.blocks.log import PAGE_SIZE
from bot.slack.command_text import parse_log_command

VIEWER = "USECURITY1"
POLICY = f"""
[roles.security]
members = ["{VIEWER}"]
max_minutes = 30
scope = "any"
can_impersonate = false
can_view_log = true
[roles.manager]
members = ["UMANAGER01"]
max_minutes = 60
can_approve = true
"""
LOOKUP_ACCOUNTS = 24
BUSIEST = 4
LOOKUP_GOAL_MS = 20.0
#: the lookup's p99 over the raw indexed query's, at most
LOOKUP_RAW_GOAL = 2.0
WRITERS, PER_WRITER = 8, 500
APPEND_GOAL = 2000.0
VERIFY_GOAL = 500_000.0
REFERENCE_SAMPLE = 50_000
SERIAL_SAMPLE = 1_000_000
#: events whose canonical bytes are hashed for the SHA-256 floor
SHA_SAMPLE = 200_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


@dataclass
class Facts:
    """What the history holds, and what is measured once per backend."""

    backend: str
    accounts: int = 0
    sessions: int = 0
    events_before: int = 0
    busiest_90d: int = 0
    median_90d: float = 0.0
    lookup_cold_p50_ms: float = 0.0
    lookup_cold_max_ms: float = 0.0
    reference_per_s: float = 0.0
    serial_per_s: float = 0.0
    serial_events: int = 0
    sha_per_s: float = 0.0
    exports: list[tuple[str, str, int, int, int, float]] | None = None


@dataclass
class Round:
    """One round's figures for one backend."""

    backend: str
    lookup: Latency
    raw: Latency
    lookup_busiest_p99_ms: float
    lookup_others_p99_ms: float
    #: every lookup's and raw query's time, for the percentiles of the rounds pooled
    lookup_seconds: list[float]
    raw_seconds: list[float]
    appends_per_s: float = 0.0
    append_p99_ms: float = 0.0
    appends_consecutive: bool = False
    appends_processes_per_s: float = 0.0
    append_processes_p99_ms: float = 0.0
    verified: int = 0
    verify_s: float = 0.0
    verify_ok: bool = False
    workers: int = 1
    load: float = 0.0

    @property
    def verify_per_s(self) -> float:
        return self.verified / self.verify_s if self.verify_s else 0.0


def _context(url: str) -> DomainContext:
    key = load_or_create_signing_key(Path(tempfile.mkdtemp(prefix="impbot-key-")) / "key.pem", allow_create=True)
    engine = make_engine(url, **({} if url.startswith("sqlite") else {"pool_size": WRITERS + 2, "max_overflow": 0}))
    return DomainContext(
        sessions=make_session_factory(engine),
        policy=parse_policy(POLICY, source="bench"),
        signing_key=key,
        public_base_url="http://bench.invalid",
        product_launch_url=None,
        people=StaticPeople({VIEWER: Person(VIEWER, email="security1@corp.example", tz="UTC")}),
    )


def _lookup_accounts(scale: Scale) -> list[str]:
    rng = random.Random(4)
    drawn = rng.sample(range(BUSIEST + 1, scale.accounts + 1), LOOKUP_ACCOUNTS - BUSIEST)
    return [account_name(n) for n in [*range(1, BUSIEST + 1), *drawn]]


def _sessions_in_90_days(ctx: DomainContext, account: str) -> int:
    since = END - timedelta(days=90)
    with reading(ctx.sessions) as db:
        return db.execute(
            select(func.count())
            .select_from(ImpersonationSession)
            .join(Account, Account.id == ImpersonationSession.account_id)
            .where(Account.external_id == account, ImpersonationSession.started_at >= since, ImpersonationSession.started_at < END)
        ).scalar_one()


def _look_up(ctx: DomainContext, account: str) -> log_query.LookupResult:
    """What the slash-command listener does for `/impersonation-log account:<account>`."""
    text = f"account:{account}"
    return log_query.look_up(ctx, VIEWER, parse_log_command(text), text=text, page_size=PAGE_SIZE, now=END)


def _raw_lookup(ctx: DomainContext) -> Any:
    """The raw indexed query for an account's default period, as plain SQL through the
    driver: the account's id, its sessions in the period counted and the first page's keys,
    all from indexes (`accounts.external_id`, `ix_sessions_account_period`)."""
    engine = ctx.sessions.kw["bind"]
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    since, until = END - timedelta(days=log_query.DEFAULT_DAYS), END
    bounds = (since.strftime("%Y-%m-%d %H:%M:%S.%f"), until.strftime("%Y-%m-%d %H:%M:%S.%f")) if sqlite else (since, until)
    find = f"SELECT id FROM accounts WHERE external_id = {mark}"
    period = f"account_id = {mark} AND started_at >= {mark} AND started_at < {mark}"
    count = f"SELECT count(*) FROM sessions WHERE {period}"
    page = f"SELECT id, started_at FROM sessions WHERE {period} ORDER BY started_at DESC, id DESC LIMIT {PAGE_SIZE}"

    def lookup(account: str) -> None:
        with engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(find, (account,))
            (account_id,) = cursor.fetchone()
            cursor.execute(count, (account_id, *bounds))
            cursor.fetchone()
            cursor.execute(page, (account_id, *bounds))
            cursor.fetchall()
            cursor.close()

    return lookup


def measure_lookups(ctx: DomainContext, accounts: list[str], repetitions: int, round_number: int, backend: str, load: float) -> Round:
    """Each account's lookup and raw query one after the other, which first alternating by
    repetition."""
    raw_lookup = _raw_lookup(ctx)
    seconds: list[float] = []
    raw: list[float] = []
    busiest: list[float] = []
    others: list[float] = []
    began_all = time.perf_counter()
    for repetition in range(repetitions):
        for index, account in enumerate(accounts):
            for step in ("raw", "lookup") if (repetition + round_number) % 2 else ("lookup", "raw"):
                began = time.perf_counter()
                if step == "raw":
                    raw_lookup(account)
                    raw.append(time.perf_counter() - began)
                    continue
                _look_up(ctx, account)
                elapsed = time.perf_counter() - began
                seconds.append(elapsed)
                (busiest if index < BUSIEST else others).append(elapsed)
    wall = time.perf_counter() - began_all
    return Round(
        backend, Latency.of(seconds, wall), Latency.of(raw, wall), Latency.of(busiest, 1.0).p99_ms, Latency.of(others, 1.0).p99_ms,
        seconds, raw, load=load,
    )


def measure_cold_lookups(ctx: DomainContext, accounts: list[str], facts: Facts) -> None:
    """A first pass over the accounts (cold caches), kept out of the rounds' percentiles."""
    cold: list[float] = []
    for account in accounts:
        began = time.perf_counter()
        result = _look_up(ctx, account)
        cold.append(time.perf_counter() - began)
        assert isinstance(result, log_query.LogPage), result
    facts.lookup_cold_p50_ms = statistics.median(cold) * 1000
    facts.lookup_cold_max_ms = max(cold) * 1000
    counts = [_sessions_in_90_days(ctx, a) for a in accounts]
    facts.busiest_90d, facts.median_90d = max(counts), statistics.median(counts)


def measure_appends(ctx: DomainContext, figures: Round) -> None:
    with reading(ctx.sessions) as db:
        first = (db.execute(select(func.max(AuditEvent.seq))).scalar_one() or 0) + 1
    seconds: list[list[float]] = [[] for _ in range(WRITERS)]
    barrier = threading.Barrier(WRITERS + 1)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(PER_WRITER):
            began = time.perf_counter()
            with ctx.sessions() as db, db.begin():
                audit.append(db, EventDraft(type="bench.appended", actor=Actor(slack_id=f"UWRITER{n}", role="bench"), details={"i": i, "writer": n}))
            seconds[n].append(time.perf_counter() - began)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    latency = Latency.of([s for per in seconds for s in per], wall)
    figures.appends_per_s, figures.append_p99_ms = latency.throughput, latency.p99_ms
    with reading(ctx.sessions) as db:
        seqs = db.execute(select(AuditEvent.seq).where(AuditEvent.seq >= first).order_by(AuditEvent.seq)).scalars().all()
    figures.appends_consecutive = seqs == list(range(first, first + WRITERS * PER_WRITER))


def _append_process(url: str, number: int, ready: Any, go: Any, results: Any) -> None:
    """One writer in its own process (as separate app processes would be): 500 appends."""
    engine = make_engine(url, **({} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 0}))
    sessions = make_session_factory(engine)
    with reading(sessions) as db:  # connect before the start signal
        db.execute(select(func.count()).select_from(Account)).scalar_one()
    ready.release()
    go.wait()
    seconds = []
    for i in range(PER_WRITER):
        began = time.perf_counter()
        with sessions() as db, db.begin():
            audit.append(db, EventDraft(type="bench.appended", actor=Actor(slack_id=f"UPROCESS{number}", role="bench"), details={"i": i, "writer": number}))
        seconds.append(time.perf_counter() - began)
    results.put((time.time(), seconds))
    engine.dispose()


def measure_append_processes(url: str, figures: Round) -> None:
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    workers = [context.Process(target=_append_process, args=(url, n, ready, go, results)) for n in range(WRITERS)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    began = time.time()
    go.set()
    finished = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    wall = max(end for end, _ in finished) - began
    latency = Latency.of([s for _, per in finished for s in per], wall)
    figures.appends_processes_per_s, figures.append_processes_p99_ms = latency.throughput, latency.p99_ms


def _reference_walk(db, limit: int) -> float:
    """The previous verify_chain (ORM rows in keyset batches of 5,000, hash_event_row), over
    the first `limit` events: events per second."""
    began = time.perf_counter()
    last, prev = 0, audit.GENESIS_HASH
    while last < limit:
        rows = db.execute(
            select(AuditEvent).where(AuditEvent.seq > last, AuditEvent.seq <= limit).order_by(AuditEvent.seq).limit(5000)
        ).scalars().all()
        if not rows:
            break
        for row in rows:
            assert row.prev_hash == prev and audit.hash_event_row(row) == row.hash
            prev, last = row.hash, row.seq
        db.expunge_all()
    return last / (time.perf_counter() - began)


def measure_verify(ctx: DomainContext, figures: Round) -> None:
    workers = os.cpu_count() or 1
    with reading(ctx.sessions) as db:
        began = time.perf_counter()
        result = checkpoints.verify_log(db, [], {}, workers=workers)
        figures.verify_s = time.perf_counter() - began
    figures.verified, figures.verify_ok, figures.workers = result.events, result.ok, workers


def _sha_floor(url: str, limit: int) -> float:
    """SHA-256 alone over the first `limit` events' canonical bytes (built beforehand): the
    events per second no verifier in one process can pass."""
    engine = make_engine(url, **({} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 0}))
    try:
        with reading(make_session_factory(engine)) as db:
            encoded = [audit.encode_stored(**dict(zip(_STORED_FIELDS, row[:13]))) for rows in audit._batches(db, 0, limit, audit.STREAM_BATCH) for row in rows]
    finally:
        engine.dispose()
    sha256 = hashlib.sha256
    began = time.perf_counter()
    for data in encoded:
        sha256(data).hexdigest()
    return len(encoded) / (time.perf_counter() - began)


_STORED_FIELDS = (
    "seq", "occurred_at", "type", "actor_slack_id", "actor_email", "actor_role", "account", "customer_user",
    "request_id", "session_id", "details", "prev_hash", "encoding",
)


def measure_verify_once(ctx: DomainContext, url: str, facts: Facts) -> None:
    with reading(ctx.sessions) as db:
        facts.reference_per_s = _reference_walk(db, REFERENCE_SAMPLE)
    # The current walk in one process (bench only: the private walker, bounded to a prefix).
    with reading(ctx.sessions) as db:
        walk = audit._Walk()
        began = time.perf_counter()
        problem = walk.run(db, after=0, upto=SERIAL_SAMPLE, batch=audit.STREAM_BATCH)
        facts.serial_per_s = walk.checked / (time.perf_counter() - began)
        facts.serial_events = walk.checked
        assert problem is None, problem
    facts.sha_per_s = _sha_floor(url, SHA_SAMPLE)


def _export_peak(ctx: DomainContext, account: str, fmt: exports.ExportFormat) -> tuple[int, int, int, float]:
    """(sessions, bytes, peak traced bytes, seconds) for one access export read to the end."""
    query = log_query.resolve(log_query.LogOptions(account=account, since=f"{log_query.MAX_DAYS}d"), now=END)
    assert isinstance(query, log_query.LogQuery), query
    actor = Actor(slack_id=VIEWER, email="security1@corp.example", role="security")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        began = time.perf_counter()
        produced = exports.access_export(ctx.sessions, query, fmt, actor=actor, via="cli", now=END)
        assert isinstance(produced, exports.AccessExport), produced
        size = sum(len(chunk) for chunk in access_file(produced).chunks)
        seconds = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with reading(ctx.sessions) as db:
        sessions = db.execute(
            select(func.count()).select_from(ImpersonationSession).join(Account, Account.id == ImpersonationSession.account_id).where(Account.external_id == account)
        ).scalar_one()
    return sessions, size, peak, seconds


def measure_exports(ctx: DomainContext, scale: Scale, figures: Facts) -> None:
    # a quiet account, one with a few times iter_entries' batch of 500, and the busiest
    quiet, middle, busy = account_name(scale.accounts - 7), account_name(min(100, scale.accounts // 4)), account_name(1)
    rows = []
    for fmt in (exports.ExportFormat.CSV, exports.ExportFormat.JSON):
        _export_peak(ctx, quiet, fmt)  # warm: templates, compiled SQL, connection pool
        for label, account in (("quiet", quiet), ("middling", middle), ("busiest", busy)):
            sessions, size, peak, seconds = _export_peak(ctx, account, fmt)
            rows.append((fmt.value, f"{label} ({account})", sessions, size, peak, seconds))
    figures.exports = rows


def measure_round(backend: str, ctx: DomainContext, url: str, accounts: list[str], repetitions: int, round_number: int) -> Round:
    load = os.getloadavg()[0]
    print(f"[audit] round {round_number + 1} {backend}: lookups", flush=True)
    figures = measure_lookups(ctx, accounts, repetitions, round_number, backend, load)
    print(f"[audit] round {round_number + 1} {backend}: appends", flush=True)
    measure_appends(ctx, figures)
    measure_append_processes(url, figures)
    print(f"[audit] round {round_number + 1} {backend}: verify", flush=True)
    measure_verify(ctx, figures)
    return figures


def measure_once(backend: str, ctx: DomainContext, url: str, scale: Scale, accounts: list[str]) -> Facts:
    facts = Facts(backend)
    with reading(ctx.sessions) as db:
        facts.accounts = db.execute(select(func.count()).select_from(Account)).scalar_one()
        facts.sessions = db.execute(select(func.count()).select_from(ImpersonationSession)).scalar_one()
        facts.events_before = db.execute(select(func.max(AuditEvent.seq))).scalar_one() or 0
    print(f"[audit] {backend}: first lookups, exports, verify samples", flush=True)
    measure_cold_lookups(ctx, accounts, facts)
    measure_exports(ctx, scale, facts)
    measure_verify_once(ctx, url, facts)
    return facts


def _spread(values: list[float], fmt: str) -> str:
    """The median of the rounds (lowest–highest round)."""
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _pooled(rounds: list[Round], raw: bool, quantile: str) -> str:
    """Milliseconds over all rounds pooled (lowest–highest round)."""
    pooled = Latency.of([s for r in rounds for s in (r.raw_seconds if raw else r.lookup_seconds)], 1.0)
    per_round = [getattr(r.raw if raw else r.lookup, quantile) for r in rounds]
    return f"{getattr(pooled, quantile):.1f} ({min(per_round):.1f}–{max(per_round):.1f})"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def run(*, backends: list[str], count: int) -> str:
    """The markdown section for docs/benchmarks.md. `count` (requests per HTTP path) sets the
    lookups too: count // 24 repetitions over the 24 accounts per round, at least 20."""
    scale = Scale.from_env()
    repetitions = max(20, count // LOOKUP_ACCOUNTS)
    began = time.perf_counter()
    urls = history_databases(backends, scale)
    prepared = time.perf_counter() - began
    accounts = _lookup_accounts(scale)
    contexts = {backend: _context(urls[backend]) for backend in backends}
    facts = {backend: measure_once(backend, contexts[backend], urls[backend], scale, accounts) for backend in backends}
    rounds: dict[str, list[Round]] = {backend: [] for backend in backends}
    for number in range(ROUNDS):
        for backend in backends if number % 2 == 0 else list(reversed(backends)):
            rounds[backend].append(measure_round(backend, contexts[backend], urls[backend], accounts, repetitions, number))
    for ctx in contexts.values():
        ctx.sessions.kw["bind"].dispose()
    full = scale.factor >= 1
    first = next(iter(facts.values()))
    lines = [
        "## Audit log at scale",
        "",
        (
            f"Generated history (bench/audit_history.py): {first.accounts:,} accounts, {first.sessions:,} sessions "
            f"and {scale.events:,} audit events over two years, one valid hash chain"
            + (
                "."
                if full
                else f" — **BENCH_AUDIT_SCALE={scale.factor:g}: {scale.events:,} events, not the full 10,000,000**"
                + (
                    f" (BENCH_AUDIT_ACCOUNTS={first.accounts}: fewer accounts than the scale gives, so that the busiest is "
                    "nearer its full-size load: 2,373 sessions in 90 days at full size)."
                    if os.environ.get("BENCH_AUDIT_ACCOUNTS")
                    else "."
                )
            )
            + f" Preparing the databases took {prepared:.0f} s this run (0 when cached from an earlier run)."
        ),
        f"{ROUNDS} rounds, the backends in turn (order reversed every other round); in each, per backend, the lookups beside "
        "the raw query, the appends, and `audit verify` over the whole chain. Milliseconds read *all rounds pooled "
        "(lowest–highest round)*; rates and ratios *median of the rounds (lowest–highest round)*. "
        "1-minute load average at the start of each round (above 2: something else was waiting for a core): "
        + "; ".join(f"{b} " + ", ".join(f"{r.load:.1f}" for r in rounds[b]) for b in backends)
        + ".",
        "",
        "| backend | figure | goal | baseline | measured | ratio to baseline | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backend in backends:
        rs, f = rounds[backend], facts[backend]
        ratio99 = [r.lookup.p99_ms / r.raw.p99_ms for r in rs]
        ratio50 = [r.lookup.p50_ms / r.raw.p50_ms for r in rs]
        pooled99 = Latency.of([s for r in rs for s in r.lookup_seconds], 1.0).p99_ms
        median_ratio99 = statistics.median(ratio99)
        verify = [r.verify_per_s for r in rs]
        floor = f.sha_per_s * rs[0].workers
        lines += [
            f"| {backend} | `/impersonation-log` p99, ms ({rs[0].lookup.count:,} lookups a round) | ≤ {LOOKUP_GOAL_MS:.0f} ms and "
            f"≤ {LOOKUP_RAW_GOAL:g} × raw | raw indexed query {_pooled(rs, True, 'p99_ms')} | {_pooled(rs, False, 'p99_ms')} | "
            f"{_spread(ratio99, '.2f')} | {_met(pooled99 <= LOOKUP_GOAL_MS)} (≤ {LOOKUP_GOAL_MS:.0f} ms), {_met(median_ratio99 <= LOOKUP_RAW_GOAL)} (× raw) |",
            f"| {backend} | `/impersonation-log` p50, ms | – | raw indexed query {_pooled(rs, True, 'p50_ms')} | "
            f"{_pooled(rs, False, 'p50_ms')} | {_spread(ratio50, '.2f')} | – |",
            f"| {backend} | appends, 8 writer threads, events/s | {'≥ 2,000' if backend == 'postgresql' else '–'} | – | "
            f"{_spread([r.appends_per_s for r in rs], ',.0f')} (p99 {statistics.median(r.append_p99_ms for r in rs):.1f} ms; "
            f"{'consecutive seqs' if all(r.appends_consecutive for r in rs) else 'GAPS'}) | – | "
            f"{_met(statistics.median(r.appends_per_s for r in rs) >= APPEND_GOAL) if backend == 'postgresql' else '–'} |",
            f"| {backend} | appends, 8 writer processes, events/s | {'≥ 2,000' if backend == 'postgresql' else '–'} | – | "
            f"{_spread([r.appends_processes_per_s for r in rs], ',.0f')} (p99 {statistics.median(r.append_processes_p99_ms for r in rs):.1f} ms) | – | "
            f"{_met(statistics.median(r.appends_processes_per_s for r in rs) >= APPEND_GOAL) if backend == 'postgresql' else '–'} |",
            f"| {backend} | `audit verify`, events/s ({rs[-1].verified:,} events, {rs[0].workers} processes; "
            f"{'OK' if all(r.verify_ok for r in rs) else 'BROKEN'}) | ≥ {VERIFY_GOAL:,.0f} | SHA-256 alone, {rs[0].workers} × {f.sha_per_s:,.0f} | "
            f"{_spread(verify, ',.0f')} | {_spread([v / floor for v in verify], '.2f')} | {_met(statistics.median(verify) >= VERIFY_GOAL)} |",
        ]
    lines += [
        "",
        "Lookups: `log_query.look_up` as the listener calls it, `account:X` (the default 90 days), each one also "
        "appending and committing its `log.viewed` event; the raw indexed query, for the same account just before or "
        "after it: the account's id, its sessions in the period counted and the first page's keys, plain SQL through "
        "the driver. The 24 accounts are the 4 busiest and 20 drawn at random. Appends: 8 writers × 500, as threads of "
        "one process (as in one gunicorn worker) and as separate processes (as across workers and the scheduler), each "
        "`audit.append` in its own transaction. Verify: `checkpoints.verify_log` in a read-only transaction with one "
        "worker process per core, as `impersonation-bot audit verify` runs it, over the whole chain (including the events "
        "the lookups and appends added); SHA-256 alone is hashlib over the first "
        f"{SHA_SAMPLE:,} events' canonical bytes, built beforehand, in one process.",
        "",
        "| backend | sessions in 90 days (busiest / median of the 24) | lookup p99: 4 busiest / 20 others (median of rounds) "
        "| first lookup per account p50 / max | verify, previous implementation (ORM rows + reference encoder, first 50,000 events) "
        "| verify, current walk in one process |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for backend in backends:
        rs, f = rounds[backend], facts[backend]
        lines.append(
            f"| {backend} | {f.busiest_90d:,} / {f.median_90d:,.0f} | {statistics.median(r.lookup_busiest_p99_ms for r in rs):.1f} / "
            f"{statistics.median(r.lookup_others_p99_ms for r in rs):.1f} ms | {f.lookup_cold_p50_ms:.1f} / {f.lookup_cold_max_ms:.1f} ms | "
            f"{f.reference_per_s:,.0f} events/s | {f.serial_per_s:,.0f} events/s (first {f.serial_events:,}) |"
        )
    lines += [
        "",
        "Exports stream: the access export (`exports.access_export`, as the CLI and the Export buttons run it) of "
        "each account's whole history, read to the end; the peak of Python allocations (tracemalloc) while "
        "producing it. Sessions are read in keyset batches of 500 (`log_query.iter_entries`), so the peak "
        "stops growing once an export is longer than one batch.",
        "",
        "| backend | format | account | sessions | bytes | peak traced memory | time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backend in backends:
        for fmt, label, sessions, size, peak, seconds in facts[backend].exports or []:
            lines.append(f"| {backend} | {fmt} | {label} | {sessions:,} | {size / 1024:,.0f} KiB | {peak / 1024:,.0f} KiB | {seconds:.2f} s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(backends=["sqlite", "postgresql"], count=1000))
