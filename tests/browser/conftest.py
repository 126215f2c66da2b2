"""Headless Chromium (Debian's `chromium`, driven by Playwright for Python with that
executable; nothing is downloaded) against the whole bot and the demo product, each served over
real HTTP: the bot at 127.0.0.1 and the product at localhost, so that their cookies are kept
apart as two sites' would be. Slack is the project's fake Web API; requests to the bot are
signed as Slack signs them.

The suite needs /usr/bin/chromium: `.ci/run` installs it. Where it is missing the suite FAILS
(a browser test that silently skips proves nothing); set SKIP_BROWSER_TESTS=1 to leave it out
on a machine without a browser.
"""
from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from werkzeug.serving import make_server

from bot import wiring
from bot.domain import product_api, webhooks
from bot.domain.audit import Actor
from examples.demo_product.app import create_app
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import PEOPLE, bot_settings
from tests.fakes.directory_data import load_directory
from tests.fakes.slack_api import FakeSlack
from tests.slack.signed import signature

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
#: Chromium's flags on these machines: no sandbox as root, and no background connections
#: (the network is closed; Chromium would otherwise retry them at every start)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
#: how long the demo product trusts a session status read from the bot (the kit's cache)
STATUS_CACHE_SECONDS = 2


class _Late:
    """A WSGI app set after its server is listening (the app needs its own URL)."""

    def __init__(self) -> None:
        self.app: Callable[..., Any] | None = None

    def __call__(self, environ, start_response):
        assert self.app is not None
        return self.app(environ, start_response)


def _serve(app, host: str):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_port}"


@dataclass
class World:
    bot_url: str
    product_url: str
    fake: FakeSlack
    container: wiring.Container
    demo: Any

    def send(self, body: str) -> requests.Response:
        ts = str(int(time.time()))
        return requests.post(
            f"{self.bot_url}/slack/events", data=body.encode(), timeout=30,
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(body, ts)},
        )

    def delivered(self) -> None:
        assert self.container.wait_for_deliveries(timeout=30)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if os.environ.get("SKIP_BROWSER_TESTS") == "1":
        pytest.skip("SKIP_BROWSER_TESTS=1")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"headless Chromium is required at {CHROMIUM} (apt-get install chromium; .ci/run does)", pytrace=False)
    return CHROMIUM


@pytest.fixture
def status_cache_seconds() -> int:
    """The demo product's status cache; a test parametrizes it to show what ends a session
    sooner (the bot's webhook)."""
    return STATUS_CACHE_SECONDS


@pytest.fixture
def world(db_url, tmp_path, session_factory, status_cache_seconds):
    load_directory(session_factory, tmp_path)
    bot_app, product_app = _Late(), _Late()
    bot_server, bot_url = _serve(bot_app, "127.0.0.1")
    product_server, product_url = _serve(product_app, "localhost")
    with FakeSlack(users=PEOPLE, channels=["CSECURITY1"]) as fake:
        settings = bot_settings(fake, db_url, tmp_path, public_base_url=bot_url, product_launch_url=f"{product_url}/impersonation/launch")
        container = wiring.build_container(settings)
        bot_app.app = container.web_app
        with session_factory() as db, db.begin():
            key = product_api.create_api_key(db, product="demo", actor=Actor(slack_id="USECURITY1", role="cli")).plaintext_key
        # the demo product receives the bot's notification webhooks, as an operator would set it up
        hook = webhooks.subscribe(session_factory, url=f"{product_url}/impersonation/webhooks", actor=Actor(slack_id="USECURITY1", role="cli"))
        demo = create_app(
            {
                "BOT_URL": bot_url,
                "JWKS_URL": f"{bot_url}/.well-known/jwks.json",
                "API_URL": bot_url,
                "API_KEY": key,
                "PUBLIC_URL": product_url,
                "LAUNCH_PATH": "/impersonation/launch",
                "DATABASE": str(tmp_path / "demo.db"),
                "SPOOL_DIR": str(tmp_path / "spool"),
                "SECRET_KEY": secrets.token_hex(16),
                "KIT_SECRET": secrets.token_bytes(32),
                "STATUS_CACHE_SECONDS": status_cache_seconds,
                "WEBHOOK_SECRET": hook.secret,
            }
        )
        product_app.app = demo
        try:
            yield World(bot_url, product_url, fake, container, demo)
        finally:
            demo.extensions["impersonation_kit"].reporter.close()
            for server in (bot_server, product_server):
                server.shutdown()
            container.close()


@pytest.fixture
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
