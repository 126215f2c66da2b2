"""The one-time link's pages (DESIGN.md "The hand-off", steps 2–4).

`GET /l/<token>` (and HEAD) only describes the link: Slack's unfurler
(`Slackbot-LinkExpanding`) and browser prefetchers fetch links too, so a GET must never
redeem. `POST /l/<token>` checks the CSRF proof, then makes the one domain call that redeems
(one conditional UPDATE, bot/domain/links.py). The winner's page hands the signed JWT to the
product by auto-submitting a form (a body parameter, never a URL parameter: URLs end up in
history, logs and Referer headers).
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Response, abort, make_response, redirect, render_template, request

from bot.domain import links
from bot.domain.context import DomainContext
from bot.domain.links import ClientInfo, LinkProblem, Redemption
from bot.domain.policy import RedeemRefusal
from bot.domain.ports import Deliverer
from bot.domain.refusals import RefusalAuditor
from bot.domain.views import RequestView
from bot.web.background import deliver_after
from bot.web.security import CSRF_FIELD, CsrfFailure, LinkCsrf
from bot.web.slack_sign_in import CALLBACK_PATH, ProviderConfigError, SignInError, SignInFailure, SlackSignIn

log = logging.getLogger(__name__)

#: (HTTP status, headline, explanation) for each refusal. 410 Gone: the link existed and is
#: over for good; 409 Conflict: it exists but its state forbids this (RFC 9110 §15.5).
PROBLEM_PAGES: dict[LinkProblem, tuple[int, str, str]] = {
    LinkProblem.UNKNOWN: (
        404,
        "This link is not valid",
        "It may have been copied incompletely. Nothing was opened. "
        "Ask for a new session with /impersonate in Slack.",
    ),
    LinkProblem.ALREADY_USED: (
        409,
        "This link has already been used",
        "Each link opens one session, once. Nothing new was opened. "
        "If you did not open this session yourself, tell your security team now.",
    ),
    LinkProblem.EXPIRED: (
        410,
        "This link has expired",
        "Links must be used within a few minutes of being granted. Nothing was opened. "
        "Ask for a new session with /impersonate in Slack.",
    ),
    LinkProblem.NOT_GRANTED: (
        409,
        "This link can no longer be used",
        "The request behind it is no longer granted (it may have been revoked). Nothing was opened.",
    ),
    LinkProblem.POLICY_CHANGED: (
        409,
        "This link can no longer be used",
        "Something the grant relied on has changed since it was given. Nothing was opened.",
    ),
    LinkProblem.IDENTITY_MISMATCH: (
        403,
        "This link belongs to someone else",
        "You signed in with Slack as a different person from the agent who asked for this session. "
        "Nothing was opened, and the attempt was recorded.",
    ),
}
#: what changed, said to the agent under the POLICY_CHANGED headline, with what they can do
POLICY_CHANGED_EXPLANATIONS: dict[RedeemRefusal, str] = {
    RedeemRefusal.OPTED_OUT: "The account has since opted out of impersonation by contract. No one can open a session on it.",
    RedeemRefusal.NO_ROLE: "You no longer hold a role that can impersonate. Nothing was opened; ask your manager about your role.",
    RedeemRefusal.NOT_ASSIGNED: "The account is no longer assigned to you, and your role only covers assigned accounts. Nothing was opened.",
    RedeemRefusal.SCOPE_NOT_ALLOWED: "Your role no longer allows read-write sessions. Nothing was opened; ask again for a read-only session.",
    RedeemRefusal.DURATION_OVER_CAP: "Your role no longer allows a session this long. Nothing was opened; ask again for a shorter one.",
    RedeemRefusal.NEWLY_GATED: "The account now needs an approval this grant did not have. Nothing was opened; ask again with /impersonate.",
}
CSRF_PAGE = (
    403,
    "This confirmation could not be verified",
    "Open the link from your Slack message again and press the button on that page. Nothing was opened.",
)
SIGN_IN_PAGE = (
    403,
    "Sign in with Slack could not be verified",
    "Open the link from your Slack message again, press the button on that page and sign in with "
    "Slack. Nothing was opened.",
)
SIGN_IN_NOT_CONFIGURED_PAGE = (
    503,
    "Sessions cannot be opened right now",
    "The policy requires Sign in with Slack, but it is not configured (SLACK_CLIENT_ID, "
    "SLACK_CLIENT_SECRET). Nothing was opened; the link stays valid until it expires.",
)
SIGN_IN_UNAVAILABLE_PAGE = (
    503,
    "Sign in with Slack is unavailable right now",
    "Nothing was opened; the link stays valid until it expires. Try again in a minute.",
)
NOT_CONFIGURED_PAGE = (
    503,
    "Sessions cannot be opened right now",
    "The product's launch address is not configured (PRODUCT_LAUNCH_URL). Nothing was opened; "
    "the link stays valid until it expires.",
)


def format_when(moment: datetime, tz_name: str | None) -> str:
    """"14:05 Europe/Paris (12:05 UTC)": the agent's own clock first, UTC for the record."""
    utc = moment.astimezone(UTC)
    try:
        zone = ZoneInfo(tz_name) if tz_name else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is None:
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    local = utc.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {tz_name} ({utc:%H:%M} UTC)"


