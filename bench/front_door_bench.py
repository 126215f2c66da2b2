"""Slow clients against the production front door: `.venv/bin/python -m bench.front_door_bench`
(or `./scripts/bench --only front_door`).

One run, one SQLite database, the production gunicorn (`bot.web.gunicorn_conf`) behind nginx
running deploy/nginx/front-door.conf as it is shipped:

1. unloaded: the `/impersonate` ack (a signed slash command, Bolt acks after `views.open`)
   through nginx, CLIENTS closed-loop clients for SECONDS;
2. loaded: the same, while SLOW connections to nginx send their request a few bytes a second
   (half dribble headers, half a declared body), each reopened when nginx drops it;
   1 and 2 alternate ROUNDS times;
3. the same slow connections straight at gunicorn, and whether `/healthz` still answers within
   Slack's 3 s — what the front door is for.

The figure that matters is the loaded ack p99 against the unloaded one, measured here in the
same run. It needs the `nginx` binary (Debian: `apt-get install nginx`); this script installs
nothing and says so when it is missing. nginx runs as an unprivileged child of this process
with its own prefix in a temporary directory, on loopback ports, and is stopped at the end.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from bench import payloads, report
from bench.common import REPO_ROOT, Latency, fresh_database, machine
from bench.http_bench import POLICY, Browser, Server, _directory, _free_port, _signed_post, server_env
from bench.slack_stub import SlackStub
from bot.db.engine import make_engine, make_session_factory
from bot.domain import directory
from bot.domain.audit import Actor

FRONT_DOOR = REPO_ROOT / "deploy" / "nginx" / "front-door.conf"
SLOW = int(os.environ.get("BENCH_SLOW", "50"))
CLIENTS = int(os.environ.get("BENCH_FRONT_DOOR_CLIENTS", "4"))
#: each phase runs this long: longer than nginx's 10 s client timeouts, so the slow connections
#: are dropped and reopened while the acks are measured
SECONDS = float(os.environ.get("BENCH_FRONT_DOOR_SECONDS", "12"))
#: unloaded and loaded phases alternate this many times: on a shared machine, other work drifts
#: over a minute, and alternating spreads that drift over both conditions alike
ROUNDS = int(os.environ.get("BENCH_FRONT_DOOR_ROUNDS", "3"))
SLACK_DEADLINE_SECONDS = 3.0
#: acks that did not answer 200 (reported, never hidden)
FAILURES: list[str] = []
AGENTS = [f"UAGENT{n:03d}" for n in range(CLIENTS)]

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream impersonation_bot {{  # as in deploy/nginx/impersonation-bot.conf
        server 127.0.0.1:{upstream};
        keepalive 16;
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{port};
        include {front_door};
    }}
}}
"""


class Nginx:
    def __init__(self, upstream_port: int, workdir: Path) -> None:
        binary = nginx_binary()
        if binary is None:
            raise SystemExit("bench.front_door_bench needs nginx (Debian: apt-get install nginx); it installs nothing itself")
        prefix = workdir / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(parents=True)
        # a root master hands requests to `nobody` workers, which must reach the temp paths
        for path in (workdir, prefix, *prefix.iterdir()):
            path.chmod(0o777)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, upstream=upstream_port, port=self.port, front_door=FRONT_DOOR))
        self.version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip().removeprefix("nginx version: ")
        check = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("nginx refused the front door's config:\n" + check.stderr)
        self.process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not start: " + (prefix / "error.log").read_text()[-2000:])

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: nginx's fast shutdown
        self.process.wait(timeout=20)


