"""The link pages: GET shows and changes nothing, POST redeems once behind a CSRF check, the
winner hands a signed JWT to the product in a POST body."""
from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests as http
from freezegun import freeze_time
from sqlalchemy import select
from werkzeug.serving import make_server

from bot.db.models import ImpersonationRequest, ImpersonationSession
from bot.domain import sessions
from bot.domain.audit import verify_chain
from bot.domain.handoff import ALGORITHM, TOKEN_TYPE, HandoffRefused, verify_handoff
from bot.domain.links import hash_token
from bot.domain.sessions import SessionStatus
from bot.web.app import create_web_app
from bot.web.security import LinkCsrf
from tests.web.conftest import audit_events, csrf_proof, parse_page, state_snapshot
from tests.conftest import allow_many_open_accesses
from tests.personal_values import revealed

SLACK_UNFURLER = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
LINK_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}


def confirm(client, token: str, **headers):
    page = client.get(f"/l/{token}", headers=headers)
    assert page.status_code == 200, page.status_code
    return csrf_proof(page.get_data(as_text=True))


def redeem(client, token: str, **headers):
    proof = confirm(client, token)
    return client.post(f"/l/{token}", data={"csrf": proof}, headers=headers)


def proof_for(client, ctx, csrf_secret, token: str) -> str:
    """A valid proof for any token, using the cookie the client holds (what only the server
    could compute: lets a test get past CSRF with a token that has no confirmation page)."""
    cookie = client.get_cookie("link_csrf", path="/l/")
    assert cookie is not None
    return LinkCsrf.for_base_url(csrf_secret, ctx.public_base_url).proof(cookie.value, token)


def csp_directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else "" for part in (p.strip() for p in policy.split(";")) if part}


def assert_link_headers(response) -> None:
    for name, value in LINK_HEADERS.items():
        assert response.headers.get(name) == value, name
    csp = csp_directives(response)
    assert csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["form-action"] == "'self' http://product.test"
    assert csp["script-src"].startswith("'nonce-") and csp["style-src"] == csp["script-src"]


def new_audit_types(session_factory, before: int) -> list[str]:
    return [e.type for e in audit_events(session_factory)[before:]]


# --- GET and HEAD change nothing ------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("user_agent", [BROWSER, SLACK_UNFURLER])
def test_get_and_head_change_nothing(client, token, session_factory, method, user_agent):
    before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))

    for _ in range(3):
        response = client.open(f"/l/{token}", method=method, headers={"User-Agent": user_agent})
        assert response.status_code == 200
        assert_link_headers(response)

    assert state_snapshot(session_factory) == before_state
    assert len(audit_events(session_factory)) == before_audit
    assert redeem(client, token).status_code == 200  # still redeemable afterwards


def test_confirmation_page_describes_the_link_and_has_a_csrf_form(client, token):
    response = client.get(f"/l/{token}")
    html = response.get_data(as_text=True)
    for text in ("ACME Corp", "acme", "Bob Builder", "bob@acme.example", "read only", "customer ticket about billing", "SUP-1", "30 minutes"):
        assert text in html
    assert "Europe/Paris" in html  # the link's expiry in the agent's time zone
    (form,) = parse_page(html).forms
    assert form.method == "post" and form.action == f"/l/{token}"
    assert form.inputs["csrf"][0] == "hidden" and len(form.inputs["csrf"][1]) == 64
    # The <title> (what link previews show) says nothing about the account or user.
    assert "<title>Impersonation session</title>" in html


def test_confirmation_page_escapes_what_the_agent_typed(client, grant):
    token = grant(reason='<script>alert("x")</script> & more text here')
    html = client.get(f"/l/{token}").get_data(as_text=True)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in html


def test_get_of_a_used_link_says_so_and_changes_nothing(client, token, session_factory):
    assert redeem(client, token).status_code == 200
    before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))
    response = client.get(f"/l/{token}")
    assert response.status_code == 409
    assert "already been used" in response.get_data(as_text=True)
    assert not parse_page(response.get_data(as_text=True)).forms
    assert state_snapshot(session_factory) == before_state
    assert len(audit_events(session_factory)) == before_audit


