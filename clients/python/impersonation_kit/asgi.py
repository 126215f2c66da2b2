"""ASGI middleware (Starlette, FastAPI, any ASGI 3 app): `app.add_middleware(
ImpersonationASGIMiddleware, kit=kit)` or wrap the app. The context is
`scope["state"]["impersonation_context"]` (Starlette's `request.state.impersonation_context`),
`scope["impersonation.context"]` and `impersonation_kit.get_context()`.

The kit's own decisions (status cache hit, cookie) are CPU-only; a status refresh or the
launch's JWKS fetch is blocking I/O, so `begin` runs in a worker thread (`asyncio.to_thread`)
and never stalls the event loop."""
from __future__ import annotations

import asyncio
import gzip
from typing import Any, Awaitable, Callable

from impersonation_kit.context import ENVIRON_KEY
from impersonation_kit.core import Active, ImpersonationKit, KitRequest, KitResponse, MAX_FORM_BYTES
from impersonation_kit.context import current as current_context
from impersonation_kit.core import _current_active

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ImpersonationASGIMiddleware:
    def __init__(self, app: Callable, kit: ImpersonationKit) -> None:
        self.app = app
        self.kit = kit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        body = b""
        method = scope["method"].upper()
        if method == "POST" and scope["path"] in (self.kit.config.launch_path, self.kit.config.end_path):
            body = await _read_body(receive, MAX_FORM_BYTES)
        request = KitRequest(
            method=method,
            path=scope["path"],
            https=scope.get("scheme") == "https",
            cookie_header=headers.get("cookie"),
            accept=headers.get("accept", ""),
            content_type=headers.get("content-type", ""),
            read_body=lambda limit: body[:limit],
        )
        outcome = await asyncio.to_thread(self._begin_detached, request)
        if isinstance(outcome, KitResponse):
            await _send_response(send, outcome)
            return
        if outcome is None:
            await self.app(scope, receive, send)
            return
        # begin() ran in another thread's context: enter the session's context here.
        tokens = [current_context.set(outcome.context), _current_active.set(outcome)]
        scope[ENVIRON_KEY] = outcome.context
        scope["impersonation.active"] = outcome
        scope.setdefault("state", {})["impersonation_context"] = outcome.context
        status_holder = {"status": 500}
        try:
            await self.app(scope, receive, self._sender(send, outcome, status_holder, method))
        finally:
            outcome._tokens = tokens
            self.kit.finish(outcome, method, scope["path"], status_holder["status"])

    def _begin_detached(self, request: KitRequest) -> KitResponse | Active | None:
        outcome = self.kit.begin(request)
        if isinstance(outcome, Active):
            for token in outcome._tokens:  # set in the worker thread's context copy; drop them
                token.var.reset(token)
            outcome._tokens = []
        return outcome

    def _sender(self, send: Send, active: Active, holder: dict[str, int], method: str) -> Send:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                holder["status"] = message["status"]
                headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message.get("headers", [])]
                ctype = next((v for k, v in headers if k == "content-type"), "").lower()
                if ctype.startswith("text/html") and method != "HEAD":  # HEAD has no body to carry it
                    start.update(message=message, headers=headers)
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and start:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                await _send_html(send, self.kit, active, start, b"".join(chunks))
                return
            await send(message)

        return wrapped


async def _send_html(send: Send, kit: ImpersonationKit, active: Active, start: dict[str, Any], html: bytes) -> None:
    headers = start["headers"]
    encoding = next((v for k, v in headers if k == "content-encoding"), "identity").lower()
    if encoding == "gzip":
        html = gzip.decompress(html)
    if encoding in ("gzip", "identity"):
        csp = [v for k, v in headers if k == "content-security-policy"]
        charset = "utf-8"
        html = kit.inject_banner(active, html, csp, charset)
        headers = [(k, v) for k, v in headers if k not in ("content-length", "content-encoding", "etag", "cache-control")]
        headers += [("cache-control", "no-store"), ("content-length", str(len(html)))]
    await send({"type": "http.response.start", "status": start["message"]["status"], "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
    await send({"type": "http.response.body", "body": html})


async def _read_body(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            parts.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(parts) if size <= limit else b"x" * limit


async def _send_response(send: Send, response: KitResponse) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