class SlowClients:
    """`count` connections that never finish their request: half send a header line every
    second, half send complete headers declaring a 10 KB body and then a byte a second. A
    connection the server closes is opened again at once (what an attacker does)."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        time.sleep(2.0)  # let them all connect and start dribbling
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _open(self, n: int) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            if n % 2:
                sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nx")
            else:
                sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bench\r\n")
            sock.setblocking(False)
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        sockets: list[socket.socket | None] = [self._open(n) for n in range(self.count)]
        while not self._stop.wait(1.0):
            for n, sock in enumerate(sockets):
                try:
                    if sock is None:
                        raise OSError
                    sock.send(b"x" if n % 2 else b"X-Slow: 1\r\n")
                except OSError:
                    if sock is not None:
                        sock.close()
                    sockets[n] = self._open(n)
                    self.reopened += 1
        for sock in sockets:
            if sock is not None:
                sock.close()


def _acks(base_url: str, seconds: float, timings: list[float]) -> float:
    """/impersonate acks for `seconds` from CLIENTS closed-loop clients on keep-alive
    connections; their latencies are added to `timings`; returns the wall time."""
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds

    def client(agent: str) -> None:
        http = Browser(base_url)
        try:
            for n in counter:
                if time.monotonic() >= deadline:
                    break
                body = payloads.slash_command(f"acct{n % 50}", user_id=agent)
                started = time.perf_counter()
                reply = _signed_post(http, body)
                elapsed = time.perf_counter() - started
                with lock:
                    if reply.status == 200:
                        timings.append(elapsed)
                    else:
                        FAILURES.append(f"HTTP {reply.status}")
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(agent,)) for agent in AGENTS]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _healthz_within_deadline(base_url: str, tries: int = 3) -> tuple[int, list[str]]:
    answered, outcomes = 0, []
    for _ in range(tries):
        started = time.perf_counter()
        try:
            status = requests.get(f"{base_url}/healthz", timeout=SLACK_DEADLINE_SECONDS).status_code
            outcomes.append(f"{status} in {(time.perf_counter() - started) * 1000:.0f} ms")
            answered += status == 200
        except requests.RequestException:
            outcomes.append(f"no answer in {SLACK_DEADLINE_SECONDS:.0f} s")
    return answered, outcomes


def measure() -> dict[str, object]:
    load = os.getloadavg()[0]
    people = {a: {"email": f"{a.lower()}@corp.example", "tz": "Europe/Paris"} for a in AGENTS}
    with fresh_database("sqlite") as db_url, tempfile.TemporaryDirectory(prefix="impbot-frontdoor-") as folder, SlackStub(people) as fake:
        workdir = Path(folder)
        (workdir / "policy.toml").write_text(POLICY % {"agents": ", ".join(f'"{a}"' for a in AGENTS)})
        _directory(workdir / "directory.json", accounts=50)
        engine = make_engine(db_url)
        with make_session_factory(engine)() as db, db.begin():
            directory.import_directory(db, workdir / "directory.json", actor=Actor.system("bench"))
        engine.dispose()
        server = Server("bot.web.wsgi:app", server_env(db_url, fake, workdir), workdir / "gunicorn.log", workdir / "gc.log")
        nginx = None
        try:
            nginx = Nginx(server.port, workdir)
            _acks(nginx.url, 2, [])  # warm-up: pools, imports, upstream keep-alive
            quiet: list[float] = []
            busy: list[float] = []
            quiet_wall = busy_wall = 0.0
            reopened_front = 0
            for _ in range(ROUNDS):
                quiet_wall += _acks(nginx.url, SECONDS, quiet)
                with SlowClients(nginx.port, SLOW) as slow:
                    busy_wall += _acks(nginx.url, SECONDS, busy)
                    reopened_front += slow.reopened
            unloaded, loaded = Latency.of(quiet, quiet_wall), Latency.of(busy, busy_wall)
            with SlowClients(server.port, SLOW):
                direct_healthz = _healthz_within_deadline(server.url)
        finally:
            if nginx is not None:
                nginx.stop()
            server.stop()
    return {
        "unloaded": unloaded,
        "loaded": loaded,
        "reopened": reopened_front,
        "direct_healthz": direct_healthz,
        "nginx": nginx.version if nginx else "",
        "load": (load, os.getloadavg()[0]),
    }


def section(result: dict[str, object]) -> str:
    unloaded, loaded = result["unloaded"], result["loaded"]
    assert isinstance(unloaded, Latency) and isinstance(loaded, Latency)
    answered, outcomes = result["direct_healthz"]  # type: ignore[misc]
    ratio = loaded.p99_ms / unloaded.p99_ms
    verdict = "within" if ratio <= 2 else "NOT within"
    return (
        "## Slow clients and the front door\n\n"
        "Needs nginx (`apt-get install nginx`; the bench installs nothing). The production gunicorn (2 gthread workers × 4 threads, SQLite) behind "
        f"{result['nginx']} running `deploy/nginx/front-door.conf`; {CLIENTS} closed-loop clients send "
        f"signed `/impersonate` commands through nginx, {ROUNDS} times {SECONDS:.0f} s alone and {SECONDS:.0f} s while {SLOW} slow "
        "connections (half dribbling headers, half a declared body, a few bytes a second, each reopened "
        f"when nginx drops it) are open, alternating. nginx cut off {result['reopened']} slow "
        "connections during the loaded phases (the bench reopened each at once).\n\n"
        "| `/impersonate` ack through nginx | n | p50 ms | p99 ms | max ms | req/s |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        f"| unloaded | {unloaded.count} | {unloaded.p50_ms:.1f} | {unloaded.p99_ms:.1f} | {unloaded.max_ms:.1f} | {unloaded.throughput:.0f} |\n"
        f"| {SLOW} slow connections open | {loaded.count} | {loaded.p50_ms:.1f} | {loaded.p99_ms:.1f} | {loaded.max_ms:.1f} | {loaded.throughput:.0f} |\n\n"
        f"Acks not answered 200: {len(FAILURES)}{' (' + ', '.join(sorted(set(FAILURES))) + ')' if FAILURES else ''}. "
        f"Loaded p99 / unloaded p99 = {ratio:.2f}: {verdict} 2×. The machine is shared: its 1-minute load "
        f"average was {result['load'][0]:.1f} when the run began and {result['load'][1]:.1f} when it ended.\n\n"
        f"Without the front door, the same {SLOW} slow connections straight at gunicorn: `/healthz` answered "
        f"{answered} of {len(outcomes)} times within Slack's {SLACK_DEADLINE_SECONDS:.0f} s ({'; '.join(outcomes)}).\n"
    )


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def run(*, backends: list[str], count: int) -> str:
    """bench/__main__.py's suite entry: SQLite only (the front door does not touch the database)."""
    if nginx_binary() is None:
        return "## Slow clients and the front door\n\nNot run: nginx is not installed (Debian: `apt-get install nginx`; the bench installs nothing itself).\n"
    return section(measure())


def main() -> int:
    text = section(measure())
    print(text)
    output = REPO_ROOT / "docs" / "benchmarks.md"
    now = datetime.now(timezone.utc)
    report.write(output, {"front_door": report.stamp(text, name="front_door", machine=machine(), now=now)})
    print(f"updated {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