@pytest.mark.parametrize("path", ["/l/" + "A" * 43, "/l/short", "/l/" + "x" * 5000])
def test_get_of_an_unknown_link_is_404_and_never_echoes_the_token(client, directory, session_factory, path):
    before_audit = len(audit_events(session_factory))
    response = client.get(path)
    assert response.status_code == 404
    assert "not valid" in response.get_data(as_text=True)
    assert path.removeprefix("/l/") not in response.get_data(as_text=True)
    assert_link_headers(response)
    assert len(audit_events(session_factory)) == before_audit


def cookie_attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """'name=value; Path=/; HttpOnly' → ('name', {'path': '/', 'httponly': ''})."""
    first, *rest = [part.strip() for part in set_cookie.split(";")]
    attributes = {}
    for part in rest:
        key, _, value = part.partition("=")
        attributes[key.lower()] = value
    return first.split("=", 1)[0], attributes


def test_confirmation_cookie_is_httponly_samesite_strict_and_scoped_to_links(client, token):
    (set_cookie,) = client.get(f"/l/{token}").headers.getlist("Set-Cookie")
    name, attributes = cookie_attributes(set_cookie)
    assert name == "link_csrf"  # plain http here: the __Host- prefix needs Secure (next test)
    assert "httponly" in attributes and attributes["samesite"] == "Strict"
    assert attributes["path"] == "/l/"
    assert "secure" not in attributes and "domain" not in attributes


def test_https_deployment_uses_a_host_prefixed_secure_cookie(ctx, token, csrf_secret):
    app = create_web_app(replace(ctx, public_base_url="https://bot.test"), csrf_secret=csrf_secret)
    client = app.test_client()
    response = client.get(f"/l/{token}", base_url="https://bot.test")
    (set_cookie,) = response.headers.getlist("Set-Cookie")
    name, attributes = cookie_attributes(set_cookie)
    # RFC 6265bis §4.1.3.2: a __Host- cookie must be Secure, have no Domain and Path=/.
    assert name == "__Host-link_csrf"
    assert "secure" in attributes and "domain" not in attributes and attributes["path"] == "/"
    assert "httponly" in attributes and attributes["samesite"] == "Strict"
    proof = csrf_proof(response.get_data(as_text=True))
    redeemed = client.post(f"/l/{token}", data={"csrf": proof}, base_url="https://bot.test", headers={"Origin": "https://bot.test"})
    assert redeemed.status_code == 200


# --- CSRF --------------------------------------------------------------------------------


def _without_cookie(client, token):
    proof = confirm(client, token)
    client.delete_cookie("link_csrf", path="/l/")
    return client.post(f"/l/{token}", data={"csrf": proof})


def _without_field(client, token):
    confirm(client, token)
    return client.post(f"/l/{token}", data={})


def _wrong_proof(client, token):
    confirm(client, token)
    return client.post(f"/l/{token}", data={"csrf": "0" * 64})


def _proof_from_another_cookie(client, token):
    proof = confirm(client, token)
    client.set_cookie("link_csrf", "B" * 43, path="/l/")
    return client.post(f"/l/{token}", data={"csrf": proof})


def _foreign_origin(client, token):
    proof = confirm(client, token)
    return client.post(f"/l/{token}", data={"csrf": proof}, headers={"Origin": "https://evil.example"})


def _cross_site_fetch(client, token):
    proof = confirm(client, token)
    return client.post(f"/l/{token}", data={"csrf": proof}, headers={"Sec-Fetch-Site": "cross-site"})


