"""HTTP latency of the hot paths (issue 2 point 24, issue 3 point 12), as Slack and browsers
see them: the production web process (gunicorn, `bot.web.gunicorn_conf`: 2 gthread workers ×
8 threads) against the project's fake Slack Web API, 20 concurrent clients.

- `/impersonate` ack: a signed slash command → Bolt acks after `views.open` (process_before_response).
- link redemption: POST /l/<token> with its CSRF proof (the GET that fetches the form is not timed).
- approve click: a signed block_actions Approve on a pending request (N = 1): the decision, the
  link, the approver and agent DM edits and the link DM.

Slack is played by bench/slack_stub.py (no validation; see its docstring for why), in its own
process; the clients run in this process on keep-alive connections.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from html import unescape
from pathlib import Path

import requests
from sqlalchemy import select

from bench.common import REPO_ROOT, Latency, fresh_database
from bot.db.engine import make_engine, make_session_factory
from bot.db.models import ImpersonationRequest, MessageRef
from bot.domain import directory
from bot.domain.audit import Actor
from bot.slack.ids import ActionId, BlockId, CallbackId
from bench.slack_stub import SlackStub
from tests.slack.listeners.flow import request_state
from tests.slack.signed import SIGNING_SECRET, block_action, signature, slash_command, view_submission

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "20"))
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


_triggers = iter(range(1, 10**9))


def _trigger() -> str:
    return f"{next(_triggers)}.1700000000.benchtrigger"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _directory(path: Path, accounts: int) -> None:
    records = []
    for n in range(accounts):
        records.append({"kind": "account", "account": f"acct{n}", "name": f"Account {n}"})
        records.append({"kind": "user", "account": f"acct{n}", "user": f"user{n}", "email": f"user{n}@acct{n}.example", "name": f"User {n}"})
    records.append({"kind": "account", "account": "gated", "name": "Gated Co"})
    records.append({"kind": "user", "account": "gated", "user": "gated-user", "email": "u@gated.example", "name": "Gated User"})
    path.write_text(json.dumps(records))


class Server:
    def __init__(self, db_url: str, fake: SlackStub, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": fake.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.url,
            "DATABASE_URL": db_url,
            "IMPERSONATION_POLICY": str(workdir / "policy.toml"),
            "SIGNING_KEY_FILE": str(workdir / "signing_key.pem"),
            "PUBLIC_BASE_URL": "http://bot.bench",
            "PRODUCT_LAUNCH_URL": "http://product.bench/launch",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
        }
        self.log = (workdir / "gunicorn.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:bot.web.gunicorn_conf", "bot.web.wsgi:app"],
            cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start; see {workdir / 'gunicorn.log'}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def _signed_post(http: requests.Session, url: str, body: str) -> requests.Response:
    ts = str(int(time.time()))
    return http.post(
        f"{url}/slack/events",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(body, ts)},
        timeout=30,
    )


def _run_clients(jobs: list[Callable[[requests.Session], float]]) -> Latency:
    """Run the jobs on CLIENTS threads, each with its own keep-alive connection."""
    lock = threading.Lock()
    queue = list(reversed(jobs))
    timings: list[float] = []
    errors: list[str] = []

    def client() -> None:
        with requests.Session() as http:
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop()
                try:
                    elapsed = job(http)
                except Exception as exc:  # noqa: BLE001 - reported after the run
                    errors.append(repr(exc))
                    continue
                with lock:
                    timings.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return Latency.of(timings, wall)


def _timed(call: Callable[[], requests.Response], expect: int = 200) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status_code != expect:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return elapsed


def run_backend(backend: str, *, count: int) -> dict[str, Latency]:
    agents = [f"UAGENT{n:03d}" for n in range(CLIENTS)]
    people = {a: {"email": f"{a.lower()}@corp.example", "tz": "Europe/Paris"} for a in [*agents, "UMANAGER1", "UMANAGER2"]}
    results: dict[str, Latency] = {}
    with fresh_database(backend) as db_url, tempfile.TemporaryDirectory(prefix="impbot-bench-") as folder, SlackStub(people) as fake:
        workdir = Path(folder)
        (workdir / "policy.toml").write_text(POLICY % {"agents": ", ".join(f'"{a}"' for a in agents)})
        _directory(workdir / "directory.json", accounts=200)
        engine = make_engine(db_url)
        factory = make_session_factory(engine)
        with factory() as db, db.begin():
            directory.import_directory(db, workdir / "directory.json", actor=Actor.system("bench"))
            directory.set_flag(db, account_external_id="gated", flag=directory.AccountFlag.SENSITIVE, on=True, actor=Actor.system("bench"), note="bench")
        server = Server(db_url, fake, workdir)
        try:
            # warm-up: connection pools, imports, first queries
            with requests.Session() as http:
                for n in range(20):
                    _signed_post(http, server.url, slash_command(f"acct{n}", user_id=agents[n % CLIENTS], trigger_id=_trigger()))

            def ack_job(n: int):
                def job(http: requests.Session) -> float:
                    body = slash_command(f"acct{n % 200}", user_id=agents[n % CLIENTS], trigger_id=_trigger())
                    return _timed(lambda: _signed_post(http, server.url, body))
                return job

            results["/impersonate ack"] = _run_clients([ack_job(n) for n in range(count)])

            # grants for redemption: real submissions through the app (not timed)
            def submit(agent: str, account: str, user: str) -> requests.Response:
                state = request_state(account=account, user=user, duration="30")
                return _signed_post(http, server.url, view_submission(state, user_id=agent, callback_id=CallbackId.IMPERSONATE_REQUEST.value))

            before = len(fake.posted_messages())
            with requests.Session() as http:
                for n in range(count):
                    submit(agents[n % CLIENTS], f"acct{n % 200}", f"user{n % 200}")
            links = [
                re.search(r"<(http://bot\.bench/l/[A-Za-z0-9_-]{43})\|", json.dumps(args.get("blocks"))).group(1)
                for args in fake.posted_messages()[before:]
            ]
            assert len(links) == count, len(links)

            # Each link's landing page is fetched first, untimed, by the browser session that
            # will redeem it (the CSRF cookie and proof); then only the POSTs are timed.
            browsers = [requests.Session() for _ in range(CLIENTS)]
            proofs = []
            for n, link in enumerate(links):
                local = link.replace("http://bot.bench", server.url)
                page = browsers[n % CLIENTS].get(local, timeout=30)
                proofs.append((n % CLIENTS, local, unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))))

            def redeem_job(browser: int, local: str, csrf: str):
                def job(_http: requests.Session) -> float:
                    return _timed(lambda: browsers[browser].post(local, data={"csrf": csrf}, timeout=30))
                return job

            results["link redemption (POST)"] = _run_clients([redeem_job(*proof) for proof in proofs])
            for browser in browsers:
                browser.close()

            # pending requests on the gated account, then approve clicks
            with requests.Session() as http:
                for n in range(count):
                    submit(agents[n % CLIENTS], "gated", "gated-user")
            with factory() as db:
                pending = db.execute(select(ImpersonationRequest.id).where(ImpersonationRequest.state == "pending")).scalars().all()
                refs = {r.subject_id: r for r in db.execute(select(MessageRef).where(MessageRef.recipient == "UMANAGER1")).scalars()}
            assert len(pending) == count, len(pending)

            def approve_job(request_id: str):
                ref = refs[request_id]
                body = block_action(ActionId.APPROVE_REQUEST.value, request_id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id="UMANAGER1", channel=ref.channel, message_ts=ref.ts)

                def job(http: requests.Session) -> float:
                    return _timed(lambda: _signed_post(http, server.url, body))
                return job

            results["approve click"] = _run_clients([approve_job(r) for r in pending])
            with factory() as db:
                granted = db.execute(select(ImpersonationRequest.id).where(ImpersonationRequest.state == "granted")).scalars().all()
            assert len(granted) == count, "every approve click must have decided its request"
        finally:
            server.stop()
            engine.dispose()
    return results


def run(*, backends: list[str], count: int) -> str:
    lines = [
        "## HTTP hot paths (issues 2 and 3)",
        "",
        f"gunicorn with the production config (2 gthread workers × 8 threads), {CLIENTS} concurrent",
        f"closed-loop keep-alive clients on the same machine, {count} requests per path; Slack is",
        "bench/slack_stub.py in its own process. Target (issues 2, 3): p99 ≤ 100 ms with 20 clients.",
        "",
        "| backend | path | requests | p50 ms | p99 ms | max ms | req/s | p99 target met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for backend in backends:
        print(f"[http] {backend} …", flush=True)
        for name, latency in run_backend(backend, count=count).items():
            met = "yes" if latency.p99_ms <= 100 else "**no**"
            lines.append(
                f"| {backend} | {name} | {latency.count} | {latency.p50_ms:.1f} | {latency.p99_ms:.1f} | {latency.max_ms:.1f} | {latency.throughput:.0f} | {met} |"
            )
            print(f"  {name}: p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms", flush=True)
    return "\n".join(lines) + "\n"
