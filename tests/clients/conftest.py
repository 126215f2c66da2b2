"""Fixtures for the product-side kit (clients/python): the real bot web app served over real
HTTP (its JWKS and product API), hand-offs minted by real redemptions, and the demo product
(examples/demo_product) wired to that bot."""
from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from bot.domain import links, product_api
from bot.domain.audit import Actor
from bot.web.app import create_web_app
from examples.demo_product.app import create_app
from bot.domain import requests as domain_requests
from bot.domain.requests import AgentIdentity, RequestForm
from tests.web.conftest import RecordingDeliverer, directory  # noqa: F401 - a fixture

BOT_ISSUER = "http://bot.test"  # ctx.public_base_url (tests/conftest.py)
PRODUCT = "http://product.test"  # ctx.product_launch_url is PRODUCT + LAUNCH_PATH
LAUNCH_PATH = "/impersonation/launch"


@dataclass
class Served:
    url: str
    server: object


def serve(app) -> Served:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Served(url=f"http://127.0.0.1:{server.server_port}", server=server)


@pytest.fixture
def bot(ctx):
    """The bot's web app over real HTTP: JWKS, the product API (and, once there, the End API)."""
    app = create_web_app(ctx, deliverer=RecordingDeliverer(), csrf_secret=secrets.token_bytes(32))
    served = serve(app)
    yield served
    served.server.shutdown()


@pytest.fixture
def api_key(session_factory) -> str:
    with session_factory() as db, db.begin():
        return product_api.create_api_key(db, product="demo", actor=Actor(slack_id="USECURITY1", role="cli")).plaintext_key


@pytest.fixture
def handoff(ctx, directory):  # noqa: F811
    """handoff(**form overrides) → (session id, the hand-off JWT) of a session redeemed now.
    Read-only sessions are asked for by UAGENT1 (support), read-write ones by USENIOR1."""

    def _handoff(**overrides) -> tuple[str, str]:
        values = dict(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
        values.update(overrides)
        agent = "USENIOR1" if values["scope"] == "read_write" else "UAGENT1"
        granted = domain_requests.submit_request(ctx, AgentIdentity(agent), RequestForm(**values))
        assert isinstance(granted, domain_requests.Granted), granted
        redemption = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])
        assert isinstance(redemption, links.Redemption)
        return redemption.session.id, redemption.handoff_token

    return _handoff


@pytest.fixture
def demo_config(bot, api_key, tmp_path) -> dict:
    return {
        "BOT_URL": BOT_ISSUER,
        "JWKS_URL": f"{bot.url}/.well-known/jwks.json",
        "API_URL": bot.url,
        "API_KEY": api_key,
        "PUBLIC_URL": PRODUCT,
        "LAUNCH_PATH": LAUNCH_PATH,
        "DATABASE": str(tmp_path / "demo.db"),
        "SPOOL_DIR": str(tmp_path / "spool"),
        "SECRET_KEY": "test-" + secrets.token_hex(16),
        "KIT_SECRET": secrets.token_bytes(32),
        "STATUS_CACHE_SECONDS": 15,
    }


@pytest.fixture
def demo(demo_config):
    app = create_app(demo_config)
    app.testing = True
    yield app
    app.extensions["impersonation_kit"].reporter.close()


@pytest.fixture
def kit(demo):
    return demo.extensions["impersonation_kit"]


def launch(client, token: str):
    return client.post(LAUNCH_PATH, data={"token": token}, base_url=PRODUCT)


def banner_count(html: str) -> int:
    return len(re.findall(r"<impersonation-kit-banner\b", html))


def form_field(html: str, form_action: str, name: str) -> str:
    form = re.search(rf'<form[^>]*action="{re.escape(form_action)}".*?</form>', html, re.S)
    assert form, f"no form posting to {form_action}"
    found = re.search(rf'name="{name}" value="([^"]*)"', form.group(0))
    assert found, f"no {name} in the form"
    return found.group(1)
