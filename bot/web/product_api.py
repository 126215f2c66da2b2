"""The product API (DESIGN.md "The hand-off to the SaaS product", step 6; docs/product-api.md).

`GET /api/v1/sessions/{sid}` answers whether a session is still live; `POST
/api/v1/sessions/{sid}/actions` records a write action the product did in it. Every request
carries a product's key as `Authorization: Bearer <key>` (RFC 6750 §2.1); the domain checks
it, decides and audits, this face only reads the request and renders JSON. Errors are JSON
too, `{"error": code, "message": text}`, and never echo the key or the body back.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.domain import product_api
from bot.domain.audit import format_time
from bot.domain.context import DomainContext
from bot.domain.links import ClientInfo
from bot.domain.ports import Deliverer
from bot.domain.product_api import (
    MAX_ACTION_BYTES,
    NO_SUCH_SESSION,
    ActionProblem,
    ActionRefused,
    ActionUpload,
    ApiPrincipal,
    AuthProblem,
    AuthRefused,
    SessionReport,
)
from bot.domain.refusals import RefusalAuditor
from bot.web.background import deliver_after

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
REALM = "impersonation-bot"

#: RFC 9110 §15.5: 413 Content Too Large, 415 Unsupported Media Type, 409 Conflict for an
#: action the session's state (its start and end) rules out
ACTION_STATUS: dict[ActionProblem, int] = {
    ActionProblem.TOO_LARGE: 413,
    ActionProblem.UNSUPPORTED_MEDIA_TYPE: 415,
    ActionProblem.INVALID_JSON: 400,
    ActionProblem.INVALID_BODY: 400,
    ActionProblem.UNKNOWN_SESSION: 404,
    ActionProblem.BEFORE_SESSION: 409,
    ActionProblem.AFTER_SESSION: 409,
    ActionProblem.IN_FUTURE: 409,
    # Another product's session is answered as if it did not exist: one product learns
    # nothing about another's sessions (the audit event keeps the real cause).
    ActionProblem.WRONG_PRODUCT: 404,
    ActionProblem.UNBOUND_SESSION: 404,
}
#: the `error` code a refusal is answered with, where it is not the cause itself
ACTION_ERROR: dict[ActionProblem, ActionProblem] = {
    ActionProblem.WRONG_PRODUCT: ActionProblem.UNKNOWN_SESSION,
    ActionProblem.UNBOUND_SESSION: ActionProblem.UNKNOWN_SESSION,
}


def api_error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


def api_http_error(error: HTTPException) -> Response:
    """The app's error handler for paths under /api/: JSON, not the HTML error page."""
    code = (error.name or "error").lower().replace(" ", "_")
    response = api_error(error.code or 500, code, error.name or "Error")
    for name, value in error.get_headers():
        if name.lower() != "content-type":  # e.g. `Allow` on a 405
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


def auth_refused_response(refused: AuthRefused) -> Response:
    response = api_error(401, refused.code, refused.message)
    # RFC 6750 §3: a request without credentials gets the bare challenge; a bad or revoked
    # key gets error="invalid_token" (§3.1).
    challenge = f'Bearer realm="{REALM}"'
    if refused.problem is not AuthProblem.MISSING:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def session_document(report: SessionReport) -> dict[str, Any]:
    return {
        "session_id": report.session_id,
        "status": report.status.value,
        "account": report.account,
        "customer_user": report.customer_user,
        "scope": report.scope,
        "started_at": format_time(report.started_at),
        "ends_at": format_time(report.ends_at),
        "ended_at": format_time(report.ended_at) if report.ended_at else None,
    }


def _session_answer(report: SessionReport | None) -> Response:
    """A session's document, or the 404 that no such session and another product's share."""
    if report is None:
        return api_error(404, ActionProblem.UNKNOWN_SESSION.value, NO_SUCH_SESSION)
    return jsonify(session_document(report))


def _client() -> ClientInfo:
    return ClientInfo(ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))


def _read_upload() -> ActionUpload:
    """At most MAX_ACTION_BYTES + 1 bytes, and nothing at all when the declared length is
    already too much: a large body is refused without being read."""
    declared = request.content_length
    too_large = declared is not None and declared > MAX_ACTION_BYTES
    body = b"" if too_large else request.stream.read(MAX_ACTION_BYTES + 1)
    return ActionUpload(
        content_type=request.headers.get("Content-Type"),
        body=body,
        declared_length=declared,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )


def product_api_blueprint(ctx: DomainContext, *, refusals: RefusalAuditor, deliverer: Deliverer | None = None) -> Blueprint:
    api = Blueprint("product_api", __name__, url_prefix="/api/v1")

    @api.before_request
    def _authenticate() -> Response | None:
        outcome = product_api.authenticate(
            ctx,
            request.headers.get("Authorization"),
            endpoint=request.endpoint or "",
            refusals=refusals,
            client=_client(),
        )
        if isinstance(outcome, AuthRefused):
            return auth_refused_response(outcome)
        g.api_principal = outcome
        return None

    @api.after_request
    def _no_store(response: Response) -> Response:
        # Session status changes at any moment; no cache may answer for us (RFC 9111 §5.2.2.5).
        response.headers["Cache-Control"] = "no-store"
        return response

    @api.get("/sessions/<sid>")
    def session_status(sid: str) -> Response:
        return _session_answer(product_api.session_report_for(ctx, g.api_principal, sid, refusals=refusals, client=_client()))

    @api.post("/sessions/<sid>/end")
    def end_session(sid: str) -> Response:
        # The body is not read: the path names the session and the key names the product.
        ended = product_api.end_session_for(ctx, g.api_principal, sid, refusals=refusals, client=_client())
        # the agent's DM, any expiry warning and the feed say it is over: sent after the answer
        return deliver_after(_session_answer(ended.report), deliverer, ended.targets)

    @api.post("/sessions/<sid>/actions")
    def record_action(sid: str) -> Response:
        principal: ApiPrincipal = g.api_principal
        outcome = product_api.record_action(ctx, principal, sid, _read_upload(), client=_client())
        if isinstance(outcome, ActionRefused):
            log.info("product API: action refused (%s) for product %s", outcome.problem.value, principal.product)
            code = ACTION_ERROR.get(outcome.problem, outcome.problem).value
            return api_error(ACTION_STATUS[outcome.problem], code, outcome.message)
        response = jsonify(
            {"seq": outcome.seq, "session_id": outcome.session_id, "recorded_at": format_time(outcome.recorded_at)}
        )
        # A replayed Idempotency-Key gets the first answer again, as 200: nothing new was created.
        response.status_code = 200 if outcome.replayed else 201
        return response

    return api
