"""What a product tells the kit: where the bot is, its own launch URL, its API key, a secret."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Methods that change state (RFC 9110 §9.2.1 "safe methods" are the others).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class KitConfig:
    """`bot_url` is impersonation-bot's PUBLIC_BASE_URL (the JWT's `iss`); `launch_url` is this
    product's PRODUCT_LAUNCH_URL (the JWT's `aud`; its path is the launch route); `api_key`
    is the product's key for the bot's product API (server-side only, never sent to a
    browser); `secret` (at least 32 random bytes, the same in every worker) signs the kit's
    cookie and the End button's CSRF token."""

    bot_url: str
    launch_url: str
    api_key: str
    secret: bytes
    jwks_url: str | None = None  # default: bot_url + /.well-known/jwks.json
    api_url: str | None = None  # where the product API is reached, default bot_url
    cookie_name: str = "impersonation_kit"
    end_path: str = "/_impersonation/end"
    after_launch_path: str = "/"
    status_cache_seconds: float = 15.0
    leeway_seconds: int = 5
    jwks_cache_seconds: int = 300
    #: An unknown `kid` refetches the JWKS (a rotated key) at most this often, so tokens with
    #: made-up kids cannot make the kit hammer the bot (PyJWKClient's cooldown, PyJWT ≥ 2.11).
    jwks_refetch_cooldown_seconds: float = 30.0
    #: Unsafe requests to these paths pass in a read-only session (the End route always does).
    write_allow_list: frozenset[str] = field(default_factory=frozenset)
    #: Report every unsafe request that succeeded (2xx/3xx) as an action, unless the product
    #: reported its own actions during that request with `report_action`.
    auto_report: bool = True
    #: Force the Secure cookie attribute even when the request looks like plain http (behind
    #: a TLS-terminating proxy that does not say so).
    force_secure_cookie: bool = False
    http_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise ValueError("KitConfig.secret must be at least 32 random bytes")
        if not self.api_key:
            raise ValueError("KitConfig.api_key is required")

    @property
    def issuer(self) -> str:
        return self.bot_url.rstrip("/")

    @property
    def launch_path(self) -> str:
        return urlsplit(self.launch_url).path or "/"

    @property
    def jwks(self) -> str:
        return self.jwks_url or f"{self.issuer}/.well-known/jwks.json"

    @property
    def api_base(self) -> str:
        return (self.api_url or self.issuer).rstrip("/")
