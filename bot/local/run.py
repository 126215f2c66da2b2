"""Local mode: `serve` without Slack credentials (docs/local-workspace.md).

The real bot — the same Bolt app, listeners, web server (gunicorn), scheduler and a SQLite
database — served on localhost against the local workspace instead of Slack, with the demo
product (examples/demo_product) as PRODUCT_LAUNCH_URL and the demo directory and policy
(bot/local/demo.py) loaded on first start. Everything lives in `.local-workspace/` under the
working directory; nothing of it touches a real deployment's database, key or policy.

Ports: the bot on PORT (3000), the workspace on PORT+1, the demo product on PORT+2. The bot
is reached as http://localhost:PORT and the product as http://127.0.0.1:PORT+2, two sites, so
their cookies stay apart as a real bot's and product's would.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from werkzeug.serving import make_server

from bot.config import ConfigError, Settings, load_settings
from bot.db.engine import make_engine, make_session_factory
from bot.db.models import ApiKey
from bot.domain import digests, product_api, webhooks
from bot.domain.audit import Actor
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.local import demo, reference
from bot.local.webapi import SlackStandIn, StandInUser
from bot.local.workspace import Workspace

log = logging.getLogger(__name__)
STATE_DIR = Path(".local-workspace")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_PRODUCT = "demo"
DEMO_WEBHOOK_DESCRIPTION = "the local workspace's demo product"
#: liveness only: how long start-up waits for the demo product to listen
DEMO_START_SECONDS = 30
#: prctl(2): the signal a child gets when its parent dies
PR_SET_PDEATHSIG = 1


@dataclass
class LocalMode:
    settings: Settings
    workspace: Workspace
    workspace_url: str
    product_url: str
    _server: object
    _product: subprocess.Popen | None
    _owner_pid: int

    def attach(self, ctx: DomainContext) -> None:
        """The workspace's "post the weekly review now" runs the scheduler's digest job as of
        the next weekly slot, with this process's domain context."""

        def post_digest_now() -> str:
            now = utcnow()
            next_slot = digests.weekly_period(ctx.policy, now).end + timedelta(days=7)
            queued = digests.run_due(ctx, now=now, as_of=next_slot)
            return f"queued {', '.join(queued)}" if queued else "this week's review is already posted"

        self.workspace.on_digest = post_digest_now

    def stop(self) -> None:
        # gunicorn's workers are forks of this process and run its exit handlers too
        if os.getpid() != self._owner_pid:
            return
        if self._product is not None and self._product.poll() is None:
            self._product.terminate()
            try:
                self._product.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._product.kill()
        self._server.shutdown()  # type: ignore[attr-defined]


