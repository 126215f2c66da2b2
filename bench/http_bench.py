"""HTTP latency of the hot paths as a person and as Slack feel it, each against a floor
measured in the same run: `./scripts/bench --only http` (about 7 minutes per database).

The floor (bench/floor_app.py) is a bare Bolt + Flask app that acks a signed `/impersonate`
after one `views.open`; the bot (bot.web.wsgi) runs its real paths. Both are served side by
side by gunicorn with the bot's configuration (bench/gunicorn_conf.py: bot/web/gunicorn_conf.py
plus a probe of the collector's pauses), against the same no-validation Slack stand-in in its
own process (bench/slack_stub.py). On a shared machine absolute times drift by tens of percent
between minutes, so every figure is reported as a ratio to the floor of the same round, and
floor and bot runs alternate (the order reversed every other round).

- `/impersonate` ack: a signed slash command; Bolt acks after `views.open` (process_before_response).
- link redemption: POST /l/<token> with its CSRF proof (the GET that fetches the form is not timed).
- approve click: a signed block_actions Approve on a pending request (N = 1), answered once the
  decision and the outbox rows for every message it owes have committed; those messages are
  sent after the answer by the worker's background thread, and the bench waits until they all
  went out (outbox drained) before the next run, so no run pays for the previous one.

Each round runs every path at each client count (BENCH_CLIENTS, default "1,20"): one client is
a person's latency (a support team sends well under a request a second); 20 closed-loop clients
that never pause are saturation, reported for the outliers, with no goal. Requests between the
runs (submissions, landing pages) are set-up and not timed. BENCH_ROUNDS (3) sets the rounds,
`--count` the requests per path and run.

Beside each run the bench records the collector's pauses in the server's workers
(bench/gunicorn_conf.py) and in its own process, the machine's stalls seen by an idle process
(bench/stall_probe.py), the server's own time for each request (X-Bench-Id), the time the
web threads waited for a CPU and how the shared machine's CPUs went to its sessions
(bench/cpu.py), and says for each request over 250 ms which of them it overlapped
(bench/outlier_bench.py runs the same with the machine's share changed).
"""
from __future__ import annotations

import functools
import gc
import http.client
import itertools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import func, select, text

from bench import payloads
from bench.common import REPO_ROOT, fresh_database
from bench.cpu import CpuMeter, Sessions, autogroup_seconds, children, run_queue_seconds
from bench.loadgen import Request
from bench.slack_stub import SlackStub
from bot.db.engine import make_engine, make_session_factory
from bot.db.models import ImpersonationRequest, MessageRef, OutboxMessage
from bot.domain import directory
from bot.domain.audit import Actor
from bot.slack.ids import ActionId, BlockId, CallbackId

CLIENT_COUNTS = tuple(int(c) for c in os.environ.get("BENCH_CLIENTS", "1,20").split(",") if c)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
#: the agents the requests come from, whatever the client count (one agent with hundreds of
#: live sessions is not a load anyone sends)
AGENTS = [f"UAGENT{n:03d}" for n in range(20)]
FLOOR = "floor (Bolt + Flask, ack after views.open)"
ACK = "/impersonate ack"
REDEEM = "link redemption (POST)"
APPROVE = "approve click"
PATHS = (ACK, REDEEM, APPROVE)
#: single client, p50 and p99, as a multiple of the floor measured in the same run
GOALS = {ACK: 1.25, REDEEM: 3.0, APPROVE: 4.0}
#: the saturation runs' bar for outliers
SLOW_MS = 250.0
ACCOUNTS = 200

POLICY = """
[links]
redeem_window_minutes = 10
[requests]
reason_min_length = 10
ticket_required = true
duration_choices = [15, 30, 60]
[gating]
flags = ["sensitive"]
approvals_required = 1
pending_ttl_minutes = 60
# Working hours all week: with the default hours (08:00-19:00 on weekdays) a run in the evening
# raised an off-hours anomaly alert on every grant, so the figures depended on the time of day
# and the paced alert posts, left to the scheduler (not run here), kept the outbox from draining.
[alerts]
business_hours = { start = "00:00", end = "24:00", days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] }
[roles.support]
members = [%(agents)s]
max_minutes = 60
scope = "any"
[roles.manager]
members = ["UMANAGER1", "UMANAGER2"]
max_minutes = 60
scope = "any"
can_approve = true
"""



