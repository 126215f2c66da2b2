"""Settings from the environment (DESIGN.md, "Outside interfaces").

Secrets come only from the environment; a `.env` file in the working directory is read if
present (python-dotenv), without overriding variables already set.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
#: Sign in with Slack's OpenID Connect issuer; its discovery document is at
#: <issuer>/.well-known/openid-configuration (OpenID Connect Discovery 1.0 §4)
DEFAULT_SLACK_OIDC_ISSUER = "https://slack.com"
DEFAULT_DATABASE_URL = "sqlite:///impersonation.db"
DEFAULT_POLICY_PATH = "policy.toml"
DEFAULT_PUBLIC_BASE_URL = "http://localhost:3000"
DEFAULT_SIGNING_KEY_FILE = "signing_key.pem"
DEV_HOST = "127.0.0.1"
PRODUCTION_HOST = "0.0.0.0"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Slack's app-level tokens start so; only they may open a Socket Mode connection
#: (https://api.slack.com/authentication/token-types#app-level)
APP_TOKEN_PREFIX = "xapp-"
#: other token kinds someone may paste into SLACK_APP_TOKEN by mistake, named in the error
_OTHER_TOKEN_KINDS = {"xoxb-": "a bot token", "xoxp-": "a user token", "xoxe-": "a refresh token"}


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None
    slack_signing_secret: str | None
    slack_app_token: str | None
    slack_api_url: str
    database_url: str
    policy_path: Path
    public_base_url: str
    product_launch_url: str | None
    signing_key_file: Path
    #: where signed audit checkpoints are appended; unset = only in Slack
    checkpoint_file: Path | None
    #: "dev" generates a signing key when none exists; anything else refuses to.
    environment: str
    port: int
    #: the interface the web server listens on: loopback in dev (nothing on the network
    #: reaches a laptop's bot by accident), every interface elsewhere (a container or a host
    #: behind a load balancer must accept connections from outside itself)
    host: str = "127.0.0.1"
    #: the owner role's URL for `migrate` (docs/postgresql.md): the release step changes the
    #: schema as its owner while web and clock run as the least-privilege app role
    migration_database_url: str | None = None
    #: LOG_FORMAT: "text" (one line per record) or "json" (one JSON object per line)
    log_format: str = "text"
    #: LOG_LEVEL: the root logger's level name
    log_level: str = "INFO"
    #: the Slack app's Client ID and Client Secret (Basic Information → App Credentials), for
    #: Sign in with Slack before a link redeems (policy links.require_slack_sign_in)
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    #: the OpenID Connect issuer (tests point it at a fake provider, as SLACK_API_URL)
    slack_oidc_issuer: str = DEFAULT_SLACK_OIDC_ISSUER

    @property
    def has_slack_sign_in(self) -> bool:
        return bool(self.slack_client_id and self.slack_client_secret)
    #: METRICS_TOKEN: the bearer token /metrics asks for; unset, /metrics is a 404
    metrics_token: str | None = None
    #: RETENTION_OUTBOX_DAYS / RETENTION_LINK_DAYS (bot/domain/retention.py)
    retention_outbox_days: int = 30
    retention_link_days: int = 90

    @property
    def has_slack_credentials(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def socket_mode(self) -> bool:
        """Slack delivers commands, interactions and events over Socket Mode (DESIGN.md)."""
        return self.slack_app_token is not None

    def require_slack(self) -> None:
        missing = [
            name
            for name, value in (
                ("SLACK_BOT_TOKEN", self.slack_bot_token),
                ("SLACK_SIGNING_SECRET", self.slack_signing_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set. Create the Slack app from manifest.yaml "
                "(https://api.slack.com/apps → Create New App → From an app manifest), install it "
                "to your workspace, then put the Bot User OAuth Token in SLACK_BOT_TOKEN and the "
                "Signing Secret in SLACK_SIGNING_SECRET (environment or .env). See README.md."
            )
        self.require_app_token_shape()

    @property
    def is_dev(self) -> bool:
        return self.environment == "dev"

    def require_urls(self) -> None:
        """PUBLIC_BASE_URL and PRODUCT_LAUNCH_URL checked at start, not when the first agent
        clicks a link: absolute http(s) URLs with a host, https outside dev (a hand-off token
        or a CSRF cookie sent in clear can be replayed by anyone on the path), and outside dev
        PRODUCT_LAUNCH_URL must be set at all (without it no link can be redeemed)."""
        check_url("PUBLIC_BASE_URL", self.public_base_url, https=not self.is_dev)
        if self.product_launch_url is not None:
            check_url("PRODUCT_LAUNCH_URL", self.product_launch_url, https=not self.is_dev)
        elif not self.is_dev:
            raise ConfigError(
                "PRODUCT_LAUNCH_URL not set: it is where a redeemed link sends the agent with the "
                "signed hand-off (docs/product-api.md), e.g. https://app.example.com/impersonation/launch"
            )
        if self.has_slack_sign_in:  # the id_token's issuer and where the client secret is sent
            check_url("SLACK_OIDC_ISSUER", self.slack_oidc_issuer, https=not self.is_dev)

    def require_app_token_shape(self) -> None:
        """A SLACK_APP_TOKEN that cannot be an app-level token stops start-up here, before
        anything connects. The message never repeats the value, only what kind it looks like."""
        token = self.slack_app_token
        if token is None or token.startswith(APP_TOKEN_PREFIX):
            return
        kind = next((name for prefix, name in _OTHER_TOKEN_KINDS.items() if token.startswith(prefix)), None)
        raise ConfigError(
            f"SLACK_APP_TOKEN must be an app-level token starting with {APP_TOKEN_PREFIX!r}"
            + (f", but it holds {kind}" if kind else "")
            + ". Generate one with the connections:write scope under Basic Information → "
            "App-Level Tokens in the app's settings, or unset SLACK_APP_TOKEN to receive Slack "
            "requests over HTTP. See README.md."
        )


def check_url(name: str, value: str, *, https: bool) -> None:
    """One line naming the variable and what is wrong with its value (RFC 3986 absolute URL)."""
    if re.search(r"\s", value):
        raise ConfigError(f"{name} {value!r} contains white space")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigError(f"{name} {value!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} {value!r} must be an absolute http(s) URL with a host, e.g. https://bot.example.com")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{name} must not carry credentials (user:password@)")
    if https and parts.scheme != "https":
        raise ConfigError(f"{name} {value!r} must use https outside dev (IMPERSONATION_ENV is not dev)")


def _days(env: dict[str, str], name: str, default: int) -> int:
    text = (env.get(name) or str(default)).strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name} must be a whole number of days, at least 1, got {text!r}")
    return int(text)


def load_settings(env: dict[str, str] | None = None, *, read_dotenv: bool = True) -> Settings:
    if env is None:
        if read_dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        env = dict(os.environ)
    api_url = env.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
    if not api_url.endswith("/"):
        api_url += "/"  # slack_sdk joins method names onto the base URL
    port_text = env.get("PORT", "3000")
    if not port_text.isdigit():
        raise ConfigError(f"PORT must be a number, got {port_text!r}")
    checkpoint = env.get("AUDIT_CHECKPOINT_FILE")
    environment = env.get("IMPERSONATION_ENV", "dev")
    log_format = (env.get("LOG_FORMAT") or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    log_level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    retention = {name: _days(env, name, default) for name, default in (("RETENTION_OUTBOX_DAYS", 30), ("RETENTION_LINK_DAYS", 90))}
    return Settings(
        slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        slack_app_token=env.get("SLACK_APP_TOKEN") or None,
        slack_api_url=api_url,
        database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        policy_path=Path(env.get("IMPERSONATION_POLICY") or DEFAULT_POLICY_PATH),
        public_base_url=(env.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL).rstrip("/"),
        product_launch_url=env.get("PRODUCT_LAUNCH_URL") or None,
        signing_key_file=Path(env.get("SIGNING_KEY_FILE") or DEFAULT_SIGNING_KEY_FILE),
        checkpoint_file=Path(checkpoint) if checkpoint else None,
        environment=environment,
        port=int(port_text),
        host=env.get("HOST") or (DEV_HOST if environment == "dev" else PRODUCTION_HOST),
        migration_database_url=env.get("MIGRATION_DATABASE_URL") or None,
        log_format=log_format,
        log_level=log_level,
        slack_client_id=env.get("SLACK_CLIENT_ID") or None,
        slack_client_secret=env.get("SLACK_CLIENT_SECRET") or None,
        slack_oidc_issuer=(env.get("SLACK_OIDC_ISSUER") or DEFAULT_SLACK_OIDC_ISSUER).rstrip("/"),
        metrics_token=env.get("METRICS_TOKEN") or None,
        retention_outbox_days=retention["RETENTION_OUTBOX_DAYS"],
        retention_link_days=retention["RETENTION_LINK_DAYS"],
    )
