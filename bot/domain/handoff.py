"""The signed hand-off to the SaaS product (DESIGN.md "The hand-off", step 4).

EdDSA (Ed25519) JWT, header `typ: impersonation+jwt` and `kid`; claims `iss`, `aud`, `sub`
(customer user), `act.sub` (the agent, RFC 8693 §4.1), `sid`, `account`, `scope`, `iat`,
`nbf`, `exp` (the session's end), `jti`; and, for the banner the product must show, the
display claims `account_name`, `name` (the customer user's display name, as OpenID Connect
Core §5.1 names it), `reason` and `ticket` (absent when the request had none).
`verify_handoff` is what a product should do, and
what our tests use: an algorithm allow-list of exactly EdDSA (so `alg: none` and HS256 signed
with the public key — the classic key-confusion attack — are refused), required claims, and
strict `aud`, `iss` and `exp`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from bot.domain.keys import SigningKey

TOKEN_TYPE = "impersonation+jwt"
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "act", "sid", "account", "scope", "iat", "nbf", "exp", "jti")


class HandoffRefused(Exception):
    pass


@dataclass(frozen=True)
class HandoffClaims:
    issuer: str
    audience: str
    customer_user: str
    agent: str
    session_id: str
    account: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    jti: str
    account_name: str | None = None
    customer_user_name: str | None = None
    reason: str | None = None
    ticket: str | None = None


def mint_handoff(key: SigningKey, claims: HandoffClaims) -> str:
    payload = {
        "iss": claims.issuer,
        "aud": claims.audience,
        "sub": claims.customer_user,
        "act": {"sub": claims.agent},
        "sid": claims.session_id,
        "account": claims.account,
        "scope": claims.scope,
        "iat": int(claims.issued_at.timestamp()),
        "nbf": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "jti": claims.jti,
    }
    display = {"account_name": claims.account_name, "name": claims.customer_user_name, "reason": claims.reason, "ticket": claims.ticket}
    payload.update({claim: value for claim, value in display.items() if value is not None})
    return jwt.encode(
        payload, key.private_key, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE, "kid": key.kid}
    )


def verify_handoff(token: str, jwks: dict[str, Any], *, issuer: str, audience: str) -> dict[str, Any]:
    """Verify a hand-off token against a JWKS document. Raises HandoffRefused."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise HandoffRefused(f"malformed token: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise HandoffRefused(f"algorithm {header.get('alg')!r} is not allowed")
    if header.get("typ") != TOKEN_TYPE:
        raise HandoffRefused("wrong token type")
    matching = [k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")]
    if len(matching) != 1:
        raise HandoffRefused("unknown key id")
    public_key = jwt.PyJWK(matching[0], algorithm=ALGORITHM)
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
        )
    except jwt.PyJWTError as exc:
        raise HandoffRefused(str(exc)) from None
    act = claims.get("act")
    if not isinstance(act, dict) or not isinstance(act.get("sub"), str):
        raise HandoffRefused("act.sub (the agent) is required")
    if claims.get("scope") not in ("read_only", "read_write"):
        raise HandoffRefused("unknown scope")
    return claims
