"""`impersonation-bot serve` in local mode as a subprocess: its own working directory, no
Slack settings in its environment, three free ports (the bot, the workspace, the product)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import wait_for

#: liveness only: how long start-up may take before the test gives up
START_SECONDS = 60


def three_free_ports() -> int:
    """A base port with the two after it free too."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            for port in (base, base + 1, base + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three free ports in a row")


def listening(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


@dataclass
class Serving:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def workspace(self) -> str:
        return f"http://localhost:{self.port + 1}"

    @property
    def product(self) -> str:
        return f"http://127.0.0.1:{self.port + 2}"


@pytest.fixture
def local_serve(tmp_path):
    port = three_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "IMPERSONATION_"))}
    env.update(PORT=str(port), WEB_CONCURRENCY="2", IMPERSONATION_ENV="dev")
    command = [str(Path(sys.executable).with_name("impersonation-bot")), "serve"]
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        serve = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        serving = Serving(serve, port, log_path)
        try:
            wait_for(lambda: serve.poll() is not None or (listening(f"http://127.0.0.1:{port}/healthz")
                                                           and listening(serving.workspace)), timeout=START_SECONDS)
            assert serve.poll() is None, log_path.read_text()
            yield serving
        finally:
            if serve.poll() is None:
                serve.send_signal(signal.SIGTERM)
                try:
                    serve.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    serve.kill()
