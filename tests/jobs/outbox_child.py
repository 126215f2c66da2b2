"""A separate process for tests/jobs/test_outbox_kill.py: it builds its own context from the
command line (database URL, fake Slack URL) and does one step, printing a line when a step
has happened so that the test can SIGKILL it at that moment.

    python -m tests.jobs.outbox_child revoke DB_URL SLACK_URL KEY_FILE SESSION_ID
        commits a revocation (with its outbox rows), prints "committed", then waits to be
        killed before it would deliver anything (the listener's immediate delivery)
    python -m tests.jobs.outbox_child grant DB_URL SLACK_URL KEY_FILE
        commits a grant to UAGENT1 (its link DM owed in the outbox, the token in no row),
        prints "committed", then waits to be killed before the listener would deliver it
    python -m tests.jobs.outbox_child hang-in-send DB_URL SLACK_URL KEY_FILE
        claims the due rows, prints "claimed" inside the first send, then waits to be killed
    python -m tests.jobs.outbox_child hang-in-webhook DB_URL SLACK_URL KEY_FILE
        a delivery run (Slack messages first, as they were owed first) whose webhook sender is
        inside its POST (the test's endpoint holds it open) when the test kills it
    python -m tests.jobs.outbox_child deliver DB_URL SLACK_URL KEY_FILE [SECONDS_AHEAD]
        a fresh scheduler's delivery run, Slack messages and webhooks (optionally with the
        clock moved ahead), then exits
"""
from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

from slack_sdk import WebClient

from bot.db.engine import make_engine, make_session_factory
from bot.domain import outbox, requests, revocation
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.keys import load_or_create_signing_key
from bot.domain.policy import parse_policy
from bot.slack.courier import SlackCourier
from bot.webhooks.sender import WebhookSender
from tests.conftest import TEST_POLICY

BOT_TOKEN = "xoxb-fake-bot-token"


def context(db_url: str, key_file: str) -> DomainContext:
    return DomainContext(
        sessions=make_session_factory(make_engine(db_url)),
        policy=parse_policy(TEST_POLICY),
        signing_key=load_or_create_signing_key(Path(key_file), allow_create=True),
        public_base_url="http://bot.test",
        product_launch_url="http://product.test/impersonation/launch",
    )


def wait_to_be_killed() -> None:
    while True:
        time.sleep(60)


class HangingCourier:
    def deliver(self, delivery: outbox.Delivery) -> outbox.Outcome:
        print("claimed", flush=True)
        wait_to_be_killed()
        raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    step, db_url, slack_url, key_file, *rest = argv
    ctx = context(db_url, key_file)
    if step == "revoke":
        result = revocation.revoke_session(ctx, rest[0], actor_slack_id="USECURITY1", source="command")
        assert isinstance(result, revocation.Revoked), result
        print("committed", flush=True)
        wait_to_be_killed()
    elif step == "grant":
        form = requests.RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
        result = requests.submit_request(ctx, requests.AgentIdentity("UAGENT1"), form)
        assert isinstance(result, requests.Granted), result
        print("committed", flush=True)
        wait_to_be_killed()
    elif step == "hang-in-send":
        outbox.deliver_due(ctx, HangingCourier())
    elif step == "hang-in-webhook":
        ctx.webhook_sender = WebhookSender(ctx)
        outbox.deliver_due(ctx, SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=slack_url)))
    elif step == "deliver":
        ahead = timedelta(seconds=float(rest[0])) if rest else timedelta(0)
        courier = SlackCourier(ctx, WebClient(token=BOT_TOKEN, base_url=slack_url), clock=lambda: utcnow() + ahead)
        ctx.webhook_sender = WebhookSender(ctx, clock=lambda: utcnow() + ahead)
        report = outbox.deliver_due(ctx, courier, now=utcnow() + ahead)
        print(f"sent {report.sent} skipped {report.skipped} failed {report.failed}", flush=True)
    else:
        raise SystemExit(f"unknown step {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
