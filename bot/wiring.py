"""Start-up wiring: the one place that turns Settings into the running object graph.

`bot/cli.py` (serve, web, scheduler) and `bot/web/wsgi.py` (gunicorn) call this; nothing else
builds engines, Slack clients or apps. Every configuration problem surfaces here, before any
request is served, as one of STARTUP_ERRORS with a one-line message that says what to fix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from slack_sdk import WebClient
from slack_sdk.http_retry import default_retry_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.config import ConfigError, Settings, load_settings
from bot.db.engine import make_engine, make_session_factory
from bot.db.migrate import alembic_config
from bot.domain import keyring
from bot.domain.context import DomainContext, Retention
from bot.domain.directory import DirectoryError
from bot.domain.keys import KeyError_, SigningKey, load_or_create_signing_key
from bot.domain.outbox import InlineDeliverer
from bot.domain.policy import PolicyConfig, PolicyError, load_policy
from bot.domain.policy_audit import record_policy_change
from bot.domain.ports import Deliverer

if TYPE_CHECKING:
    from flask import Flask
    from slack_bolt import App

    from bot.web.background import AfterResponse
    from bot.web.slack_sign_in import SlackSignIn

#: Errors that mean "the operator must fix the configuration or the input": the CLI prints
#: their message on one line and exits 2; gunicorn halts instead of respawning workers.
STARTUP_ERRORS: tuple[type[Exception], ...] = (ConfigError, PolicyError, KeyError_, DirectoryError)

#: HKDF `info` label (RFC 5869 §3.2) that binds the derived key to its one use. Changing it
#: invalidates every CSRF token in flight, nothing else.
CSRF_KEY_LABEL = b"impersonation-bot/landing-page-csrf/v1"

#: Slack asks clients to honour Retry-After on HTTP 429 and to retry 5xx sparingly
#: (https://api.slack.com/apis/rate-limits). Added to slack_sdk's default connection-error
#: handler, which WebClient would otherwise use alone.
SLACK_RATE_LIMIT_RETRIES = 2
SLACK_SERVER_ERROR_RETRIES = 1

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


@dataclass
class Container:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    policy: PolicyConfig
    signing_key: SigningKey
    ctx: DomainContext
    slack_client: WebClient
    slack_app: App
    web_app: Flask
    #: the process's thread for Slack deliveries after a response (bot/web/background.py)
    after_response: AfterResponse | None = None
    #: what the listeners and the pages hand the messages their changes owed to (on that thread)
    deliverer: Deliverer | None = None

    def wait_for_deliveries(self, timeout: float = 30.0) -> bool:
        """Block until every delivery handed to the background thread so far has run (tests
        that check what Slack was sent; shutdown)."""
        return self.after_response.wait_idle(timeout) if self.after_response is not None else True

    def close(self) -> None:
        from bot.web.app import REFUSALS_EXTENSION

        refusals = self.web_app.extensions.get(REFUSALS_EXTENSION)
        if refusals is not None:  # the count of refusals left out of the log so far
            refusals.close()
        if self.after_response is not None:
            self.after_response.shutdown()  # let queued deliveries finish before the pool goes
        self.engine.dispose()


def derive_csrf_secret(signing_key: SigningKey) -> bytes:
    """A 256-bit secret for the landing page's CSRF tokens, derived from the signing key with
    HKDF-SHA256 (RFC 5869) and a fixed label. Every gunicorn worker and every host that holds
    the same key derives the same secret, so a form rendered by one worker verifies on
    another; the signing key itself never doubles as an HMAC key."""
    raw = signing_key.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CSRF_KEY_LABEL).derive(raw)


def make_slack_client(settings: Settings) -> WebClient:
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            *default_retry_handlers(),
            RateLimitErrorRetryHandler(max_retry_count=SLACK_RATE_LIMIT_RETRIES),
            ServerErrorRetryHandler(max_retry_count=SLACK_SERVER_ERROR_RETRIES),
        ],
    )


def make_courier_client(settings: Settings) -> WebClient:
    """The outbox's client: only connection errors are retried inside a call; rate limits and
    server errors are the outbox's to retry (Retry-After, backoff), without blocking."""
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=default_retry_handlers())


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision(s), comma-separated; None for an empty database."""
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ", ".join(sorted(heads)) or None


def schema_problem(engine: Engine) -> str | None:
    """None when the database is at the code's Alembic head, else what to do about it."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return None
    if not current:
        return "the database has no schema yet; run `impersonation-bot migrate`"
    if current - {revision.revision for revision in script.walk_revisions()}:
        return (
            f"the database is at revision {', '.join(sorted(current))}, which this code does not know "
            "(is an older version of the bot running against a newer database?)"
        )
    return (
        f"the database is at revision {', '.join(sorted(current))} but the code needs "
        f"{', '.join(sorted(heads))}; run `impersonation-bot migrate`"
    )


