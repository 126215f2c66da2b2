"""Two web hosts and two schedulers against one PostgreSQL, one host SIGKILLed mid-run: every
request answered 200 has its change, stored and audited once; every Slack message goes out
once; the audit chain verifies (bench/exactly_once.py judges the run; its own tests are in
tests/bench/test_exactly_once.py).

Real processes, as deployed: two `impersonation-bot web` (separate gunicorn masters on their
own ports, the two hosts) and two `impersonation-bot scheduler` (the Procfile's clock), with
the project's fake Slack Web API over HTTP. Agents work concurrently, each through its whole
flow — submit, (an approver approves), open the link's landing page, redeem — their requests
spread round-robin over the live hosts as a load balancer would. Once a share of the requests
has been answered, host A is SIGKILLed with its workers (no cleanup runs): a request it was
serving gets no answer and is not sent again (a person would click again; what it committed
must still be complete), later requests go to host B, and the schedulers deliver what host A's
changes still owed. A row host A had claimed when it died stays claimed for its lease
(outbox.LEASE); the test then runs the delivery a surviving scheduler runs once the lease has
passed, with its clock moved past it, and checks the outcome.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
import requests
from slack_sdk import WebClient
from sqlalchemy import select

from bench import exactly_once
from bench.exactly_once import APPROVE, REDEEM, SUBMIT, Answered
from bot.db.models import ImpersonationRequest, MessageRef, OutboxMessage
from bot.domain import directory, outbox
from bot.domain.audit import Actor
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.keys import load_or_create_signing_key
from bot.domain.policy import parse_policy
from bot.slack.courier import SlackCourier
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.conftest import BACKENDS, REPO_ROOT
from tests.fakes.slack_api import FakeSlack, FakeUser
from tests.slack.listeners.flow import request_state
from tests.slack.signed import SIGNING_SECRET, block_action, signature, view_submission

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
    # several processes writing at once is what PostgreSQL deployments do; SQLite serves one host
    pytest.mark.parametrize("db_url", [b for b in BACKENDS if b == "postgresql"], indirect=True),
]

AGENTS = [f"UAGENT{n:02d}" for n in range(1, 11)]
#: odd agents ask for the sensitive account (approval needed), even ones for an ordinary one
GATED = set(AGENTS[1::2])
APPROVER = "UMANAGER1"
#: host A is killed once this many requests have been answered (of about 35)
KILL_AFTER = 12
POLICY = f"""
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
[alerts]
security_channel = "CSECURITY1"
business_hours = {{ start = "00:00", end = "24:00", days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] }}
[roles.support]
members = {json.dumps(AGENTS)}
max_minutes = 60
scope = "any"
[roles.manager]
members = ["UMANAGER1", "UMANAGER2"]
max_minutes = 60
scope = "any"
can_approve = true
"""


def customer_of(agent: str) -> tuple[str, str]:
    n = AGENTS.index(agent)
    return ("gated", f"gated{n}") if agent in GATED else (f"acct{n % 4}", f"cust{n}")


def write_directory(path: Path) -> None:
    records = [{"kind": "account", "account": a, "name": a} for a in ("acct0", "acct1", "acct2", "acct3", "gated")]
    for agent in AGENTS:
        account, user = customer_of(agent)
        records.append({"kind": "user", "account": account, "user": user, "email": f"{user}@{account}.example", "name": user})
    path.write_text(json.dumps(records))


class Hosts:
    """The live hosts' URLs, taken in turn; a host that refused a connection is dropped (the
    load balancer's health check)."""

    def __init__(self, urls: list[str]) -> None:
        self._lock = threading.Lock()
        self._urls = list(urls)
        self._turn = itertools.count()

    def next(self) -> str:
        with self._lock:
            return self._urls[next(self._turn) % len(self._urls)]

    def drop(self, url: str) -> None:
        with self._lock:
            if url in self._urls and len(self._urls) > 1:
                self._urls.remove(url)