def _directory(path: Path, accounts: int, customers: int = 0) -> None:
    """`accounts` accounts with one user each (acct<n>/user<n>), and `customers` more users
    spread over them (cust<n>) and on the gated account (gated<n>) for the submissions: an agent
    with an access already open to a customer user gets no new one (bot/domain/requests.py),
    so every submission of the bench takes an agent and customer user pair of its own."""
    records = []
    for n in range(accounts):
        records.append({"kind": "account", "account": f"acct{n}", "name": f"Account {n}"})
        records.append({"kind": "user", "account": f"acct{n}", "user": f"user{n}", "email": f"user{n}@acct{n}.example", "name": f"User {n}"})
    records.append({"kind": "account", "account": "gated", "name": "Gated Co"})
    records.append({"kind": "user", "account": "gated", "user": "gated-user", "email": "u@gated.example", "name": "Gated User"})
    for n in range(customers):
        account = f"acct{n % accounts}"
        records.append({"kind": "user", "account": account, "user": f"cust{n}", "email": f"cust{n}@{account}.example", "name": f"Customer {n}"})
        records.append({"kind": "user", "account": "gated", "user": f"gated{n}", "email": f"g{n}@gated.example", "name": f"Gated {n}"})
    path.write_text(json.dumps(records))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving `target` with the bot's configuration and environment."""

    def __init__(self, target: str, env: dict[str, str], log: Path, gc_log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gc_log = gc_log
        self.request_log = log.with_suffix(".requests")
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:bench.gunicorn_conf", target],
            cwd=REPO_ROOT,
            env={**env, "PORT": str(self.port), "BENCH_GC_LOG": str(gc_log), "BENCH_REQUEST_LOG": str(self.request_log)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn ({target}) did not start: " + log.read_text()[-3000:])

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Scheduler:
    """`impersonation-bot scheduler` (the Procfile's clock) with the bench's environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "bot.cli", "scheduler"], cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def stop(self) -> None:
        """SIGTERM: the running jobs finish first (bot/jobs/scheduler.py run_until_stopped)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def server_env(db_url: str, fake: SlackStub, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_SIGNING_SECRET": payloads.SIGNING_SECRET,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": db_url,
        "IMPERSONATION_POLICY": str(workdir / "policy.toml"),
        "SIGNING_KEY_FILE": str(workdir / "signing_key.pem"),
        "PUBLIC_BASE_URL": "http://bot.bench",
        "PRODUCT_LAUNCH_URL": "http://product.bench/launch",
        "WEB_CONCURRENCY": os.environ.get("BENCH_WORKERS", "2"),
        **({"GUNICORN_CMD_ARGS": f"--threads {os.environ['BENCH_THREADS']}"} if os.environ.get("BENCH_THREADS") else {}),
    }


@dataclass(frozen=True)
class Reply:
    status: int
    text: str


class Browser:
    """One keep-alive HTTP/1.1 connection with a cookie jar: what Slack's and a browser's
    connections look like to the server. Plain http.client rather than `requests`, whose
    per-request CPU (about 1 ms here) would be taken from the server under test on this
    2-core machine; the load generator is not what is being measured."""

    def __init__(self, base_url: str) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self._address = (host, int(port or 80))
        self._connection: http.client.HTTPConnection | None = None
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if self.cookies and "Cookie" not in headers:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):  # a keep-alive connection the server closed is opened again once
            if self._connection is None:
                self._connection = http.client.HTTPConnection(*self._address, timeout=30)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return Reply(response.status, data.decode("utf-8", "replace"))
        raise AssertionError("unreachable")

    def send(self, request: Request) -> Reply:
        return self.request(request.method, request.target, body=request.body, headers=dict(request.headers))

    def post_form(self, path: str, fields: dict[str, str]) -> Reply:
        return self.request("POST", path, body=urlencode(fields).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None




def _signed_post(http: Browser, body: str) -> Reply:
    return http.request("POST", "/slack/events", body=body.encode(), headers=payloads.headers(body))


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _owed(factory) -> int:
    """Slack messages due by now and not yet sent by the web workers' background threads
    (reminders to approvers fall due later; the security channel's alerts are paced by the
    scheduler, which the bench does not run)."""
    now = datetime.now(timezone.utc)
    with factory() as db:
        return db.execute(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state.in_(("pending", "sending")), OutboxMessage.due_at <= now, OutboxMessage.kind != "alert")
        ).scalar_one()


def _drain(factory, timeout: float = 120) -> float | None:
    """Seconds until every Slack message owed so far has been sent (by the workers' background
    threads, after the answers); None if not within `timeout`."""
    started = time.perf_counter()
    while _owed(factory):
        if time.perf_counter() - started > timeout:
            return None
        time.sleep(0.02)
    return time.perf_counter() - started


@dataclass
class Run:
    what: str
    clients: int
    round: int
    #: (wall-clock start, seconds) of every request
    requests: list[tuple[float, float]]
    wall: float
    #: web CPU milliseconds per request (the server's master and workers, bench/cpu.py)
    web_cpu_ms: float
    window: tuple[float, float]
    drained_after: float | None = None
    #: milliseconds per request the web server's threads waited, runnable, for a CPU the
    #: machine's other work held (bench/cpu.py run_queue_seconds)
    web_wait_ms: float = 0.0
    #: how the machine's CPUs were shared between sessions during the run (bench/cpu.py)
    sessions: Sessions | None = None
    #: the bench's session's autogroup nice during the run (bench/outlier_bench.py)
    session_nice: int = 0
    #: the X-Bench-Id of each request, in the order of `requests`
    ids: list[str] = field(default_factory=list)
    slow: list[Slow] = field(default_factory=list)
    gc_pauses: list[float] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [s for _, s in self.requests]


def quantile(seconds: list[float], q: float) -> float:
    """Milliseconds at quantile q (statistics.quantiles, inclusive)."""
    if len(seconds) == 1:
        return seconds[0] * 1000
    return statistics.quantiles(sorted(seconds), n=100, method="inclusive")[round(q * 100) - 1] * 1000


def _run_clients(what: str, jobs: list[Request], *, clients: int, round_: int, server: Server) -> Run:
    """Send the requests from `clients` threads, each with its own keep-alive connection and
    sending its next request when the previous one was answered (closed loop)."""
    lock = threading.Lock()
    queue = list(reversed(jobs))
    timings: list[tuple[float, float]] = []
    ids: list[str] = []
    errors: list[str] = []

    def client() -> None:
        http = Browser(server.url)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop()
                try:
                    at = time.time()
                    elapsed = _timed(functools.partial(http.send, job), job.expect)
                except Exception as exc:  # noqa: BLE001 - reported after the run
                    errors.append(repr(exc) + "\n" + traceback.format_exc())
                    continue
                with lock:
                    timings.append((at, elapsed))
                    ids.append(job.headers.get(REQUEST_ID, ""))
        finally:
            http.close()

    meter, waits = CpuMeter({"web": server.pids}), CpuMeter({"web": server.pids}, measure=run_queue_seconds)
    sessions_before, shared_from = autogroup_seconds(), time.perf_counter()
    before, waited_before = meter.snapshot(), waits.snapshot()
    began_wall, began = time.time(), time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    spent, waited = meter.spent(before, meter.snapshot()), waits.spent(waited_before, waits.snapshot())
    sessions = Sessions.between(sessions_before, autogroup_seconds(), time.perf_counter() - shared_from)
    if errors:
        raise RuntimeError(f"{what}: {len(errors)} requests failed, first: {errors[0]}")
    window = (began_wall, began_wall + wall)
    return Run(what, clients, round_, timings, wall, 1000 * spent["web"] / len(jobs), window, ids=ids, web_wait_ms=1000 * waited["web"] / len(jobs), sessions=sessions)


def _timed(call: Callable[[], Reply], expect: int = 200) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status != expect:
        raise RuntimeError(f"HTTP {response.status}: {response.text[:200]}")
    return elapsed


#: a header naming each request the bench sends, so that the server's own timing of it
#: (bench/gunicorn_conf.py, BENCH_REQUEST_LOG) can be matched with the client's
REQUEST_ID = "X-Bench-Id"
_request_ids = itertools.count(1)


def _request(kind: str, method: str, target: str, body: bytes, headers: dict[str, str]) -> Request:
    return Request(kind, method, target, body, {**headers, REQUEST_ID: str(next(_request_ids))})


def _signed(kind: str, body: str) -> Request:
    return _request(kind, "POST", "/slack/events", body.encode(), payloads.headers(body))


def _events(path: Path) -> list[tuple[float, float]]:
    """(wall-clock start, seconds) lines of a probe file: the last field is the duration."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        out.append((float(fields[-2]), float(fields[-1])))
    return out


@dataclass(frozen=True)
class Slow:
    """A request over SLOW_MS, and what it overlapped."""

    ms: float
    #: a collector pause of 10 ms or more in the server's workers (bench/gunicorn_conf.py)
    server_gc: bool
    #: a machine stall: the idle probe woken 50 ms or more late (bench/stall_probe.py)
    stall: bool
    #: a collector pause of 10 ms or more in the bench's own process, the client
    client_gc: bool
    #: milliseconds from gunicorn's pre_request to its post_request for it: the app's own
    #: time; the rest was spent before (accept, poller, thread pool queue) or in the client
    server_ms: float | None

    @property
    def explained(self) -> bool:
        return self.server_gc or self.stall or self.client_gc


#: (wall-clock start, seconds) of every collector pass of 10 ms or more in this process
CLIENT_GC: list[tuple[float, float]] = []


def record_client_gc() -> None:
    """Record this process's own collector pauses (once per process): the client's threads
    stop during one as the server's do, and the request being timed looks slow."""
    if any(getattr(callback, "bench_client_gc", False) for callback in gc.callbacks):
        return
    started = [0.0, 0.0]

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            started[0], started[1] = time.perf_counter(), time.time()
        elif time.perf_counter() - started[0] >= 0.010:
            CLIENT_GC.append((started[1], time.perf_counter() - started[0]))

    record.bench_client_gc = True  # type: ignore[attr-defined]
    gc.callbacks.append(record)


def _server_times(path: Path | None) -> dict[str, float]:
    """Request id -> the seconds the server's app took for it (bench/gunicorn_conf.py)."""
    if path is None or not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        out[fields[1]] = float(fields[3])
    return out


def overlapping(
    requests: list[tuple[float, float]], window: tuple[float, float], gc_log: Path, stall_log: Path, *, ids: list[str] | None = None, request_log: Path | None = None
) -> tuple[list[Slow], list[float], list[float]]:
    """Match slow requests, (wall-clock start, seconds), against the collector's pauses in
    their server and in this process, the machine's stalls over the same wall-clock interval,
    and the server's own time for each (by request id): every request over SLOW_MS, and the
    window's server pauses and stalls (seconds)."""
    pauses = [e for e in _events(gc_log) if window[0] <= e[0] <= window[1]]
    stalls = [e for e in _events(stall_log) if window[0] <= e[0] <= window[1]]
    client = [e for e in CLIENT_GC if window[0] <= e[0] <= window[1]]
    served = _server_times(request_log)

    def overlaps(events: list[tuple[float, float]], at: float, seconds: float) -> bool:
        return any(start < at + seconds and start + length > at for start, length in events)

    slow = []
    for n, (at, s) in enumerate(requests):
        if s * 1000 > SLOW_MS:
            server = served.get(ids[n]) if ids else None
            slow.append(Slow(s * 1000, overlaps(pauses, at, s), overlaps(stalls, at, s), overlaps(client, at, s), None if server is None else server * 1000))
    return slow, [p for _, p in pauses], [s for _, s in stalls]


def _explain(run: Run, server: Server, stall_log: Path) -> None:
    run.slow, run.gc_pauses, run.stalls = overlapping(run.requests, run.window, server.gc_log, stall_log, ids=run.ids, request_log=server.request_log)


class Bench:
    """One database, the Slack stand-in, the bot and the floor."""

    def __init__(self, backend: str, count: int, db_url: str, fake: SlackStub, workdir: Path) -> None:
        self.backend, self.count, self.fake, self.workdir = backend, count, fake, workdir
        record_client_gc()
        self.engine = make_engine(db_url)
        self.factory = make_session_factory(self.engine)
        with self.factory() as db, db.begin():
            directory.import_directory(db, workdir / "directory.json", actor=Actor.system("bench"))
            directory.set_flag(db, account_external_id="gated", flag=directory.AccountFlag.SENSITIVE, on=True, actor=Actor.system("bench"), note="bench")
        # The served apps' PostgreSQL connections carry a name of their own, so the CPU of
        # their backends can be told from everyone else's on a shared server (postgres_pids).
        self.application_name = f"impbot-bench-{os.getpid()}"
        if backend == "postgresql":
            db_url = f"{db_url}{'&' if '?' in db_url else '?'}application_name={self.application_name}"
        env = server_env(db_url, fake, workdir)
        self.bot = Server("bot.web.wsgi:app", env, workdir / "bot.log", workdir / "bot-gc.log")
        self.floor = Server("bench.floor_app:app", env, workdir / "floor.log", workdir / "floor-gc.log")
        self.stall_log = workdir / "stalls.log"
        self.probe = subprocess.Popen([sys.executable, "-m", "bench.stall_probe", str(self.stall_log)], cwd=REPO_ROOT)
        self.setup = Browser(self.bot.url)
        self.posted = 0
        self.submissions = 0

    def postgres_pids(self) -> list[int]:
        """The PostgreSQL backends serving the bot's and the floor's connections now (none on SQLite)."""
        if self.backend != "postgresql":
            return []
        with self.engine.connect() as conn:
            return list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"), {"name": self.application_name}).scalars())

    def close(self) -> None:
        self.setup.close()
        self.probe.terminate()
        self.probe.wait(timeout=10)
        self.floor.stop()
        self.bot.stop()
        self.engine.dispose()

    def ack_requests(self, count: int | None = None) -> list[Request]:
        """Signed `/impersonate <account>` slash commands, from the agents in turn."""
        return [
            _signed(ACK, payloads.slash_command(f"acct{n % ACCOUNTS}", user_id=AGENTS[n % len(AGENTS)]))
            for n in range(self.count if count is None else count)
        ]

    def warm_up(self) -> None:
        """Connection pools, imports, first queries, in every worker (20 connections spread
        over them); not timed."""
        for server in (self.floor, self.bot):
            _run_clients("warm-up", self.ack_requests(60), clients=20, round_=0, server=server)
        _drain(self.factory)

    def _submit(self, *, gated: bool) -> None:
        """A request from the next agent and customer user pair (see `_directory`)."""
        n, self.submissions = self.submissions, self.submissions + 1
        agent, customer = AGENTS[n % len(AGENTS)], n // len(AGENTS)
        account, user = ("gated", f"gated{customer}") if gated else (f"acct{customer % ACCOUNTS}", f"cust{customer}")
        values = payloads.request_values(account=account, user=user)
        reply = _signed_post(self.setup, payloads.view_submission(values, user_id=agent, callback_id=CallbackId.IMPERSONATE_REQUEST.value))
        if reply.status != 200:
            raise RuntimeError(f"submission refused: HTTP {reply.status} {reply.text[:200]}")

    def _new_links(self) -> list[str]:
        posted = self.fake.posted_messages(self.posted)
        self.posted += len(posted)
        found = (re.search(r"<(http://bot\.bench/l/[A-Za-z0-9_-]{43})\|", json.dumps(m.get("blocks"))) for m in posted)
        return [match.group(1) for match in found if match]

    def redemption_requests(self, count: int | None = None) -> list[Request]:
        """`count` granted requests submitted through the app, their link DMs, and each link's
        landing page fetched as the browser that will redeem it: the redeeming POSTs, each
        with that browser's CSRF cookie and proof."""
        count = self.count if count is None else count
        self._new_links()
        for _ in range(count):
            self._submit(gated=False)
        links: list[str] = []
        _wait_for("the link DMs", lambda: len(links.extend(self._new_links()) or links) >= count)
        requests = []
        browser = Browser(self.bot.url)
        for link in links[:count]:
            path = link.removeprefix("http://bot.bench")
            browser.cookies = {}
            page = browser.request("GET", path)
            csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))
            cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
            requests.append(_request(REDEEM, "POST", path, urlencode({"csrf": csrf}).encode(), headers))
        browser.close()
        return requests

    def approve_requests(self, count: int | None = None) -> list[Request]:
        """`count` pending requests on the gated account, and a signed Approve click on the
        approver's DM for each."""
        count = self.count if count is None else count

        def pending_now() -> set[str]:
            with self.factory() as db:
                return set(db.execute(select(ImpersonationRequest.id).where(ImpersonationRequest.state == "pending")).scalars())

        # requests an earlier run left pending (an open-loop run that stopped sending) are not these
        earlier = pending_now()
        for _ in range(count):
            self._submit(gated=True)
        pending = sorted(pending_now() - earlier)
        if len(pending) != count:
            raise RuntimeError(f"{len(pending)} new pending requests, expected {count}")

        def refs() -> dict[str, MessageRef]:
            with self.factory() as db:
                rows = db.execute(select(MessageRef).where(MessageRef.recipient == "UMANAGER1", MessageRef.subject_id.in_(pending))).scalars()
                return {r.subject_id: r for r in rows}

        _wait_for("the approvers' DMs", lambda: len(refs()) >= count)
        found = refs()
        approve = ActionId.APPROVE_REQUEST.value
        return [
            _signed(APPROVE, payloads.block_action(approve, r, block_id=BlockId.APPROVAL_ACTIONS.value, user_id="UMANAGER1", channel=found[r].channel, message_ts=found[r].ts))
            for r in pending
        ]

    def round(self, round_: int, clients: int) -> list[Run]:
        """Every path once at this client count, the floor among them; the order is reversed
        in even rounds so drift over the round hits the floor and the paths alike."""
        prepared = {ACK: self.ack_requests(), REDEEM: self.redemption_requests(), APPROVE: self.approve_requests()}
        if _drain(self.factory) is None:
            with self.factory() as db:
                kinds = db.execute(select(OutboxMessage.kind, func.count()).where(OutboxMessage.state.in_(("pending", "sending"))).group_by(OutboxMessage.kind)).all()
            raise RuntimeError(f"the set-up's Slack messages were not sent within 120 s: {kinds}")
        order = [FLOOR, *PATHS] if round_ % 2 else [*reversed(PATHS), FLOOR]
        runs = []
        for what in order:
            server = self.floor if what == FLOOR else self.bot
            jobs = self.ack_requests() if what == FLOOR else prepared[what]
            run = _run_clients(what, jobs, clients=clients, round_=round_, server=server)
            if what != FLOOR:
                run.drained_after = _drain(self.factory)
            _explain(run, server, self.stall_log)
            runs.append(run)
            print(
                f"  [{self.backend} round {round_}, {clients} client(s)] {what}: p50 {quantile(run.seconds, .5):.1f} ms, "
                f"p99 {quantile(run.seconds, .99):.1f} ms, max {max(run.seconds) * 1000:.0f} ms, {len(run.slow)} over {SLOW_MS:.0f} ms",
                flush=True,
            )
        return runs


