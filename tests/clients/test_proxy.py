"""Reverse-proxy mode: the demo product WITHOUT the middleware, behind the kit's proxy, all
over real HTTP. The proxy opens the session, injects the banner, enforces scope, adds
X-Impersonation-Context (and strips any the browser sends), hides its cookie from the product
and reports writes."""
from __future__ import annotations

import json
import secrets

import pytest
import requests

from examples.demo_product.app import DEMO_PASSWORD, create_app
from impersonation_kit import ImpersonationKit, KitConfig
from impersonation_kit.proxy import build_proxy
from tests.clients.conftest import BOT_ISSUER, LAUNCH_PATH, PRODUCT, banner_count, form_field, serve
from tests.web.conftest import audit_events


class Recorder:
    """Remembers what the product received (cookies, the context header)."""

    def __init__(self, app) -> None:
        self.app, self.seen = app, []

    def __call__(self, environ, start_response):
        self.seen.append({"cookie": environ.get("HTTP_COOKIE", ""), "context": environ.get("HTTP_X_IMPERSONATION_CONTEXT")})
        return self.app(environ, start_response)


@pytest.fixture
def proxied(demo_config, bot, api_key):
    product = create_app({**demo_config, "USE_KIT": False, "TRUST_IMPERSONATION_HEADER": True})
    recorder = Recorder(product.wsgi_app)
    product.wsgi_app = recorder
    upstream = serve(product)
    kit = ImpersonationKit(
        KitConfig(bot_url=BOT_ISSUER, launch_url=PRODUCT + LAUNCH_PATH, api_key=api_key, secret=secrets.token_bytes(32),
                  jwks_url=f"{bot.url}/.well-known/jwks.json", api_url=bot.url)
    )
    proxy = serve(build_proxy(kit, upstream.url))
    yield proxy.url, kit, recorder
    proxy.server.shutdown()
    upstream.server.shutdown()
    kit.reporter.close()


def test_the_product_behind_the_proxy_gets_a_session_without_code_changes(proxied, handoff, session_factory):
    url, kit, recorder = proxied
    sid, token = handoff(scope="read_write")
    agent = requests.Session()
    launched = agent.post(url + LAUNCH_PATH, data={"token": token}, allow_redirects=False)
    assert launched.status_code == 303 and "HttpOnly" in launched.headers["Set-Cookie"]
    page = agent.get(url + "/")
    assert page.status_code == 200 and 'id="who">Bob Builder (acme)' in page.text and banner_count(page.text) == 1
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.text

    written = agent.post(url + "/notes", data={"body": "via the proxy", "csrf": form_field(page.text, "/notes", "csrf")}, allow_redirects=False)
    assert written.status_code == 302
    assert kit.reporter.flush(timeout=30)
    (row,) = [json.loads(e.details) for e in audit_events(session_factory) if e.type == "action.recorded" and e.session_id == sid]
    assert (row["action"], row["target"]) == ("http.post", "/notes")

    contexts = [json.loads(s["context"]) for s in recorder.seen if s["context"]]
    assert contexts and all(c == {"session_id": sid, "agent": "senior1@corp.example", "account": "acme", "customer_user": "u-bob", "scope": "read_write"} for c in contexts)
    assert all("impersonation_kit=" not in s["cookie"] for s in recorder.seen)  # the kit's cookie stays with the proxy
    assert f'&#34;session_id&#34;: &#34;{sid}&#34;' in agent.get(url + "/").text  # the product stamped the write

    ended = agent.post(url + "/_impersonation/end", data={"csrf": form_field(page.text, "/_impersonation/end", "csrf")})
    assert ended.status_code == 200 and "Impersonation ended" in ended.text
    assert agent.get(url + "/", allow_redirects=False).status_code == 302  # the product's own login


def test_the_proxy_enforces_read_only_and_strips_a_forged_context_header(proxied, handoff):
    url, _kit, recorder = proxied
    forged = json.dumps({"session_id": "x", "agent": "me", "account": "acme", "customer_user": "u-alice", "scope": "read_write"})
    outsider = requests.get(url + "/", headers={"X-Impersonation-Context": forged}, allow_redirects=False)
    assert outsider.status_code == 302 and recorder.seen[-1]["context"] is None  # not passed to the product
    _sid, token = handoff()
    agent = requests.Session()
    agent.post(url + LAUNCH_PATH, data={"token": token}, allow_redirects=False)
    before = len(recorder.seen)
    refused = agent.post(url + "/notes", data={"body": "nope"})
    assert refused.status_code == 403 and "read-only" in refused.text
    assert len(recorder.seen) == before  # the write never reached the product
    # A customer signed in through the same proxy keeps their own session and sees no banner.
    customer = requests.Session()
    customer.get(url + "/login")
    assert customer.post(url + "/login", data={"email": "carol@globex.example", "password": DEMO_PASSWORD}, allow_redirects=False).status_code == 302
    theirs = customer.get(url + "/")
    assert 'id="who">Carol (globex)' in theirs.text and banner_count(theirs.text) == 0


def test_the_documented_proxy_command_serves_a_session(demo_config, bot, api_key, handoff, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    product = create_app({**demo_config, "USE_KIT": False, "TRUST_IMPERSONATION_HEADER": True})
    upstream = serve(product)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        str(Path(sys.executable).parent / "impersonation-kit-proxy"), "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
        "--bot-url", BOT_ISSUER, "--launch-url", PRODUCT + LAUNCH_PATH, "--jwks-url", f"{bot.url}/.well-known/jwks.json",
        "--api-url", bot.url, "--spool-dir", str(tmp_path / "spool"), "--jti-db", str(tmp_path / "jti.db"),
    ]
    env = {**os.environ, "IMPERSONATION_KIT_API_KEY": api_key, "IMPERSONATION_KIT_SECRET": secrets.token_hex(32)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):  # wait until it listens (liveness only, nothing timed)
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        _sid, token = handoff()
        agent = requests.Session()
        assert agent.post(f"http://127.0.0.1:{port}{LAUNCH_PATH}", data={"token": token}, allow_redirects=False).status_code == 303
        page = agent.get(f"http://127.0.0.1:{port}/")
        assert 'id="who">Bob Builder (acme)' in page.text and banner_count(page.text) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)
        upstream.server.shutdown()