@pytest.mark.parametrize(
    "attack, cause",
    [
        (_without_cookie, "missing_cookie"),
        (_without_field, "missing_proof"),
        (_wrong_proof, "bad_proof"),
        (_proof_from_another_cookie, "bad_proof"),
        (_foreign_origin, "cross_origin"),
        (_cross_site_fetch, "cross_site_fetch"),
    ],
)
def test_post_failing_csrf_is_refused_audited_and_redeems_nothing(client, token, session_factory, attack, cause):
    before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))

    response = attack(client, token)

    assert response.status_code == 403
    assert "could not be verified" in response.get_data(as_text=True)
    assert token not in response.get_data(as_text=True)
    assert_link_headers(response)
    assert state_snapshot(session_factory) == before_state
    (event,) = audit_events(session_factory)[before_audit:]
    assert event.type == "link.csrf_refused"
    assert event.account == "acme" and revealed(session_factory, event)[0] == "u-bob"
    assert f'"cause":"{cause}"' in event.details
    assert f'"token_hash_prefix":"{hash_token(token)[:12]}"' in event.details
    assert token not in event.details
    assert redeem(client, token).status_code == 200  # the link itself is untouched


def test_proof_for_one_link_does_not_redeem_another(ctx, client, grant, session_factory):
    allow_many_open_accesses(ctx)
    first, second = grant(), grant(user="u-bob", reason="second ticket about billing")
    proof_for_first = confirm(client, first)
    confirm(client, second)  # same browser: the nonce cookie is shared, the proofs are not
    before_state = state_snapshot(session_factory)
    assert client.post(f"/l/{second}", data={"csrf": proof_for_first}).status_code == 403
    assert state_snapshot(session_factory) == before_state


@pytest.mark.parametrize("origin", ["http://bot.test", "null"])
def test_our_origin_or_the_null_origin_of_a_no_referrer_page_is_accepted(client, token, origin):
    # Our pages send Referrer-Policy: no-referrer, under which browsers send `Origin: null`
    # on the page's own form POST (Fetch standard); the HMAC proof still decides.
    response = redeem(client, token, Origin=origin, **{"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200


# --- redemption -------------------------------------------------------------------------


def test_redeem_auto_posts_a_verifiable_handoff_jwt_and_never_puts_it_in_a_url(ctx, client, token, deliverer, session_factory):
    response = redeem(client, token)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert_link_headers(response)

    page = parse_page(html)
    (form,) = page.forms
    assert form.method == "post" and form.action == ctx.product_launch_url
    assert set(form.inputs) == {"token"} and form.inputs["token"][0] == "hidden"
    handoff = form.inputs["token"][1]
    assert html.count(handoff) == 1  # only in the hidden field's value
    assert all(handoff not in url for url in page.urls)
    assert "?" not in form.action
    assert page.in_noscript == ["button"]  # works without JavaScript too
    ((script_nonce, script),) = page.scripts
    assert script_nonce and f"'nonce-{script_nonce}'" == csp_directives(response)["script-src"]
    assert 'getElementById("handoff").submit()' in script and form.id == "handoff"

    jwks = client.get("/.well-known/jwks.json").get_json()
    claims = verify_handoff(handoff, jwks, issuer=ctx.issuer, audience=ctx.product_launch_url)
    header = jwt.get_unverified_header(handoff)
    assert header == {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": ctx.signing_key.kid}
    with session_factory() as db:
        session = db.execute(select(ImpersonationSession)).scalar_one()
    assert claims["iss"] == "http://bot.test"
    assert claims["aud"] == "http://product.test/impersonation/launch"
    assert claims["sub"] == "u-bob"
    assert claims["act"] == {"sub": "agent1@corp.example"}
    assert claims["sid"] == session.id
    assert claims["account"] == "acme"
    assert claims["scope"] == "read_only"
    assert claims["iat"] == claims["nbf"] == int(session.started_at.timestamp())
    assert claims["exp"] == int(session.expires_at.timestamp())
    assert session.expires_at - session.started_at == timedelta(minutes=30)
    assert claims["jti"] == session.handoff_jti and uuid.UUID(claims["jti"])

    assert deliverer.delivered == []  # handed over only once the response has gone out
    response.close()
    # the targets the redemption wrote: the agent's DM becomes the session's, the feed says so
    assert deliverer.delivered == [(f"agent:{session.request_id}:UAGENT1", f"feed:{session.request_id}:security")]
    (redeemed,) = [e for e in audit_events(session_factory) if e.type == "session.redeemed"]
    assert redeemed.session_id == session.id and handoff not in redeemed.details and token not in redeemed.details


def test_a_failing_deliverer_is_logged_never_shown(ctx, token, csrf_secret, caplog):
    class BrokenDeliverer:
        def deliver(self, targets) -> None:
            raise RuntimeError("slack is down")

    client = create_web_app(ctx, deliverer=BrokenDeliverer(), csrf_secret=csrf_secret).test_client()
    response = redeem(client, token)
    with caplog.at_level(logging.ERROR, logger="bot.web.background"):
        response.close()
    assert response.status_code == 200 and "slack is down" not in response.get_data(as_text=True)
    assert any("could not hand over" in r.getMessage() for r in caplog.records)


def test_second_post_is_refused_as_already_used_and_audited(client, token, session_factory):
    proof = confirm(client, token)
    assert client.post(f"/l/{token}", data={"csrf": proof}).status_code == 200
    before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))

    again = client.post(f"/l/{token}", data={"csrf": proof})  # e.g. a second click, or Back + resend

    assert again.status_code == 409
    assert "already been used" in again.get_data(as_text=True)
    assert not parse_page(again.get_data(as_text=True)).forms
    assert_link_headers(again)
    assert state_snapshot(session_factory) == before_state
    assert new_audit_types(session_factory, before_audit) == ["link.replay_refused"]


def test_unknown_token_post_is_refused_and_audited(ctx, client, token, csrf_secret, session_factory):
    confirm(client, token)  # the browser has a nonce cookie
    unknown = "Z" * 43
    before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))

    response = client.post(f"/l/{unknown}", data={"csrf": proof_for(client, ctx, csrf_secret, unknown)})

    assert response.status_code == 404
    assert unknown not in response.get_data(as_text=True)
    assert state_snapshot(session_factory) == before_state
    (event,) = audit_events(session_factory)[before_audit:]
    assert event.type == "link.unknown_refused" and unknown not in event.details


