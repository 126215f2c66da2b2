"""The framework-neutral kit: what happens to one request. The WSGI and ASGI middlewares and
the reverse proxy are thin adapters around `ImpersonationKit`.

`begin()` answers a request itself (the launch route, the End button, a refused write, an
ended session) or returns the `Active` session it runs in (or None: no impersonation, the
request is the product's alone). The kit's state lives only in its own cookie: it never reads,
sets or clears the product's session cookies, so the customer's and the agent's own product
sessions are untouched.
"""
from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Callable
from urllib.parse import parse_qs

from impersonation_kit import banner as banner_mod
from impersonation_kit import context as context_mod
from impersonation_kit.botapi import BotApi, BotUnavailable, StatusCache
from impersonation_kit.config import UNSAFE_METHODS, KitConfig
from impersonation_kit.context import ImpersonationContext
from impersonation_kit.pages import page
from impersonation_kit.replay import JtiStore, MemoryJtiStore
from impersonation_kit.reporter import ActionReporter
from impersonation_kit.verify import HandoffVerifier, LaunchRefused

log = logging.getLogger("impersonation_kit")
MAX_FORM_BYTES = 16 * 1024
_current_active: contextvars.ContextVar["Active | None"] = contextvars.ContextVar("impersonation_active", default=None)


@dataclass
class KitResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Active:
    context: ImpersonationContext
    csrf_token: str
    banner_rendered: bool = False
    reported: int = 0
    _tokens: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class KitRequest:
    method: str
    path: str
    https: bool
    cookie_header: str | None
    accept: str = ""
    content_type: str = ""
    read_body: Callable[[int], bytes] = lambda limit: b""


