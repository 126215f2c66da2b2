"""The HTTP face (DESIGN.md "Layers", web/): Slack's request endpoint, the link pages, the
public keys for the hand-off, and a health check."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy import text
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from bot.db.engine import reading
from bot.domain import keyring
from bot.domain.context import DomainContext
from bot.domain.ports import Deliverer
from bot.domain.refusals import RefusalAuditor
from bot.web.landing import landing_blueprint
from bot.web.logging import install_log_redaction, redact
from bot.web.metrics import install_metrics
from bot.web.product_api import API_PREFIX, api_http_error, product_api_blueprint
from bot.web.security import (
    LinkCsrf,
    apply_baseline_headers,
    apply_link_headers,
    content_security_policy,
    new_csp_nonce,
    origin_of,
)
from bot.web.slack_sign_in import SlackSignIn

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LINK_PREFIX = "/l/"
#: where the app keeps its RefusalAuditor (app.extensions)
REFUSALS_EXTENSION = "impersonation_bot.refusals"
JWKS_MAX_AGE_SECONDS = 300  # short, so a rotated key is picked up quickly
#: Slack's largest payloads (view submissions) are far below this; anything bigger is refused
#: before it is parsed (werkzeug answers 413).
MAX_REQUEST_BYTES = 1024 * 1024
#: X-Slack-Request-Timestamp: Unix seconds (Slack "Verifying requests from Slack")
_SLACK_TIMESTAMP = re.compile(r"[0-9]{1,12}")


#: peers whose X-Forwarded-For is believed: the front door on the same host (deploy/nginx),
#: which overwrites the header with the address it saw (gunicorn trusts X-Forwarded-Proto
#: from the same addresses by default, `forwarded_allow_ips`)
TRUSTED_PROXIES = frozenset({"127.0.0.1", "::1"})


class ForwardedFor:
    """WSGI middleware: behind the front door the socket's peer is the proxy, so REMOTE_ADDR
    becomes the one address the proxy put in X-Forwarded-For (werkzeug's ProxyFix, one hop)
    — but only when the peer is a trusted proxy; anyone else's header is ignored. The audit
    log's `ip` and the refusal throttle's per-client bound depend on it."""

    def __init__(self, app: Any, trusted: frozenset[str] = TRUSTED_PROXIES) -> None:
        self.app, self.trusted = app, trusted
        self.fixed = ProxyFix(app, x_for=1, x_proto=0, x_host=0, x_port=0, x_prefix=0)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REMOTE_ADDR") in self.trusted and environ.get("HTTP_X_FORWARDED_FOR"):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


class _RedactingFlask(Flask):
    def log_exception(self, exc_info: Any) -> None:
        # Flask's own line is f"Exception on {request.path} …", which would log a link token.
        self.logger.error("Exception on %s [%s]", redact(request.path), request.method, exc_info=exc_info)


def create_web_app(
    ctx: DomainContext,
    *,
    slack_app: Any = None,
    deliverer: Deliverer | None = None,
    csrf_secret: bytes,
    sign_in: SlackSignIn | None = None,
    metrics_token: str | None = None,
) -> Flask:
    """`slack_app` is a slack_bolt.App (HTTP mode); without it /slack/events is a 404.
    `deliverer`: what the pages' changes owed is handed to after the response (a redemption's
    DM edit, a session ended through the product API); None: the scheduler's outbox job sends it.
    `csrf_secret`: at least 32 random bytes, the same for every worker and host.
    `sign_in`: Sign in with Slack, for the policy's `links.require_slack_sign_in`.
    `metrics_token`: the bearer token `/metrics` asks for (METRICS_TOKEN); None: no /metrics."""
    app = _RedactingFlask(__name__, template_folder=str(TEMPLATES), static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.wsgi_app = ForwardedFor(app.wsgi_app)  # type: ignore[method-assign]
    # The loggers that print request paths; the process's own handlers are wiring's to cover.
    install_log_redaction([app.logger], root_handlers=False)
    install_metrics(app, ctx, token=metrics_token)

    csrf = LinkCsrf.for_base_url(csrf_secret, ctx.public_base_url)
    form_action: tuple[str, ...] = ("'self'", origin_of(ctx.product_launch_url)) if ctx.product_launch_url else ("'self'",)
    if sign_in is not None:  # the confirmation's POST is answered by a redirect to Slack
        form_action += (sign_in.origin,)
    # One throttle for every refusal an unauthenticated caller can cause (bot/domain/refusals.py);
    # Container.close() writes what it left out in the current window.
    refusals = RefusalAuditor(ctx)
    app.extensions[REFUSALS_EXTENSION] = refusals
    app.register_blueprint(landing_blueprint(ctx, csrf=csrf, deliverer=deliverer, refusals=refusals, sign_in=sign_in))
    app.register_blueprint(product_api_blueprint(ctx, refusals=refusals, deliverer=deliverer))

    @app.context_processor
    def _csp_nonce() -> dict[str, str]:
        return {"csp_nonce": _nonce()}

    @app.after_request
    def _security_headers(response: Response) -> Response:
        apply_baseline_headers(response)
        if request.path.startswith(LINK_PREFIX):
            apply_link_headers(response, nonce=_nonce(), form_action=form_action)
        elif response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = content_security_policy(_nonce(), form_action=())
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if request.path.startswith(API_PREFIX):  # the product API answers in JSON
            return api_http_error(error)
        # Our own page: never echoes the URL, form or headers back.
        return make_response(render_template("error.html", code=error.code, name=error.name), error.code or 500)

    @app.get("/.well-known/jwks.json")
    def jwks() -> Response:
        # this process's key and any other the keyring still publishes (a rotation's new key
        # before this process restarts onto it; a retired key until its tokens have expired)
        with reading(ctx.sessions) as db:
            response = jsonify({"keys": keyring.published_jwks(db, ctx.signing_key)})
        response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
        return response

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            with reading(ctx.sessions) as db:
                db.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any database failure means unhealthy
            log.exception("health check: database unreachable")
            response = jsonify({"ok": False})
            response.status_code = 503
        else:
            response = jsonify({"ok": True})
        response.headers["Cache-Control"] = "no-store"
        return response

    if slack_app is not None:
        slack_handler = SlackRequestHandler(slack_app)

        # Slash commands, interactivity and options loads all post here (manifest.yaml);
        # Bolt verifies Slack's signature before any listener runs.
        @app.post("/slack/events")
        def slack_events() -> Response:
            # Slack's timestamp is Unix seconds; anything else is refused here as Bolt refuses
            # a bad signature (its check would raise on int() and answer 500).
            if not _SLACK_TIMESTAMP.fullmatch(request.headers.get("X-Slack-Request-Timestamp", "")):
                log.info("slack request refused (401): malformed timestamp header")
                return make_response(jsonify({"error": "invalid request"}), 401)
            response = slack_handler.handle(request)
            if response.status_code == 401:
                log.info("slack request refused (401): invalid or stale signature (body not logged)")
            return response

    return app


def _nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = new_csp_nonce()
    return g.csp_nonce