def test_a_link_whose_request_is_no_longer_granted_is_refused(client, token, session_factory):
    proof = confirm(client, token)
    with session_factory() as db, db.begin():
        db.execute(
            ImpersonationRequest.__table__.update().values(state="revoked")
        )  # as security's revoke will; requests are not append-only
    before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))
    response = client.post(f"/l/{token}", data={"csrf": proof})
    assert response.status_code == 409 and "no longer be used" in response.get_data(as_text=True)
    assert state_snapshot(session_factory) == before_state
    assert new_audit_types(session_factory, before_audit) == ["link.refused"]


def test_without_a_launch_url_nothing_is_redeemed(ctx, token, csrf_secret, session_factory):
    client = create_web_app(replace(ctx, product_launch_url=None), csrf_secret=csrf_secret).test_client()
    page = client.get(f"/l/{token}")
    assert page.status_code == 200 and "PRODUCT_LAUNCH_URL" in page.get_data(as_text=True)
    assert not parse_page(page.get_data(as_text=True)).forms
    before_state = state_snapshot(session_factory)
    response = client.post(f"/l/{token}", data={"csrf": proof_for(client, ctx, csrf_secret, token)})
    assert response.status_code == 503
    assert state_snapshot(session_factory) == before_state


# --- 50 concurrent redemptions over real HTTP -----------------------------------------


def test_fifty_concurrent_redemptions_over_http_exactly_one_wins(web_app, token, session_factory):
    clients = 50
    server = make_server("127.0.0.1", 0, web_app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.port}"
    barrier = threading.Barrier(clients)

    def attempt(_: int) -> tuple[int, str]:
        with http.Session() as browser:
            page = browser.get(f"{base}/l/{token}", timeout=60)
            proof = csrf_proof(page.text)
            barrier.wait(timeout=60)
            response = browser.post(f"{base}/l/{token}", data={"csrf": proof}, timeout=60)
            return response.status_code, response.text

    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(attempt, range(clients)))
    finally:
        server.shutdown()
        serving.join(timeout=30)

    assert Counter(status for status, _ in results) == {200: 1, 409: clients - 1}
    (winner,) = [html for status, html in results if status == 200]
    assert parse_page(winner).forms[0].action == "http://product.test/impersonation/launch"
    assert all("already been used" in html for status, html in results if status == 409)
    with session_factory() as db:
        assert len(db.execute(select(ImpersonationSession)).scalars().all()) == 1
        _, problem = verify_chain(db)
    assert problem is None
    types = Counter(e.type for e in audit_events(session_factory))
    assert types["session.redeemed"] == 1
    assert types["link.replay_refused"] == clients - 1