def require_current_schema(engine: Engine) -> None:
    problem = schema_problem(engine)
    if problem:
        raise ConfigError(problem)


def load_signing_key(settings: Settings) -> SigningKey:
    # Only dev may generate a key: elsewhere a fresh key per host would make hand-off tokens
    # and audit checkpoints unverifiable by whoever holds the published one.
    return load_or_create_signing_key(
        settings.signing_key_file, allow_create=settings.is_dev, owner_only=not settings.is_dev
    )


def require_sign_in_credentials(settings: Settings, policy: PolicyConfig) -> None:
    """A policy that requires Sign in with Slack before redemption needs the app's OAuth
    credentials; without them every link would fail, so start-up stops instead."""
    if policy.links.require_slack_sign_in and not settings.has_slack_sign_in:
        raise ConfigError(
            "the policy sets links.require_slack_sign_in, but SLACK_CLIENT_ID and SLACK_CLIENT_SECRET "
            "are not both set (the Slack app's Basic Information → App Credentials). "
            "See docs/sign-in-with-slack.md."
        )


def make_sign_in(settings: Settings, signing_key: SigningKey) -> SlackSignIn | None:
    if not settings.has_slack_sign_in:
        return None
    from bot.web.slack_sign_in import SlackSignIn

    return SlackSignIn(
        client_id=settings.slack_client_id or "",
        client_secret=settings.slack_client_secret or "",
        issuer=settings.slack_oidc_issuer,
        public_base_url=settings.public_base_url,
        # the flow cookie's key is derived from this under its own HKDF label
        secret=derive_csrf_secret(signing_key),
    )


def preflight(settings: Settings) -> None:
    """Everything that can be wrong with the configuration, checked without serving: Slack
    credentials, the policy file, the signing key (created here in dev, once, before any
    worker forks), the URLs and the database schema. Raises one of STARTUP_ERRORS."""
    settings.require_slack()
    settings.require_urls()
    require_sign_in_credentials(settings, load_policy(settings.policy_path))
    load_signing_key(settings)
    engine = make_engine(settings.database_url)
    try:
        require_current_schema(engine)
    finally:
        engine.dispose()


