"""`impersonation-bot serve` without Slack credentials, as a visitor runs it (bot/local/run.py)."""
from __future__ import annotations

import signal
import sys

import pytest
import requests

from tests.e2e.conftest import wait_for
from tests.local.conftest import listening


def test_serve_says_in_one_line_where_to_go_and_serves_the_three_parts(local_serve):
    lines = [line for line in local_serve.log.read_text().splitlines() if line.startswith("local mode")]
    assert lines == [f"local mode (no Slack credentials): open {local_serve.workspace} — the bot with a local "
                     "workspace and the demo product, nothing leaves this machine"]
    assert "Local workspace" in requests.get(local_serve.workspace, timeout=10).text
    assert requests.get(f"{local_serve.product}/login", timeout=10).ok
    # the bot's JWKS is what the demo product verifies hand-offs with
    assert requests.get(f"http://127.0.0.1:{local_serve.port}/.well-known/jwks.json", timeout=10).json()["keys"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's (prctl)")
def test_the_demo_product_stops_with_serve_even_when_serve_is_killed(local_serve):
    assert listening(f"{local_serve.product}/login")
    local_serve.process.send_signal(signal.SIGKILL)
    local_serve.process.wait(timeout=10)
    wait_for(lambda: not listening(f"{local_serve.product}/login"), timeout=20)
