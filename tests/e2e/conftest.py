"""The whole bot over real HTTP: the production object graph (bot.wiring.build_container)
served by a threaded WSGI server on 127.0.0.1, talking to the project's fake Slack Web API,
driven by requests signed exactly as Slack signs them."""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from bot import wiring
from bot.config import load_settings
from tests.conftest import TEST_POLICY
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack, FakeUser
from tests.slack.signed import SIGNING_SECRET, signature

PEOPLE = [
    FakeUser("UAGENT1", email="agent1@corp.example", tz="Europe/Paris"),
    FakeUser("UAGENT2", email="agent2@corp.example", tz="America/New_York"),
    FakeUser("USENIOR1", email="senior1@corp.example"),
    FakeUser("UMANAGER1", email="manager1@corp.example"),
    FakeUser("UMANAGER2", email="manager2@corp.example"),
    FakeUser("UMANAGER3", email="manager3@corp.example"),
    FakeUser("USECURITY1", email="security1@corp.example"),
]


@dataclass
class Reply:
    """What Slack would see: the HTTP status and body of the bot's answer."""

    status: int
    body: str
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class RunningBot:
    url: str
    fake: FakeSlack
    container: wiring.Container
    http: requests.Session

    def send(self, body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET, headers: dict[str, str] | None = None) -> Reply:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        started = time.perf_counter()
        response = self.http.post(
            f"{self.url}/slack/events",
            data=body.encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature(body, ts, secret),
                **(headers or {}),
            },
            timeout=30,
        )
        return Reply(response.status_code, response.text, time.perf_counter() - started)

    def delivered(self) -> None:
        """Wait until the bot's background thread has sent every Slack message the requests
        answered so far owed (the answers do not wait for them: bot/web/background.py)."""
        assert self.container.wait_for_deliveries(timeout=30), "background deliveries did not finish"

    def local(self, link: str) -> str:
        """Links point at PUBLIC_BASE_URL; the test server listens elsewhere."""
        return link.replace(self.container.settings.public_base_url, self.url)


def link_in(blocks: list[dict[str, Any]]) -> str:
    found = re.findall(r"<(http://bot\.test/l/[A-Za-z0-9_-]{43})\|", json.dumps(blocks))
    assert len(found) == 1, found
    return found[0]


def bot_settings(fake: FakeSlack, db_url: str, tmp_path, *, public_base_url: str, product_launch_url: str, policy_text: str = TEST_POLICY):
    """The bot's settings against the fake Slack: the test database, the policy (TEST_POLICY
    unless told) written to tmp_path, a signing key generated there."""
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    return load_settings(
        {
            "SLACK_BOT_TOKEN": fake.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.url,
            "DATABASE_URL": db_url,
            "IMPERSONATION_POLICY": str(policy),
            "SIGNING_KEY_FILE": str(tmp_path / "signing_key.pem"),
            "PUBLIC_BASE_URL": public_base_url,
            "PRODUCT_LAUNCH_URL": product_launch_url,
        }
    )


@pytest.fixture
def bot_policy() -> str:
    """The policy file the running bot reads; a test module overrides this fixture to run the
    bot under another policy."""
    return TEST_POLICY


@pytest.fixture
def running_bot(db_url, tmp_path, session_factory, bot_policy):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["regulated"], "umbrella": ["opted_out"]})
    with FakeSlack(users=PEOPLE, channels=["CSECURITY1"]) as fake:
        settings = bot_settings(
            fake,
            db_url,
            tmp_path,
            public_base_url="http://bot.test",
            product_launch_url="http://product.test/impersonation/launch",
            policy_text=bot_policy,
        )
        container = wiring.build_container(settings)
        server = make_server("127.0.0.1", 0, container.web_app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with requests.Session() as http:
                yield RunningBot(f"http://127.0.0.1:{server.server_port}", fake, container, http)
        finally:
            server.shutdown()
            thread.join(timeout=10)
            container.close()


def wait_for(predicate, *, timeout: float = 5.0):
    """Poll for work done after the response (the deliverer's background thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")