class ImpersonationKit:
    def __init__(
        self,
        config: KitConfig,
        *,
        store: JtiStore | None = None,
        reporter: ActionReporter | None = None,
        spool_dir: str | None = None,
        api: BotApi | None = None,
        verifier: HandoffVerifier | None = None,
    ) -> None:
        self.config = config
        self.store = store or MemoryJtiStore()
        self.api = api or BotApi(config)
        self.status = StatusCache(self.api, self.store, ttl=config.status_cache_seconds)
        self.reporter = reporter or ActionReporter(self.api, spool_dir=spool_dir)
        self.verifier = verifier or HandoffVerifier(config, self.store)
        self._cookie_key = hmac.new(config.secret, b"impersonation-kit cookie v1", hashlib.sha256).digest()
        self._csrf_key = hmac.new(config.secret, b"impersonation-kit csrf v1", hashlib.sha256).digest()

    # --- one request ---------------------------------------------------------------------------

    def begin(self, req: KitRequest) -> KitResponse | Active | None:
        method = req.method.upper()
        if req.path == self.config.launch_path:
            if method != "POST":
                return self._page(405, "Method not allowed", "The launch route takes the hand-off by POST.", extra=[("Allow", "POST")])
            return self._launch(req)
        ctx = self._read_cookie(req.cookie_header)
        if req.path == self.config.end_path and method == "POST":
            return self._end(req, ctx)
        if ctx is None:
            return None
        if ctx.expires_at <= time.time():
            return self._ended(req, "The impersonation session has reached its time limit.")
        try:
            status = self.status.status(ctx.session_id)
        except BotUnavailable as exc:
            log.warning("impersonation kit: session %s status unavailable (%s); refusing", ctx.session_id, exc)
            return self._page(503, "Impersonation session cannot be confirmed", "The impersonation service cannot be reached; try again in a moment.", extra=[("Retry-After", "5")])
        if status != "live":
            return self._ended(req, f"The impersonation session is {status if status in ('ended', 'expired', 'revoked') else 'over'}.")
        if method in UNSAFE_METHODS and ctx.read_only and req.path not in self.config.write_allow_list:
            return self._refuse_write(req)
        active = Active(context=ctx, csrf_token=self.csrf_token(ctx.session_id))
        active._tokens = [context_mod.current.set(ctx), _current_active.set(active)]
        return active

    def finish(self, active: Active, method: str, path: str, status: int) -> None:
        """After the product answered: report a successful write, leave the context."""
        try:
            if (
                self.config.auto_report
                and active.reported == 0
                and method.upper() in UNSAFE_METHODS
                and 200 <= status < 400
            ):
                self.reporter.report(active.context.session_id, f"http.{method.lower()}", _clean_target(path), details={"status": status})
        finally:
            for token in reversed(active._tokens):
                try:
                    token.var.reset(token)
                except ValueError:  # finished in another context (a streamed body); nothing to undo
                    pass
            active._tokens = []

    # --- what products call --------------------------------------------------------------------

    def banner_html(self, active: Active, *, nonce: str | None = None) -> str:
        """The banner, for a product rendering it in its own template; the middleware then does
        not inject a second one."""
        active.banner_rendered = True
        return banner_mod.render_banner(active.context, end_path=self.config.end_path, csrf_token=active.csrf_token, nonce=nonce)

    def report_action(self, action: str, target: str, details: dict[str, Any] | None = None) -> str | None:
        """Report one write of the current request (replaces the automatic `http.<method>` one)."""
        active = _current_active.get()
        if active is None:
            return None
        active.reported += 1
        return self.reporter.report(active.context.session_id, action, target, details=details)

    def end_now(self, session_id: str, until: float | None = None) -> None:
        """End a session at once in this product (a `session.ended`/`session.revoked` webhook
        calls this): its next request gets the ended page."""
        self.status.end_now(session_id, until if until is not None else time.time() + 86400)

    def csrf_token(self, session_id: str) -> str:
        return _b64(hmac.digest(self._csrf_key, f"end|{session_id}".encode(), "sha256"))

    def inject_banner(self, active: Active, html: bytes, csp_headers: list[str], charset: str = "utf-8") -> bytes:
        if active.banner_rendered:
            return html
        nonce = banner_mod.csp_nonce(csp_headers)
        markup = banner_mod.render_banner(active.context, end_path=self.config.end_path, csrf_token=active.csrf_token, nonce=nonce)
        return banner_mod.inject(html, markup, charset)

    # --- the kit's routes -------------------------------------------------------------------

    def _launch(self, req: KitRequest) -> KitResponse:
        token = _form_field(req, "token")
        try:
            claims = self.verifier.verify(token or "")
        except LaunchRefused as refused:
            log.warning("impersonation kit: hand-off refused: %s", refused)
            return self._page(403, "Impersonation refused", "This hand-off could not be accepted. Ask for a new link in Slack.")
        ctx = ImpersonationContext.from_claims(claims)
        log.info("impersonation kit: session %s opened for %s in %s by %s", ctx.session_id, ctx.customer_user, ctx.account, ctx.agent)
        return KitResponse(
            303,
            [("Location", self.config.after_launch_path), ("Set-Cookie", self._set_cookie(ctx, req.https)), ("Cache-Control", "no-store")],
            b"",
        )

    def _end(self, req: KitRequest, ctx: ImpersonationContext | None) -> KitResponse:
        if ctx is None:
            return self._page(403, "No impersonation session", "There is no impersonation session to end here.")
        proof = _form_field(req, "csrf") or ""
        if not hmac.compare_digest(proof.encode(), self.csrf_token(ctx.session_id).encode()):
            log.warning("impersonation kit: End refused for session %s: bad CSRF token", ctx.session_id)
            return self._page(403, "Request refused", "The End session form was not sent by this page. Reload and try again.")
        told = self.api.end_session(ctx.session_id)
        self.end_now(ctx.session_id, ctx.expires_at + 60)
        message = "You have ended the impersonation session." if told else (
            "The impersonation session has ended here, but the impersonation service could not be told; it ends there at its time limit."
        )
        return self._page(200, "Impersonation ended", message, extra=[("Set-Cookie", self._clear_cookie(req.https))])

    def _ended(self, req: KitRequest, message: str) -> KitResponse:
        return self._answer(req, 403, "session_ended", "Impersonation ended", message, extra=[("Set-Cookie", self._clear_cookie(req.https))])

    def _refuse_write(self, req: KitRequest) -> KitResponse:
        return self._answer(req, 403, "read_only_session", "Read-only impersonation", "This impersonation session is read-only: changes are not allowed.")

    def _answer(self, req: KitRequest, status: int, code: str, title: str, message: str, extra: list[tuple[str, str]] = ()) -> KitResponse:
        wants_json = "application/json" in req.accept and "text/html" not in req.accept or req.content_type.startswith("application/json")
        if wants_json:
            body = json.dumps({"error": code, "message": message}).encode()
            return KitResponse(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *extra], body)
        return self._page(status, title, message, extra=list(extra))

    def _page(self, status: int, title: str, message: str, *, extra: list[tuple[str, str]] = ()) -> KitResponse:
        nonce = secrets.token_urlsafe(16)
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
            ("X-Content-Type-Options", "nosniff"),
            *extra,
        ]
        return KitResponse(status, headers, page(title, message, nonce=nonce))

    # --- the cookie ----------------------------------------------------------------------------

    def _set_cookie(self, ctx: ImpersonationContext, https: bool) -> str:
        payload = _b64(json.dumps(ctx.as_dict(), separators=(",", ":")).encode())
        value = f"{payload}.{_b64(hmac.digest(self._cookie_key, payload.encode(), 'sha256'))}"
        max_age = max(0, int(ctx.expires_at - time.time()))
        return self._cookie(value, max_age, formatdate(ctx.expires_at, usegmt=True), https)

    def _clear_cookie(self, https: bool) -> str:
        return self._cookie("", 0, "Thu, 01 Jan 1970 00:00:00 GMT", https)

    def _cookie(self, value: str, max_age: int, expires: str, https: bool) -> str:
        # HttpOnly: no page script reads it; SameSite=Lax: no cross-site POST carries it
        # (RFC 6265bis §8.8); Secure over https; its own name, never the product's session.
        secure = "; Secure" if https or self.config.force_secure_cookie else ""
        return f"{self.config.cookie_name}={value}; Path=/; Max-Age={max_age}; Expires={expires}; HttpOnly; SameSite=Lax{secure}"

    def _read_cookie(self, header: str | None) -> ImpersonationContext | None:
        value = cookie_value(header, self.config.cookie_name)
        if not value or "." not in value:
            return None
        payload, mac = value.rsplit(".", 1)
        expected = _b64(hmac.digest(self._cookie_key, payload.encode(), "sha256"))
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        try:
            return ImpersonationContext(**json.loads(_unb64(payload)))
        except (ValueError, TypeError):
            return None


def cookie_value(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def strip_cookie(header: str | None, name: str) -> str | None:
    """The Cookie header without the kit's cookie (what the proxy forwards upstream)."""
    kept = [p.strip() for p in (header or "").split(";") if p.strip() and p.strip().partition("=")[0] != name]
    return "; ".join(kept) or None


def _form_field(req: KitRequest, name: str) -> str | None:
    if not req.content_type.startswith("application/x-www-form-urlencoded"):
        return None
    raw = req.read_body(MAX_FORM_BYTES)
    if len(raw) >= MAX_FORM_BYTES:
        return None
    values = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=20).get(name)
    return values[0] if values and len(values) == 1 else None


def _clean_target(path: str) -> str:
    return "".join(c for c in path if c.isprintable())[:256] or "/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
