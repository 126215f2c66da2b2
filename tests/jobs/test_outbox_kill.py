"""A process killed between its commit and its Slack call loses nothing, and
nothing goes out twice. Real processes (tests/jobs/outbox_child.py) against the same database
and the project's fake Slack Web API over HTTP; SIGKILL, so no cleanup code runs."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
from slack_sdk import WebClient

from bot.domain import links, outbox, requests, revocation
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.courier import SlackCourier
from tests.conftest import REPO_ROOT
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack, FakeUser
from tests.jobs.outbox_child import BOT_TOKEN

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


@pytest.fixture
def fake_slack():
    users = [FakeUser("UAGENT1", email="agent1@corp.example", tz="Europe/Paris"), FakeUser("USECURITY1")]
    with FakeSlack(bot_token=BOT_TOKEN, users=users, channels=["CSECURITY1"]) as fake:
        yield fake


@pytest.fixture
def live_session(ctx, session_factory, tmp_path, fake_slack):
    """A live session whose DM and feed message are already in Slack (delivered in-process)."""
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
    report = outbox.deliver_due(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=fake_slack.url)))
    assert report.failed == 0 and report.sent >= 2
    return session


def child(step: str, db_url: str, fake: FakeSlack, key_file, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.outbox_child", step, db_url, fake.url, str(key_file), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def first_line(process: subprocess.Popen, *, timeout: float = 60.0) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        process.kill()
        raise AssertionError("the child process printed nothing in time") from None


def run_to_end(step: str, db_url: str, fake: FakeSlack, key_file, *args: str) -> str:
    process = child(step, db_url, fake, key_file, *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.strip()


def sigkill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def calls_since(fake: FakeSlack, before: int):
    return [(c.method, c.args.get("channel")) for c in fake.calls[before:]]


def test_a_change_committed_by_a_process_killed_before_it_sent_is_delivered_once(db_url, live_session, fake_slack, tmp_path):
    key = tmp_path / "child-key.pem"
    before = len(fake_slack.calls)
    revoker = child("revoke", db_url, fake_slack, key, live_session.id)
    assert first_line(revoker) == "committed"
    sigkill(revoker)
    assert fake_slack.calls[before:] == [], "the killed process sent nothing"

    # A fresh process (the scheduler's next run) delivers what the dead one owed.
    assert run_to_end("deliver", db_url, fake_slack, key).startswith("sent 3 ")
    agent_dm = fake_slack.dm_channel("UAGENT1")
    assert sorted(calls_since(fake_slack, before)) == sorted(
        [("chat.postMessage", "UAGENT1"), ("chat.update", agent_dm), ("chat.update", "CSECURITY1")]
    )
    (notice,) = [m for m in fake_slack.messages_in(agent_dm) if not m.history and m.blocks[0]["text"]["text"] == "Your session was revoked"]
    assert notice.args["unfurl_links"] in (False, "0", "false")
    [feed] = fake_slack.messages_in("CSECURITY1")
    assert feed.blocks[0]["text"]["text"] == "Impersonation revoked"

    # And once only: another run finds nothing to send.
    after = len(fake_slack.calls)
    assert run_to_end("deliver", db_url, fake_slack, key).startswith("sent 0 ")
    assert fake_slack.calls[after:] == []
    fake_slack.assert_no_violations()


def test_a_row_claimed_by_a_process_killed_in_the_send_is_taken_again_after_its_lease(db_url, ctx, live_session, fake_slack, tmp_path):
    key = tmp_path / "child-key.pem"
    assert isinstance(revocation.revoke_session(ctx, live_session.id, actor_slack_id="USECURITY1", source="command"), revocation.Revoked)
    before = len(fake_slack.calls)
    sender = child("hang-in-send", db_url, fake_slack, key)
    assert first_line(sender) == "claimed"
    sigkill(sender)
    assert fake_slack.calls[before:] == []

    # Within the lease nobody else sends the claimed message (its sender might still be busy)…
    within = run_to_end("deliver", db_url, fake_slack, key)
    claimed_targets = {(m, ch) for m, ch in calls_since(fake_slack, before)}
    # … and after the lease has passed, a fresh process sends it, once.
    lease = str(outbox.LEASE.total_seconds() + 5)
    run_to_end("deliver", db_url, fake_slack, key, lease)
    calls = calls_since(fake_slack, before)
    assert len(calls) == 3 and len(set(calls)) == 3, calls
    assert len(claimed_targets) == 2, within
    run_to_end("deliver", db_url, fake_slack, key, lease)
    assert len(calls_since(fake_slack, before)) == 3
    fake_slack.assert_no_violations()


def test_a_grant_whose_process_was_killed_before_the_link_dm_still_delivers_the_link_once(db_url, ctx, session_factory, fake_slack, tmp_path):
    """The link DM is an outbox row like any other (ids only): its token is derived again
    from the request's id by whichever process delivers it."""
    load_directory(session_factory, tmp_path)
    key = tmp_path / "child-key.pem"
    granter = child("grant", db_url, fake_slack, key)
    assert first_line(granter) == "committed"
    sigkill(granter)
    assert fake_slack.calls == [], "the killed process sent nothing"

    assert run_to_end("deliver", db_url, fake_slack, key).startswith("sent 2 ")  # the link DM and the feed
    (dm,) = fake_slack.messages_in(fake_slack.dm_channel("UAGENT1"))
    assert dm.args["unfurl_links"] in (False, "0", "false") and dm.args["unfurl_media"] in (False, "0", "false")
    (link,) = re.findall(r"<http://bot\.test/l/([A-Za-z0-9_-]{43})\|Open session>", json.dumps(dm.blocks))
    assert link not in (dm.text or "")

    # once only: another run finds nothing to send
    after = len(fake_slack.calls)
    assert run_to_end("deliver", db_url, fake_slack, key).startswith("sent 0 ")
    assert fake_slack.calls[after:] == []
    # and the delivered link is the one issued: it opens the session
    assert isinstance(links.redeem(ctx, link), links.Redemption)
    fake_slack.assert_no_violations()
