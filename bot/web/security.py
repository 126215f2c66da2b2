"""CSRF protection and security headers for the link pages.

CSRF: the OWASP CSRF Prevention Cheat Sheet's *signed double-submit cookie*. The GET page
sets a random nonce in a cookie the page's scripts cannot read (HttpOnly, SameSite=Strict)
and puts HMAC(secret, nonce, SHA-256(link token)) in the form; the POST must bring both and
they must match. A cross-site page can neither read the cookie nor compute the HMAC without
the server's secret, and the proof is bound to one link, so a proof for one link says nothing
about another. Two browser signals are checked as defence in depth (cheat sheet, "Verifying
Origin With Standard Headers" and "Fetch Metadata"): a present `Origin` must be ours, and a
present `Sec-Fetch-Site` must say the POST came from our own page.

The cookie: on HTTPS it is `__Host-` prefixed, which forces Secure, no Domain and `Path=/`
(RFC 6265bis §4.1.3.2; browsers drop a `__Host-` cookie with any other Path), so a sibling
sub-domain cannot plant or overwrite it. Over plain HTTP (development) the prefix is not
allowed, so the cookie is unprefixed and scoped to `Path=/l/`.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Response

from bot.domain.links import hash_token

CSRF_FIELD = "csrf"
NONCE_BYTES = 32
CSRF_COOKIE_MAX_AGE_SECONDS = 30 * 60  # outlives the longest link window (10 min)
MIN_SECRET_BYTES = 32  # HMAC-SHA-256 key as long as its output (RFC 2104 §3)
_NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of 32 bytes, no padding
_HMAC_LABEL = b"impersonation-bot/link-csrf/v1"


class CsrfFailure(str, enum.Enum):
    """Why a POST was refused; recorded in the audit event (`cause`)."""

    MISSING_COOKIE = "missing_cookie"
    MISSING_PROOF = "missing_proof"
    BAD_PROOF = "bad_proof"
    CROSS_ORIGIN = "cross_origin"
    CROSS_SITE_FETCH = "cross_site_fetch"


def origin_of(url: str) -> str:
    """RFC 6454 §6.2 ASCII serialisation: scheme://host[:port], default ports dropped."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        raise ValueError("not an absolute URL")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}.get(scheme)
    port = parts.port
    return f"{scheme}://{host}" if port in (None, default_port) else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class LinkCsrf:
    secret: bytes
    public_origin: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"csrf_secret must be at least {MIN_SECRET_BYTES} bytes")

    @classmethod
    def for_base_url(cls, secret: bytes, public_base_url: str) -> LinkCsrf:
        return cls(secret=secret, public_origin=origin_of(public_base_url))

    @property
    def secure(self) -> bool:
        return self.public_origin.startswith("https://")

    @property
    def cookie_name(self) -> str:
        return "__Host-link_csrf" if self.secure else "link_csrf"

    @property
    def cookie_path(self) -> str:
        return "/" if self.secure else "/l/"

    def nonce(self, current_cookie: str | None) -> str:
        """Keep a well-formed nonce the browser already has, so two link tabs opened one
        after the other both stay valid (each proof is bound to its own link anyway)."""
        if current_cookie and _NONCE_PATTERN.fullmatch(current_cookie):
            return current_cookie
        return secrets.token_urlsafe(NONCE_BYTES)

    def proof(self, nonce: str, token: str) -> str:
        message = b"\x00".join((_HMAC_LABEL, nonce.encode("ascii"), hash_token(token).encode("ascii")))
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def set_cookie(self, response: Response, nonce: str) -> None:
        response.set_cookie(
            self.cookie_name,
            nonce,
            max_age=CSRF_COOKIE_MAX_AGE_SECONDS,
            path=self.cookie_path,
            secure=self.secure,
            httponly=True,
            samesite="Strict",
        )

    def check(
        self,
        token: str,
        *,
        cookie: str | None,
        submitted: str | None,
        origin: str | None,
        fetch_site: str | None,
    ) -> CsrfFailure | None:
        """None when the POST is ours; otherwise why not."""
        # Under `Referrer-Policy: no-referrer` browsers send `Origin: null` on a same-origin
        # form POST (Fetch standard, "append a request `Origin` header"), so "null" is treated
        # like an absent header; the HMAC proof is the control that must always hold.
        if origin is not None and origin != "null" and origin != self.public_origin:
            return CsrfFailure.CROSS_ORIGIN
        # Fetch Metadata (W3C): "same-origin" is our own form, "none" a user-initiated
        # navigation; "same-site" and "cross-site" are other pages' requests.
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return CsrfFailure.CROSS_SITE_FETCH
        if not cookie or not _NONCE_PATTERN.fullmatch(cookie):
            return CsrfFailure.MISSING_COOKIE
        if not submitted:
            return CsrfFailure.MISSING_PROOF
        if not hmac.compare_digest(self.proof(cookie, token), submitted):
            return CsrfFailure.BAD_PROOF
        return None


def new_csp_nonce() -> str:
    return secrets.token_urlsafe(16)


def content_security_policy(nonce: str, *, form_action: tuple[str, ...]) -> str:
    """Nothing loads but our own nonce'd inline style and script; forms go only where listed;
    no page may frame us (clickjacking a "redeem" button)."""
    targets = " ".join(form_action) if form_action else "'none'"
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; "
        f"form-action {targets}; "
        "frame-ancestors 'none'; "
        "base-uri 'none'"
    )


def apply_baseline_headers(response: Response) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")


def apply_link_headers(response: Response, *, nonce: str, form_action: tuple[str, ...]) -> None:
    """Every /l/ response: never cached (it may hold a bearer JWT), never sends the link URL
    on as a Referer, never framed, sniffed or indexed."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Content-Security-Policy"] = content_security_policy(nonce, form_action=form_action)