@contextmanager
def served(backend: str, *, count: int, submissions: int) -> Iterator[Bench]:
    """A fresh database, the Slack stand-in, and the bot and the floor served, warmed up; room
    in the directory for `submissions` requests (see `_directory`)."""
    people = {a: {"email": f"{a.lower()}@corp.example", "tz": "Europe/Paris"} for a in [*AGENTS, "UMANAGER1", "UMANAGER2"]}
    with fresh_database(backend) as db_url, tempfile.TemporaryDirectory(prefix="impbot-bench-") as folder, SlackStub(people) as fake:
        workdir = Path(folder)
        (workdir / "policy.toml").write_text(POLICY % {"agents": ", ".join(f'"{a}"' for a in AGENTS)})
        _directory(workdir / "directory.json", accounts=ACCOUNTS, customers=submissions // len(AGENTS) + 1)
        bench = Bench(backend, count, db_url, fake, workdir)
        try:
            bench.warm_up()
            yield bench
        finally:
            bench.close()


def run_backend(backend: str, *, count: int) -> list[Run]:
    runs: list[Run] = []
    with served(backend, count=count, submissions=2 * ROUNDS * len(CLIENT_COUNTS) * count) as bench:
        for round_ in range(1, ROUNDS + 1):
            for clients in CLIENT_COUNTS:
                runs += bench.round(round_, clients)
    return runs


# --- the report --------------------------------------------------------------------------


def _ratio_cell(path_runs: list[Run], floor_runs: list[Run], q: float) -> tuple[float, str]:
    """The median over the rounds of (the path's quantile / the floor's in the same round),
    with the lowest and highest round beside it."""
    floors = {r.round: quantile(r.seconds, q) for r in floor_runs}
    per_round = sorted(quantile(r.seconds, q) / floors[r.round] for r in path_runs)
    middle = statistics.median(per_round)
    return middle, f"{middle:.2f} ({per_round[0]:.2f}–{per_round[-1]:.2f})"


def _ms_cell(runs: list[Run], q: float) -> str:
    per_round = sorted(quantile(r.seconds, q) for r in runs)
    return f"{quantile([s for r in runs for s in r.seconds], q):.1f} ({per_round[0]:.1f}–{per_round[-1]:.1f})"


def render(results: dict[str, list[Run]], *, count: int) -> str:
    lines = [
        "## HTTP hot paths against the floor (`bench/http_bench.py`)",
        "",
        f"{ROUNDS} rounds; in each, the floor and the three paths run one after the other ({count} requests each, the order "
        f"reversed every other round) with {' and with '.join(str(c) for c in CLIENT_COUNTS)} concurrent clients. The **floor** is bench/floor_app.py: a bare Bolt + Flask app "
        "that verifies the signature and acks a `/impersonate` after one `views.open`, served beside the bot by the same gunicorn "
        "configuration (2 gthread workers × 4 threads on SQLite, × 8 on PostgreSQL) against the same no-validation Slack stand-in. "
        "Clients are closed-loop keep-alive connections from this machine (http.client).",
        "",
        "Milliseconds read *all rounds pooled (lowest–highest round)*; a ratio is the path's figure over the floor's in the "
        "same round, *median of the rounds (lowest–highest round)*. The goals hold the median ratio at p50 and at p99.",
        "",
    ]
    for clients in CLIENT_COUNTS:
        person = clients == 1
        lines += [
            f"### {clients} client{'s' if clients > 1 else ''}" + (": latency as a person feels it" if person else ": saturation (no goal; outliers)"),
            "",
        ]
        if person:
            lines += [
                "| backend | path | p50 ms | p50 × floor | p99 ms | p99 × floor | goal (p50 and p99) | met |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
            ]
        else:
            lines += [
                f"| backend | path | p50 ms | p50 × floor | p99 ms | p99 × floor | max ms per round | requests over {SLOW_MS:.0f} ms | web CPU ms/request "
                "| web waiting for a CPU, ms/request | bench's session, cores per round | other busy sessions per round | outbox drained after |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
        for backend, runs in results.items():
            here = [r for r in runs if r.clients == clients]
            floor = [r for r in here if r.what == FLOOR]
            for what in (FLOOR, *PATHS):
                mine = [r for r in here if r.what == what]
                if what == FLOOR:
                    p50x, p99x = "1", "1"
                    met_p50 = met_p99 = True
                else:
                    r50, p50x = _ratio_cell(mine, floor, 0.5)
                    r99, p99x = _ratio_cell(mine, floor, 0.99)
                    met_p50, met_p99 = r50 <= GOALS[what], r99 <= GOALS[what]
                cells = [backend, what, _ms_cell(mine, 0.5), p50x, _ms_cell(mine, 0.99), p99x]
                if person:
                    goal = "–" if what == FLOOR else f"≤ {GOALS[what]:g} × floor"
                    met = "–" if what == FLOOR else ("yes" if met_p50 and met_p99 else "**no**" + ("" if met_p50 else " (p50)") + ("" if met_p99 else " (p99)"))
                    cells += [goal, met]
                else:
                    drained = [r.drained_after for r in mine if r.drained_after is not None]
                    cells += [
                        " / ".join(f"{max(r.seconds) * 1000:.0f}" for r in mine),
                        str(sum(len(r.slow) for r in mine)),
                        f"{statistics.median(r.web_cpu_ms for r in mine):.2f}",
                        f"{statistics.median(r.web_wait_ms for r in mine):.2f}",
                        " / ".join(f"{r.sessions.own_cores:.2f}" if r.sessions else "–" for r in mine),
                        " / ".join(str(r.sessions.busy_others) if r.sessions else "–" for r in mine),
                        "–" if what == FLOOR else (f"≤ {max(drained):.1f} s" if len(drained) == len(mine) else "not within 120 s"),
                    ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += outliers(results)
    return "\n".join(lines) + "\n"


def outliers(results: dict[str, list[Run]]) -> list[str]:
    lines = [
        f"### Requests over {SLOW_MS:.0f} ms, and what they overlapped",
        "",
        "For every run: the collector's passes that stopped a worker of the server under test for 10 ms or more "
        "(bench/gunicorn_conf.py) or the bench's own process, the client (*client GC*), and the machine's stalls — an idle "
        "process of its own woken 50 ms or more late (bench/stall_probe.py; other engineers' test suites share this machine's "
        "2 cores). *In the app* counts the slow requests whose own time in the server, from gunicorn's pre_request to its "
        f"post_request hook, was over {SLOW_MS:.0f} ms too; the others waited before (accept, poller, thread pool) or after.",
        "",
        f"| backend | clients | runs | runs with none over {SLOW_MS:.0f} ms | requests over {SLOW_MS:.0f} ms | in the app | during a server "
        "collector pause | during a client GC | during a machine stall | none of these | server pauses ≥ 10 ms (longest) | machine stalls (longest) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, runs in results.items():
        for clients in sorted({r.clients for r in runs}):
            mine = [r for r in runs if r.clients == clients]
            slow = [s for r in mine for s in r.slow]
            pauses = [p for r in mine for p in r.gc_pauses]
            stalls = [s for r in mine for s in r.stalls]
            lines.append(
                f"| {backend} | {clients} | {len(mine)} | {sum(1 for r in mine if not r.slow)} | {len(slow)} | "
                f"{sum(1 for s in slow if s.server_ms is not None and s.server_ms > SLOW_MS)} | {sum(1 for s in slow if s.server_gc)} | "
                f"{sum(1 for s in slow if s.client_gc)} | {sum(1 for s in slow if s.stall)} | {sum(1 for s in slow if not s.explained)} | "
                f"{len(pauses)} ({max(pauses, default=0) * 1000:.0f} ms) | {len(stalls)} ({max(stalls, default=0) * 1000:.0f} ms) |"
            )
    return lines + [""]


def run(*, backends: list[str], count: int) -> str:
    results = {}
    for backend in backends:
        print(f"[http] {backend} …", flush=True)
        results[backend] = run_backend(backend, count=count)
    return render(results, count=count)