def wants_local_mode(env: dict[str, str] | None = None) -> bool:
    """No Slack credential of any kind set: the first run of someone trying the bot. A partly
    configured Slack app still stops with the message naming what is missing."""
    env = dict(os.environ) if env is None else env
    return not any(env.get(name) for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"))


def refuse_outside_dev(settings: Settings) -> None:
    if not settings.is_dev:
        raise ConfigError(
            f"no Slack credentials, and local mode (a local stand-in for Slack) runs only with IMPERSONATION_ENV=dev, "
            f"not {settings.environment!r}. Set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (README.md)."
        )


#: settings a real deployment may carry that local mode leaves out
_LEFT_OUT = ("SLACK_APP_TOKEN", "MIGRATION_DATABASE_URL", "AUDIT_CHECKPOINT_FILE", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")


def local_environment(settings: Settings, *, workspace_url: str, signing_secret: str, bot_token: str) -> dict[str, str]:
    """The environment the bot runs with in local mode. Set in the process's environment, so
    that gunicorn's configuration and every worker read the same settings as `serve` does."""
    port = settings.port
    return {
        "SLACK_BOT_TOKEN": bot_token,
        "SLACK_SIGNING_SECRET": signing_secret,
        "SLACK_API_URL": f"{workspace_url}/api/",
        "DATABASE_URL": f"sqlite:///{(STATE_DIR / 'impersonation.db').resolve()}",
        "IMPERSONATION_POLICY": str(demo.POLICY_PATH),
        "PUBLIC_BASE_URL": f"http://localhost:{port}",
        "PRODUCT_LAUNCH_URL": f"http://127.0.0.1:{port + 2}/impersonation/launch",
        "SIGNING_KEY_FILE": str((STATE_DIR / "signing_key.pem").resolve()),
        "HOST": "127.0.0.1",
    }


def start(settings: Settings, *, migrate) -> LocalMode:
    """Start the workspace and the demo product, prepare the database; the settings returned
    are the bot's for local mode. `migrate` brings a database to head (cli.migrate_if_sqlite)."""
    refuse_outside_dev(settings)
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    standin = SlackStandIn(
        bot_token="xoxb-local-" + secrets.token_hex(12),
        users=[StandInUser(p.slack_id, email=p.email, tz=p.tz, name=p.name.split()[0].lower(), real_name=p.name)
               for p in demo.PERSONAS],
        channels=[demo.SECURITY_CHANNEL],
        team_id="T0LOCAL",
        reference=reference.find(),
    )
    signing_secret = secrets.token_hex(32)
    workspace = Workspace(
        standin, demo.PERSONAS, signing_secret=signing_secret,
        bot_events_url=f"http://127.0.0.1:{settings.port}/slack/events",
        channels={demo.SECURITY_CHANNEL: demo.SECURITY_CHANNEL_NAME},
    )
    try:
        server = make_server("127.0.0.1", settings.port + 1, workspace, threaded=True)
    except OSError as exc:
        raise ConfigError(f"local mode serves its workspace on port {settings.port + 1} (PORT+1): {exc.strerror}; "
                          "set PORT to a port with the two after it free") from None
    workspace_url = f"http://localhost:{server.server_port}"
    workspace.bind(workspace_url)

    for name in _LEFT_OUT:
        os.environ.pop(name, None)
    os.environ.update(local_environment(settings, workspace_url=workspace_url, signing_secret=signing_secret,
                                        bot_token=standin.bot_token))
    local = load_settings(read_dotenv=False)
    migrate(local)
    engine = make_engine(local.database_url)
    try:
        sessions = make_session_factory(engine)
        demo.load_once(sessions)
        api_key = _fresh_demo_key(sessions)
        webhook_secret = _fresh_demo_webhook(sessions, _product_base(local))
    finally:
        engine.dispose()
    # before any thread of ours runs: the child is forked with a pre-exec step
    product = _start_demo_product(local, api_key, webhook_secret)
    workspace.keep_in(STATE_DIR / "workspace.json")
    threading.Thread(target=server.serve_forever, name="local-workspace", daemon=True).start()
    mode = LocalMode(local, workspace, workspace_url, _product_base(local), server, product, os.getpid())
    atexit.register(mode.stop)
    return mode


def _fresh_demo_key(sessions) -> str:
    """A new product API key for the demo product each start (its plaintext is shown once);
    the previous start's keys are revoked."""
    actor = Actor.system("local-workspace")
    with sessions() as db, db.begin():
        for key_id in db.execute(select(ApiKey.id).where(ApiKey.product == DEMO_PRODUCT, ApiKey.revoked_at.is_(None))).scalars():
            product_api.revoke_api_key(db, key_id, actor=actor)
        return product_api.create_api_key(db, product=DEMO_PRODUCT, actor=actor).plaintext_key


def _product_base(settings: Settings) -> str:
    return (settings.product_launch_url or "").rsplit("/impersonation", 1)[0]


def _fresh_demo_webhook(sessions, product_url: str) -> str:
    """The bot's notification webhooks to the demo product (a revoked session ends there at
    once; customers see "support accessed your account"): subscribed afresh each start, as an
    operator would with `webhooks add`, the previous start's subscription removed."""
    actor = Actor.system("local-workspace")
    for old in webhooks.subscriptions(sessions):
        if old.description == DEMO_WEBHOOK_DESCRIPTION:
            webhooks.remove(sessions, old.id, actor=actor)
    return webhooks.subscribe(sessions, url=f"{product_url}/impersonation/webhooks", description=DEMO_WEBHOOK_DESCRIPTION,
                              actor=actor).secret


def _stop_with_parent() -> None:
    """In the demo product's process before it runs: on Linux it gets SIGTERM when `serve`
    dies, even killed outright (when the exit handlers that stop it never run)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_demo_product(settings: Settings, api_key: str, webhook_secret: str) -> subprocess.Popen:
    if not (REPO_ROOT / "examples" / "demo_product").is_dir():
        raise ConfigError("local mode needs the demo product (examples/demo_product) of a clone of the repository")
    port = settings.port + 2
    env = {
        **os.environ,
        "DEMO_API_KEY": api_key,
        "DEMO_WEBHOOK_SECRET": webhook_secret,
        "DEMO_PORT": str(port),
        "DEMO_BOT_URL": settings.public_base_url,
        "DEMO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DEMO_DB": str((STATE_DIR / "demo_product.db").resolve()),
        "DEMO_SPOOL_DIR": str((STATE_DIR / "demo_product_spool").resolve()),
    }
    product = subprocess.Popen([sys.executable, "-m", "examples.demo_product"], cwd=REPO_ROOT, env=env,  # noqa: S603
                               preexec_fn=_stop_with_parent)
    deadline = time.monotonic() + DEMO_START_SECONDS
    while time.monotonic() < deadline:
        if product.poll() is not None:
            raise ConfigError(f"the demo product stopped at start (exit {product.returncode}); see its output above")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):  # noqa: S310 — our own child
                return product
        except OSError:
            time.sleep(0.2)
    product.terminate()
    raise ConfigError(f"the demo product did not listen on 127.0.0.1:{port} within {DEMO_START_SECONDS} s")
