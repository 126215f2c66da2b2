"""Reverse-proxy mode, for a product that cannot take middleware (as Teleport's application
access fronts an app): the kit runs in front of the product and does everything the
middleware does — the launch route, its own cookie, the banner, scope, reporting writes,
ending — and forwards every other request unchanged except for:

- `X-Impersonation-Context` (a JSON object: session_id, agent, account, customer_user, scope)
  added during a session. Any copy the browser sends is always removed first, so the product
  can trust the header exactly as far as it trusts that it is reachable only through the proxy.
- the kit's cookie, removed from `Cookie` (the product never sees it; its own cookies pass).
- hop-by-hop headers (RFC 9110 §7.6.1) dropped both ways; `X-Forwarded-For/-Proto/-Host` added.

    impersonation-kit-proxy --upstream http://127.0.0.1:8000 --listen 127.0.0.1:8080 \\
        --bot-url https://impersonation.example.com --launch-url https://app.example.com/impersonation/launch
    # with IMPERSONATION_KIT_API_KEY and IMPERSONATION_KIT_SECRET (hex, 32+ bytes) in the environment
"""
from __future__ import annotations

import argparse
import http.client
import os
import sys
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from impersonation_kit.config import KitConfig
from impersonation_kit.context import ENVIRON_KEY
from impersonation_kit.core import ImpersonationKit, strip_cookie
from impersonation_kit.replay import SqliteJtiStore
from impersonation_kit.wsgi import ImpersonationMiddleware

CONTEXT_HEADER = "X-Impersonation-Context"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"}
_REASONS = http.client.responses


class ForwardingApp:
    """A WSGI app that forwards each request to `upstream` (http://host:port)."""

    def __init__(self, upstream: str, *, cookie_name: str, timeout: float = 60.0) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.cookie_name = cookie_name
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in HOP_BY_HOP and name.lower() != CONTEXT_HEADER.lower():
                    headers[name] = value
        for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
            if environ.get(key):
                headers[name] = environ[key]
        cookie = strip_cookie(environ.get("HTTP_COOKIE"), self.cookie_name)
        headers.pop("Cookie", None)
        if cookie:
            headers["Cookie"] = cookie
        ctx = environ.get(ENVIRON_KEY)
        if ctx is not None:
            headers[CONTEXT_HEADER] = ctx.header_value()
        client = environ.get("REMOTE_ADDR", "")
        headers["X-Forwarded-For"] = f"{headers['X-Forwarded-For']}, {client}" if "X-Forwarded-For" in headers else client
        headers["X-Forwarded-Proto"] = environ.get("wsgi.url_scheme", "http")
        headers["X-Forwarded-Host"] = environ.get("HTTP_HOST", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else None
        path = self.prefix + (environ.get("PATH_INFO") or "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
            out.append(("Content-Length", str(len(data))))
            start_response(f"{response.status} {_REASONS.get(response.status, 'Unknown')}", out)
            return [data]
        except OSError:
            start_response("502 Bad Gateway", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"The product is unreachable."]
        finally:
            connection.close()


def build_proxy(kit: ImpersonationKit, upstream: str) -> ImpersonationMiddleware:
    """The proxy as a WSGI app: the kit's middleware around the forwarder."""
    return ImpersonationMiddleware(ForwardingApp(upstream, cookie_name=kit.config.cookie_name), kit)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:  # the path only, no query (it may carry secrets)
        sys.stderr.write(f"{self.command} {urlsplit(self.path).path} {code}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="impersonation-kit-proxy", description="Run the impersonation kit as a reverse proxy in front of a product.")
    parser.add_argument("--upstream", required=True, help="the product, e.g. http://127.0.0.1:8000")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="host:port to listen on")
    parser.add_argument("--bot-url", required=True, help="impersonation-bot's PUBLIC_BASE_URL (the JWT's iss)")
    parser.add_argument("--launch-url", required=True, help="the bot's PRODUCT_LAUNCH_URL (the JWT's aud), served by this proxy")
    parser.add_argument("--jwks-url", help="default: BOT_URL/.well-known/jwks.json")
    parser.add_argument("--api-url", help="where the bot's product API is reached from here, if not at BOT_URL (or IMPERSONATION_KIT_API_URL)")
    parser.add_argument("--spool-dir", default="impersonation_spool", help="where reports wait while the bot is unreachable")
    parser.add_argument("--jti-db", default="impersonation_kit.db", help="SQLite file of used jtis and ended sessions")
    args = parser.parse_args(argv)
    api_key, secret = os.environ.get("IMPERSONATION_KIT_API_KEY"), os.environ.get("IMPERSONATION_KIT_SECRET")
    if not api_key or not secret:
        sys.exit("Set IMPERSONATION_KIT_API_KEY (the product API key) and IMPERSONATION_KIT_SECRET (hex, 32+ bytes).")
    config = KitConfig(
        bot_url=args.bot_url,
        launch_url=args.launch_url,
        api_key=api_key,
        secret=bytes.fromhex(secret),
        jwks_url=args.jwks_url,
        api_url=args.api_url or os.environ.get("IMPERSONATION_KIT_API_URL"),
    )
    kit = ImpersonationKit(config, store=SqliteJtiStore(args.jti_db), spool_dir=args.spool_dir)
    kit.reporter.start()
    host, _, port = args.listen.rpartition(":")
    server = make_server(host or "127.0.0.1", int(port), build_proxy(kit, args.upstream), server_class=_ThreadingServer, handler_class=_QuietHandler)
    print(f"impersonation-kit proxy on http://{args.listen} → {args.upstream}", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        kit.reporter.close()


if __name__ == "__main__":
    main()