@dataclass
class Run:
    hosts: Hosts
    fake: FakeSlack
    session_factory: object
    host_a: str
    kill: threading.Event
    answered: list[Answered] = field(default_factory=list)
    #: (host, what) of every answer
    answers_by_host: list[tuple[str, str]] = field(default_factory=list)
    #: requests that got no answer (their host died under them)
    unanswered: list[str] = field(default_factory=list)
    #: what went wrong in an agent's flow (raised in its thread, checked by the test)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, what: str, method: str, path: str, *, http: requests.Session, **kwargs) -> requests.Response | None:
        host = self.hosts.next()
        try:
            response = http.request(method, host + path, timeout=30, **kwargs)
        except requests.ConnectionError:
            self.hosts.drop(host)
            with self.lock:
                self.unanswered.append(what)
            return None
        assert response.status_code == 200, (what, response.status_code, response.text[:300])
        with self.lock:
            self.answers_by_host.append((host, what))
            if len(self.answers_by_host) >= KILL_AFTER:
                self.kill.set()
        return response

    def slack(self, what: str, body: str, http: requests.Session) -> requests.Response | None:
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(body, ts, SIGNING_SECRET)}
        return self.send(what, "POST", "/slack/events", http=http, data=body.encode(), headers=headers)

    def answered_once(self, answer: Answered) -> None:
        with self.lock:
            self.answered.append(answer)


def until(what: str, check, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def agent_flow(run: Run, agent: str) -> None:
    try:
        walk(run, agent)
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        with run.lock:
            run.failures.append(f"{agent}: {exc!r}")


def walk(run: Run, agent: str) -> None:
    """One agent's way through: submit, be approved (a gated account), redeem the link."""
    account, user = customer_of(agent)
    with requests.Session() as http:
        body = view_submission(request_state(account=account, user=user), user_id=agent, callback_id=CallbackId.IMPERSONATE_REQUEST.value)
        reply = run.slack(SUBMIT, body, http)
        if reply is None:
            return
        assert reply.text == "", reply.text  # the modal closed: no errors
        run.answered_once(Answered(SUBMIT, (agent, account, user)))
        if agent in GATED:
            with run.session_factory() as db:
                request_id = db.execute(select(ImpersonationRequest.id).where(ImpersonationRequest.agent_slack_id == agent)).scalar_one()

            def ask():
                with run.session_factory() as db:
                    return db.execute(select(MessageRef).where(MessageRef.subject_id == request_id, MessageRef.recipient == APPROVER)).scalar_one_or_none()

            ref = until(f"the approver's DM about {agent}'s request", ask)
            click = block_action(ActionId.APPROVE_REQUEST.value, request_id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id=APPROVER, channel=ref.channel, message_ts=ref.ts)
            if run.slack(APPROVE, click, http) is None:
                return
            run.answered_once(Answered(APPROVE, request_id))

        def link():
            for call in list(run.fake.calls_to("chat.postMessage")):
                if call.args.get("channel") == agent:
                    found = re.findall(r"<http://bot\.test(/l/[A-Za-z0-9_-]{43})\|", json.dumps(call.args.get("blocks")))
                    if found:
                        return found[0]
            return None

        try:
            path = until(f"{agent}'s link DM", link)
        except AssertionError:
            if not run.kill.is_set():
                raise
            # A row the killed host had claimed waits for its lease (outbox.LEASE, longer than
            # this wait) before a live process may send it; the verdict below, taken after the
            # lease, still requires that DM to have been sent exactly once.
            return
        page = run.send("landing page", "GET", path, http=http)
        if page is None:
            return
        csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))
        if run.send(REDEEM, "POST", path, http=http, data={"csrf": csrf}) is None:
            return
        run.answered_once(Answered(REDEEM, path.rsplit("/", 1)[1]))