def build_container(settings: Settings) -> Container:
    settings.require_slack()
    settings.require_urls()
    policy = load_policy(settings.policy_path)
    require_sign_in_credentials(settings, policy)
    signing_key = load_signing_key(settings)
    # The Slack and web faces are imported here, not at module level, so that preflight()
    # (run by gunicorn's master before it forks) and the domain-only CLI commands do not load
    # Bolt and Flask.
    from slack_bolt.error import BoltError

    from bot.slack.app import build_slack_app
    from bot.slack.courier import SlackCourier
    from bot.slack.people import SlackGroups, SlackPeople
    from bot.web.app import create_web_app
    from bot.web.background import AfterResponse, BackgroundDeliverer
    from bot.webhooks.sender import WebhookSender

    engine = make_engine(settings.database_url)
    try:
        require_current_schema(engine)
        session_factory = make_session_factory(engine)
        # A policy that differs from the one last recorded is audited before
        # anything runs under it (once, however many processes start together).
        record_policy_change(session_factory, policy, source=str(settings.policy_path))
        # the JWKS of every process, and `audit verify`, know every key that signs
        keyring.register(session_factory, signing_key)
        client = make_slack_client(settings)
        ctx = DomainContext(
            sessions=session_factory,
            policy=policy,
            signing_key=signing_key,
            public_base_url=settings.public_base_url,
            product_launch_url=settings.product_launch_url,
            groups=SlackGroups(client),
            people=SlackPeople(client),
            checkpoint_file=settings.checkpoint_file,
            retention=Retention(
                outbox=timedelta(days=settings.retention_outbox_days), links=timedelta(days=settings.retention_link_days)
            ),
        )
        # Outbox deliveries, by the scheduler and by each process's background
        # thread: a client that does not sleep through 429s itself, so a rate limit goes back
        # to the outbox (Retry-After) instead of holding the thread — and no call outlasts the
        # claim's lease (outbox.LEASE).
        courier_client = make_courier_client(settings)
        courier = ctx.courier = SlackCourier(ctx, courier_client)
        ctx.webhook_sender = WebhookSender(ctx)
        # What a change owes is sent from one background thread per process, not the request
        # thread (bot/web/background.py): every message a listener's change, a redemption or
        # a session ended through the product API owed (the answer never waits for Slack).
        # The one deliverer, for the Slack app and the web app alike.
        after_response = AfterResponse()
        deliverer = BackgroundDeliverer(InlineDeliverer(ctx, courier), after_response)
        try:
            slack_app = build_slack_app(
                ctx, client=client, signing_secret=settings.slack_signing_secret or "", deliverer=deliverer
            )
        except BoltError as exc:  # e.g. auth.test refused the token: a configuration problem
            raise ConfigError(f"Slack app could not start: {exc}") from None
        except OSError as exc:  # Bolt's start-up auth.test could not reach SLACK_API_URL
            raise ConfigError(f"cannot reach the Slack Web API at {settings.slack_api_url}: {exc}") from None
        web_app = create_web_app(
            ctx,
            slack_app=slack_app,
            deliverer=deliverer,
            csrf_secret=derive_csrf_secret(signing_key),
            sign_in=make_sign_in(settings, signing_key),
            metrics_token=settings.metrics_token,
        )
    except BaseException:
        engine.dispose()
        raise
    return Container(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        policy=policy,
        signing_key=signing_key,
        ctx=ctx,
        slack_client=client,
        slack_app=slack_app,
        web_app=web_app,
        after_response=after_response,
        deliverer=deliverer,
    )


#: third-party loggers whose INFO lines come per run or per start, not per change: APScheduler
#: narrates every job run ("Running job …", "… executed successfully": two lines every 2 s from
#: the outbox alone) and every job it adds; Alembic narrates each process's revision check.
#: Their warnings and errors (a job that raised, a missed run) still come through.
QUIET_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors", "alembic")


def configure_logging(settings: Settings | None = None) -> None:
    """Process logging for serve, web and scheduler: one stderr handler on the root logger,
    LOG_LEVEL (INFO) and LOG_FORMAT (text, or json: one object per line), with link tokens,
    JWTs, Slack tokens, response URLs and trigger ids redacted from every record and every
    record kept on one line (bot/web/logging.py: they are bearer credentials, and request text
    must not forge log lines). At INFO a running bot logs what changed and what failed, not
    that its jobs ran and found nothing to do."""
    from bot.web.logging import install_log_redaction, json_formatter

    settings = settings or load_settings()
    logging.basicConfig(level=getattr(logging, settings.log_level), format=LOG_FORMAT)
    if settings.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(json_formatter())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, getattr(logging, settings.log_level)))
    install_log_redaction()


def build_web_app_from_env() -> Flask:
    """The WSGI app for `gunicorn bot.web.wsgi:app`: settings from the environment / .env."""
    return build_container(load_settings()).web_app
