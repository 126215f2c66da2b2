"""WSGI middleware (PEP 3333): Flask (`app.wsgi_app = ImpersonationMiddleware(app.wsgi_app,
kit)`), Django (`application = ImpersonationMiddleware(get_wsgi_application(), kit)`) or any
WSGI app. The context is `environ["impersonation.context"]` and `impersonation_kit.get_context()`."""
from __future__ import annotations

import gzip
from typing import Any, Callable, Iterable

from impersonation_kit.context import ENVIRON_KEY
from impersonation_kit.core import Active, ImpersonationKit, KitRequest, KitResponse

ACTIVE_KEY = "impersonation.active"
_REASONS = {200: "OK", 303: "See Other", 403: "Forbidden", 405: "Method Not Allowed", 503: "Service Unavailable"}


def kit_request(environ: dict[str, Any]) -> KitRequest:
    def read_body(limit: int) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        return environ["wsgi.input"].read(min(length, limit)) if length > 0 else b""

    return KitRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", "/") or "/",
        https=environ.get("wsgi.url_scheme") == "https",
        cookie_header=environ.get("HTTP_COOKIE"),
        accept=environ.get("HTTP_ACCEPT", ""),
        content_type=environ.get("CONTENT_TYPE", ""),
        read_body=read_body,
    )


def send(response: KitResponse, start_response: Callable) -> list[bytes]:
    start_response(f"{response.status} {_REASONS.get(response.status, 'Error')}", [*response.headers, ("Content-Length", str(len(response.body)))])
    return [response.body]


def banner_html(environ: dict[str, Any], *, nonce: str | None = None) -> str:
    """Template helper: the banner for a page rendering it itself ("" outside a session)."""
    active: Active | None = environ.get(ACTIVE_KEY)
    kit: ImpersonationKit | None = environ.get("impersonation.kit")
    return kit.banner_html(active, nonce=nonce) if active is not None and kit is not None else ""


class ImpersonationMiddleware:
    def __init__(self, app: Callable, kit: ImpersonationKit) -> None:
        self.app = app
        self.kit = kit

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        outcome = self.kit.begin(kit_request(environ))
        if isinstance(outcome, KitResponse):
            return send(outcome, start_response)
        if outcome is None:
            return self.app(environ, start_response)
        environ[ENVIRON_KEY] = outcome.context
        environ[ACTIVE_KEY] = outcome
        environ["impersonation.kit"] = self.kit
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, headers
            return lambda data: captured.setdefault("early", []).append(data)

        try:
            body_iter = self.app(environ, capture)
            status_code = int(captured["status"].split(" ", 1)[0]) if "status" in captured else 500
            headers = captured.get("headers", [])
            if _is_html(headers) and environ.get("REQUEST_METHOD") != "HEAD":  # HEAD has no body to carry it
                try:
                    html = b"".join([*captured.get("early", []), *body_iter])
                finally:
                    getattr(body_iter, "close", lambda: None)()
                html, headers = self._with_banner(outcome, html, headers)
                start_response(captured["status"], headers)
                return [html]
            start_response(captured["status"], headers)
            early = captured.get("early", [])
            return [*early, *body_iter] if early else body_iter
        finally:
            self.kit.finish(outcome, environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"), status_code if "status" in captured else 500)

    def _with_banner(self, active: Active, html: bytes, headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
        encoding = _header(headers, "content-encoding")
        if encoding and encoding.lower() == "gzip":
            html = gzip.decompress(html)
        elif encoding and encoding.lower() != "identity":
            return html, headers  # an encoding we cannot rewrite: left as it is
        csp = [v for k, v in headers if k.lower() == "content-security-policy"]
        html = self.kit.inject_banner(active, html, csp, _charset(headers))
        kept = [(k, v) for k, v in headers if k.lower() not in ("content-length", "content-encoding", "etag")]
        # A page carrying who is impersonating whom is never cached or shared.
        kept = [(k, v) for k, v in kept if k.lower() != "cache-control"] + [("Cache-Control", "no-store"), ("Content-Length", str(len(html)))]
        return html, kept


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _is_html(headers: list[tuple[str, str]]) -> bool:
    content_type = (_header(headers, "content-type") or "").lower()
    return content_type.startswith("text/html") or content_type.startswith("application/xhtml+xml")


def _charset(headers: list[tuple[str, str]]) -> str:
    content_type = _header(headers, "content-type") or ""
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"