# --- frozen clock -------------------------------------------------------------------------

GRANTED_AT = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
WINDOW = timedelta(minutes=5)  # tests/conftest.py TEST_POLICY [links]
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize("offset, status", [(WINDOW - SECOND, 200), (WINDOW + SECOND, 410)])
def test_link_works_until_its_window_ends(client, grant, session_factory, offset, status):
    with freeze_time(GRANTED_AT) as clock:
        token = grant()
        proof = confirm(client, token)  # the agent opens the page at once and clicks later
        clock.move_to(GRANTED_AT + offset)
        shown = client.get(f"/l/{token}").status_code
        before_state, before_audit = state_snapshot(session_factory), len(audit_events(session_factory))
        response = client.post(f"/l/{token}", data={"csrf": proof})

    assert shown == response.status_code == status
    types = new_audit_types(session_factory, before_audit)
    if status == 200:
        assert types == ["session.redeemed"]
    else:
        assert "expired" in response.get_data(as_text=True)
        assert types == ["link.expired"]
        assert state_snapshot(session_factory) == before_state


def test_session_is_live_until_expires_at_then_expired(ctx, client, grant, session_factory):
    with freeze_time(GRANTED_AT) as clock:
        token = grant(duration_minutes=30)
        clock.move_to(GRANTED_AT + timedelta(seconds=10))
        assert redeem(client, token).status_code == 200
        with session_factory() as db:
            session = db.execute(select(ImpersonationSession)).scalar_one()
        assert session.expires_at == GRANTED_AT + timedelta(seconds=10, minutes=30)

        clock.move_to(session.expires_at - SECOND)
        assert sessions.check_session(ctx, session.id).live

        clock.move_to(session.expires_at + SECOND)
        check = sessions.check_session(ctx, session.id)
        assert not check.live and check.status is SessionStatus.EXPIRED

        ended = sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1").session
    assert ended.state == "expired" and ended.ended_at == session.expires_at
    assert audit_events(session_factory)[-1].type == "session.expired"


def test_hand_off_jwt_expires_with_the_session(ctx, client, grant):
    with freeze_time(GRANTED_AT) as clock:
        token = grant(duration_minutes=15)
        handoff = parse_page(redeem(client, token).get_data(as_text=True)).forms[0].inputs["token"][1]
        jwks = client.get("/.well-known/jwks.json").get_json()
        clock.move_to(GRANTED_AT + timedelta(minutes=15) - SECOND)
        verify_handoff(handoff, jwks, issuer=ctx.issuer, audience=ctx.product_launch_url)
        clock.move_to(GRANTED_AT + timedelta(minutes=15) + SECOND)
        with pytest.raises(HandoffRefused, match="expired"):
            verify_handoff(handoff, jwks, issuer=ctx.issuer, audience=ctx.product_launch_url)


def test_every_link_response_carries_the_security_headers(client, token):
    responses = [
        client.get(f"/l/{token}"),
        client.head(f"/l/{token}"),
        client.post(f"/l/{token}", data={}),  # CSRF refusal
        redeem(client, token),
        client.get(f"/l/{token}"),  # used
        client.get("/l/unknown-token"),
        client.get("/l/a/b"),  # no such route: werkzeug's 404, our page
        client.put(f"/l/{token}"),  # 405
    ]
    assert [r.status_code for r in responses] == [200, 200, 403, 200, 409, 404, 404, 405]
    for response in responses:
        assert_link_headers(response)
