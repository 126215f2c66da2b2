"""Verifying the hand-off JWT the agent's browser POSTs to the launch route.

The same checks as docs/product-api.md "Verifying the hand-off JWT": keys from the bot's
JWKS by `kid` (PyJWT's PyJWKClient: cached, refetched once for an unknown `kid` so a rotated
key is picked up, and any failure to get a key refuses the token — fail closed); only EdDSA
(never an algorithm named by the token, so `alg: none` and HS256-signed-with-the-public-key
are refused); explicit typing `typ: impersonation+jwt` (RFC 8725 §3.11); `iss`, `aud`, `exp`,
`nbf` with a small leeway; every claim required; and each `jti` accepted once.
"""
from __future__ import annotations

import inspect
import time
from typing import Any

import jwt

from impersonation_kit.config import KitConfig
from impersonation_kit.replay import JtiStore

TOKEN_TYPE = "impersonation+jwt"
ALGORITHMS = ["EdDSA"]
REQUIRED_CLAIMS = ["iss", "aud", "sub", "act", "sid", "account", "scope", "iat", "nbf", "exp", "jti"]


class LaunchRefused(Exception):
    """The hand-off was refused; the message is safe to log (it never contains the token)."""


class HandoffVerifier:
    def __init__(self, config: KitConfig, jti_store: JtiStore, *, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self._config = config
        self._jti = jti_store
        options: dict[str, Any] = {"cache_keys": True, "lifespan": config.jwks_cache_seconds, "timeout": int(config.http_timeout_seconds) or 1}
        if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:
            options["cooldown_duration"] = config.jwks_refetch_cooldown_seconds
        self._jwks = jwks_client or jwt.PyJWKClient(config.jwks, **options)

    def verify(self, token: str) -> dict[str, Any]:
        if not token or len(token) > 8192:
            raise LaunchRefused("no token, or an oversized one")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise LaunchRefused("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise LaunchRefused(f"algorithm {str(header.get('alg'))[:20]!r} is not allowed")
        if header.get("typ") != TOKEN_TYPE:
            raise LaunchRefused("wrong token type")
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except (jwt.PyJWKClientError, jwt.PyJWTError) as exc:
            # Unknown kid even after a refetch, or the JWKS unreachable: no key, no session.
            raise LaunchRefused(f"no verification key: {type(exc).__name__}") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._config.launch_url,
                issuer=self._config.issuer,
                leeway=self._config.leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise LaunchRefused(f"invalid token: {type(exc).__name__}") from None
        act = claims.get("act")
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str):
            raise LaunchRefused("act.sub (the agent) is required")
        if claims.get("scope") not in ("read_only", "read_write"):
            raise LaunchRefused("unknown scope")
        for name in ("sid", "sub", "account", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise LaunchRefused(f"{name} must be a non-empty string")
        # Checked last, so a forged or expired token never uses up a real jti.
        if not self._jti.add(claims["jti"], int(claims["exp"]) + self._config.leeway_seconds, now=time.time()):
            raise LaunchRefused("token already used (jti replayed)")
        return claims