def start(command: str, env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen:
    # `python -m bot.cli` is the console script `impersonation-bot`; start_new_session, so the
    # host's master and workers can be killed together (one machine going down)
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", command], cwd=REPO_ROOT, env={**env, **extra},
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_hosts_and_two_schedulers_lose_nothing_and_send_once_when_a_host_is_killed(db_url, session_factory, tmp_path):
    write_directory(tmp_path / "directory.json")
    with session_factory() as db, db.begin():
        directory.import_directory(db, tmp_path / "directory.json", actor=Actor.system("test"))
        directory.set_flag(db, account_external_id="gated", flag=directory.AccountFlag.SENSITIVE, on=True, actor=Actor.system("test"), note="test")
    (tmp_path / "policy.toml").write_text(POLICY)
    key_file = tmp_path / "signing_key.pem"
    load_or_create_signing_key(key_file, allow_create=True)  # one key for every process
    users = [FakeUser(a, email=f"{a.lower()}@corp.example", tz="UTC") for a in [*AGENTS, "UMANAGER1", "UMANAGER2"]]
    with FakeSlack(users=users, channels=["CSECURITY1"]) as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GUNICORN_"))},
            "SLACK_BOT_TOKEN": fake.bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.url,
            "DATABASE_URL": db_url, "IMPERSONATION_POLICY": str(tmp_path / "policy.toml"), "SIGNING_KEY_FILE": str(key_file),
            "PUBLIC_BASE_URL": "http://bot.test", "PRODUCT_LAUNCH_URL": "http://product.test/launch",
            "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2", "IMPERSONATION_ENV": "dev",
        }
        ports = [free_port(), free_port()]
        web = [start("web", env, tmp_path / f"web{n}.log", PORT=str(port)) for n, port in enumerate(ports)]
        schedulers = [start("scheduler", env, tmp_path / f"scheduler{n}.log") for n in range(2)]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            for url, process in zip(urls, web, strict=True):
                until(f"{url} to listen", lambda url=url, process=process: process.poll() is not None or _healthy(url), timeout=60)
                assert process.poll() is None, (tmp_path / "web0.log").read_text()[-2000:]
            run = Run(Hosts(urls), fake, session_factory, urls[0], threading.Event())
            flows = [threading.Thread(target=agent_flow, args=(run, agent)) for agent in AGENTS]
            for flow in flows:
                flow.start()
            assert run.kill.wait(timeout=60), "the run never reached the kill point"
            os.killpg(web[0].pid, signal.SIGKILL)
            web[0].wait(timeout=30)
            for flow in flows:
                flow.join(timeout=120)
                assert not flow.is_alive()

            # The live processes deliver everything they can. Rows host A claimed stay claimed
            # until their lease passes, and later rows about the same messages wait behind them
            # (a live process's claim lasts one Slack call, so a set of claimed rows that stays
            # the same between two looks is host A's).
            seen: list[set[int]] = [set()]

            def settled() -> bool:
                now = utcnow()
                with session_factory() as db:
                    claimed = dict(db.execute(select(OutboxMessage.id, OutboxMessage.target).where(OutboxMessage.state == "sending")).all())
                    due = db.execute(
                        select(OutboxMessage.id).where(OutboxMessage.state == "pending", OutboxMessage.due_at <= now, OutboxMessage.target.not_in(list(claimed.values()) or [""]))
                    ).first()
                stable, seen[0] = set(claimed) == seen[0], set(claimed)
                time.sleep(0.5)
                return due is None and stable

            until("the outbox to be delivered by the live processes", settled, timeout=60)
        finally:
            for process in [*web, *schedulers]:
                stop(process)
        with session_factory() as db:
            claimed_by_the_dead = db.execute(select(OutboxMessage.recipient).where(OutboxMessage.state == "sending")).scalars().all()
            # where those rows' messages go: a person's DM, or the security channel
            dead_channels = {"CSECURITY1" if r == "security" else fake.dm_channel(r) for r in claimed_by_the_dead}
        # the surviving scheduler's run once the lease has passed
        after_lease = utcnow() + outbox.LEASE + timedelta(seconds=5)
        ctx = DomainContext(
            sessions=session_factory, policy=parse_policy(POLICY), signing_key=load_or_create_signing_key(key_file, allow_create=False),
            public_base_url="http://bot.test", product_launch_url="http://product.test/launch",
        )
        outbox.deliver_due(ctx, SlackCourier(ctx, WebClient(token=fake.bot_token, base_url=fake.url), clock=lambda: after_lease), now=after_lease)

        verdict = exactly_once.check(
            session_factory, run.answered, exactly_once.slack_calls((c.method, c.args, c.response, c.time) for c in fake.calls), now=after_lease
        )
        fake.assert_no_violations()

    assert run.failures == []
    hosts_answering = {host for host, _ in run.answers_by_host}
    assert hosts_answering == set(urls), "both hosts answered requests"
    assert any(host == urls[1] for host, _ in run.answers_by_host[KILL_AFTER:]), "host B answered after the kill"
    assert verdict.answered[SUBMIT] >= len(AGENTS) // 2 and verdict.answered[REDEEM] >= 1 and verdict.answered[APPROVE] >= 1, verdict.answered
    assert verdict.problems == [], verdict.problems
    assert verdict.chain_ok and verdict.audit_events > 0
    # A message posted twice is allowed only where outbox.py says so: its first sender (host A)
    # died after Slack took it and before the ts was kept, so its row was still claimed by the
    # dead host, and the post went to that row's channel.
    assert len(verdict.orphan_posts) <= len(claimed_by_the_dead), (verdict.orphan_posts, claimed_by_the_dead)
    assert {post.channel for post in verdict.orphan_posts} <= dead_channels, (verdict.orphan_posts, dead_channels)


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