def _client() -> ClientInfo:
    return ClientInfo(ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))


def _page(status: int, headline: str, explanation: str) -> Response:
    return make_response(render_template("refused.html", headline=headline, explanation=explanation), status)


def _problem_page(problem: LinkProblem, cause: RedeemRefusal | None = None) -> Response:
    status, headline, explanation = PROBLEM_PAGES[problem]
    if cause is not None:
        explanation = POLICY_CHANGED_EXPLANATIONS[cause]
    return _page(status, headline, explanation)


def landing_blueprint(
    ctx: DomainContext,
    *,
    csrf: LinkCsrf,
    deliverer: Deliverer | None,
    refusals: RefusalAuditor,
    sign_in: SlackSignIn | None = None,
) -> Blueprint:
    pages = Blueprint("landing", __name__)

    @pages.get("/l/<token>")
    def confirm(token: str) -> Response:
        shown = links.preview(ctx, token)
        if shown.problem is not None or shown.request is None or shown.expires_at is None:
            return _problem_page(shown.problem or LinkProblem.UNKNOWN)
        nonce = csrf.nonce(request.cookies.get(csrf.cookie_name))
        response = make_response(
            render_template(
                "landing.html",
                token=token,
                request_view=shown.request,
                link_expires=format_when(shown.expires_at, shown.request.agent_tz),
                csrf_field=CSRF_FIELD,
                csrf_proof=csrf.proof(nonce, token),
                can_redeem=bool(ctx.product_launch_url),
            )
        )
        csrf.set_cookie(response, nonce)
        return response

    @pages.post("/l/<token>")
    def redeem(token: str) -> Response:
        failure = csrf.check(
            token,
            cookie=request.cookies.get(csrf.cookie_name),
            submitted=request.form.get(CSRF_FIELD),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
        )
        if failure is not None:
            return _refuse_csrf(token, failure)
        if not ctx.product_launch_url:
            return _page(*NOT_CONFIGURED_PAGE)
        if ctx.policy.links.require_slack_sign_in:
            return _sign_in_first(token)
        outcome = links.redeem(ctx, token, client=_client())
        if not isinstance(outcome, Redemption):
            return _problem_page(outcome.problem, outcome.cause)
        return _launch(outcome)

    def _sign_in_first(token: str) -> Response:
        """To Slack's authorization endpoint; the redemption waits for the return (303: the
        browser follows with a GET)."""
        if sign_in is None:
            return _page(*SIGN_IN_NOT_CONFIGURED_PAGE)
        try:
            authorize_url, flow = sign_in.start(token)
        except (ProviderConfigError, OSError, ValueError) as exc:  # discovery unreachable or unusable
            log.error("Sign in with Slack is unavailable: %s", exc)
            return _page(*SIGN_IN_UNAVAILABLE_PAGE)
        # make_response: typed as the app's Response class, which redirect() already builds
        response = make_response(redirect(authorize_url, code=303))
        sign_in.set_cookie(response, flow)
        return response

    @pages.get(CALLBACK_PATH)
    def signed_in() -> Response:
        """The return from Slack: verified, then the one-time redemption with who signed in
        as its precondition. The cookie is spent whatever happens (one flow, one return)."""
        if sign_in is None:
            abort(404)
        flow = sign_in.read_flow(request.cookies.get(sign_in.cookie_name))
        if flow is None:
            response = _refuse_sign_in(None, SignInFailure.MISSING_FLOW)
        else:
            try:
                agent = sign_in.finish(flow, state=request.args.get("state"), code=request.args.get("code"), error=request.args.get("error"))
            except SignInError as exc:
                response = _refuse_sign_in(flow.token, exc.failure)
            else:
                outcome = links.redeem(ctx, flow.token, client=_client(), signed_in=agent)
                response = _launch(outcome) if isinstance(outcome, Redemption) else _problem_page(outcome.problem, outcome.cause)
        sign_in.clear_cookie(response)
        return response

    def _refuse_sign_in(token: str | None, failure: SignInFailure) -> Response:
        # Anyone can call the return address: the event passes the refusal throttle.
        if links.refuse_sign_in(ctx, token, cause=failure.value, refusals=refusals, client=_client()):
            log.info("link redemption refused: Sign in with Slack failed (%s)", failure.value)
        return _page(*SIGN_IN_PAGE)

    def _refuse_csrf(token: str, failure: CsrfFailure) -> Response:
        # Anyone can send these: the event, and this line with it, pass the refusal throttle.
        if links.refuse_csrf(ctx, token, cause=failure.value, refusals=refusals, client=_client()):
            log.info("link redemption refused: CSRF check failed (%s)", failure.value)
        return _page(*CSRF_PAGE)

    def _launch(redemption: Redemption) -> Response:
        view: RequestView = redemption.session.request
        response = make_response(
            render_template(
                "redeemed.html",
                launch_url=redemption.launch_url,
                handoff_token=redemption.handoff_token,
                request_view=view,
                session_ends=format_when(redemption.session.expires_at, view.agent_tz),
            )
        )
        # The agent's DM becomes the live session's, the feed says so: handed over after the
        # response is sent, so a slow Slack call never delays the hand-off.
        return deliver_after(response, deliverer, redemption.targets)

    return pages

