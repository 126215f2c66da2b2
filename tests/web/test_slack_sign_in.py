"""Sign in with Slack before a link redeems (policy `links.require_slack_sign_in`): the real web
app and a fake OpenID Connect provider (tests/fakes/slack_oidc.py), each on its own loopback
port, driven by a `requests` session that follows redirects and keeps cookies as a browser."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests as http
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from werkzeug.serving import make_server

from bot.db.models import Alert, ImpersonationSession, OutboxMessage
from bot.domain import links
from bot.domain import requests as domain_requests
from bot.domain.handoff import verify_handoff
from bot.domain.ports import Person, StaticPeople
from bot.domain.requests import AgentIdentity, RequestForm
from bot.web.app import REFUSALS_EXTENSION, create_web_app
from bot.web.slack_sign_in import CALLBACK_PATH, SlackSignIn
from tests.fakes.slack_oidc import FakeSlackOidc, SlackUser
from tests.web.conftest import audit_events, csrf_proof, parse_page, state_snapshot

TEAM = "T0AGENTS"
AGENT = SlackUser(user_id="UAGENT1", team_id=TEAM)
#: the same person as the agent on Enterprise Grid: their org-wide id
AGENT_ORG_WIDE = SlackUser(user_id="W0AGENT1", team_id=TEAM, enterprise_id="E0CORP")
SOMEONE_ELSE = SlackUser(user_id="UINTRUDER", team_id=TEAM)
AGENT_ID_IN_ANOTHER_WORKSPACE = SlackUser(user_id="UAGENT1", team_id="T0OTHER")


@pytest.fixture
def people():
    return StaticPeople({"UAGENT1": Person("UAGENT1", email="agent1@corp.example", tz="Europe/Paris", enterprise_user_id="W0AGENT1")})


@pytest.fixture
def provider() -> Iterator[FakeSlackOidc]:
    with FakeSlackOidc() as fake:
        yield fake


@dataclass
class Bot:
    base: str
    ctx: Any
    sign_in: SlackSignIn

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def bot(ctx, provider, csrf_secret, deliverer) -> Iterator[Bot]:
    """The web app over HTTP, its policy requiring Sign in with Slack against the fake."""
    holder: dict[str, Any] = {}
    server = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
    base = f"http://127.0.0.1:{server.port}"
    policy = ctx.policy.model_copy(update={"links": ctx.policy.links.model_copy(update={"require_slack_sign_in": True})})
    bot_ctx = replace(ctx, public_base_url=base, policy=policy)
    sign_in = SlackSignIn(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        issuer=provider.issuer,
        public_base_url=base,
        secret=csrf_secret,
    )
    provider.redirect_uris.append(base + CALLBACK_PATH)
    holder["app"] = app = create_web_app(bot_ctx, deliverer=deliverer, csrf_secret=csrf_secret, sign_in=sign_in)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield Bot(base=base, ctx=bot_ctx, sign_in=sign_in)
    finally:
        server.shutdown()
        server.server_close()
        app.extensions[REFUSALS_EXTENSION].close()


@pytest.fixture
def token(ctx, directory) -> str:
    """A granted link of UAGENT1, asked in workspace TEAM."""
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    result = domain_requests.submit_request(ctx, AgentIdentity("UAGENT1", team_id=TEAM), form)
    assert isinstance(result, domain_requests.Granted), result
    return result.link.url.rsplit("/", 1)[1]


def continue_from_landing(browser: http.Session, bot: Bot, token: str, **kwargs) -> http.Response:
    """Open the link's page and press Continue, as the agent's browser."""
    page = browser.get(bot.url(f"/l/{token}"))
    assert page.status_code == 200
    return browser.post(bot.url(f"/l/{token}"), data={"csrf": csrf_proof(page.text)}, **kwargs)


def to_slack_and_back(browser: http.Session, bot: Bot, token: str) -> str:
    """Press Continue and follow only as far as Slack's redirect back: the callback URL."""
    pressed = continue_from_landing(browser, bot, token, allow_redirects=False)
    assert pressed.status_code == 303
    at_slack = browser.get(pressed.headers["Location"], allow_redirects=False)
    assert at_slack.status_code == 302
    return at_slack.headers["Location"]


def handoff_of(response: http.Response) -> str:
    (form,) = [f for f in parse_page(response.text).forms if f.method == "post"]
    return form.inputs["token"][1]


def details(event) -> dict[str, Any]:
    return json.loads(event.details)


def sessions_of(session_factory) -> list[ImpersonationSession]:
    with session_factory() as db:
        return list(db.execute(select(ImpersonationSession)).scalars())


# --- the requesting agent ---------------------------------------------------------------------


def test_the_requesting_agent_signs_in_with_slack_and_the_link_redeems(bot, provider, token, session_factory, deliverer):
    provider.sign_in_as = AGENT
    browser = http.Session()
    answer = continue_from_landing(browser, bot, token)

    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [303, 302]
    assert urlsplit(answer.history[0].headers["Location"]).netloc == urlsplit(provider.issuer).netloc
    assert urlsplit(answer.url).path == CALLBACK_PATH
    claims = verify_handoff(handoff_of(answer), {"keys": [bot.ctx.signing_key.public_jwk()]}, issuer=bot.base, audience=bot.ctx.product_launch_url)
    assert claims["sid"] == sessions_of(session_factory)[0].id
    (session,) = sessions_of(session_factory)
    assert deliverer.delivered == [(f"agent:{session.request_id}:{AGENT.user_id}", f"feed:{session.request_id}:security")]
    # the flow cookie is spent with the return
    assert bot.sign_in.cookie_name not in browser.cookies

    (authorize,) = provider.authorize_requests
    assert authorize["scope"] == "openid" and authorize["code_challenge_method"] == "S256"
    assert authorize["redirect_uri"] == bot.url(CALLBACK_PATH)
    (exchange,) = provider.token_requests
    assert exchange["redirect_uri"] == bot.url(CALLBACK_PATH) and exchange["code_verifier"]
    assert provider.violations == []


def test_the_agents_org_wide_grid_id_is_the_same_person(bot, provider, token, session_factory):
    provider.sign_in_as = AGENT_ORG_WIDE
    answer = continue_from_landing(http.Session(), bot, token)
    assert answer.status_code == 200
    assert len(sessions_of(session_factory)) == 1


def test_flow_state_nonce_and_verifier_are_new_for_every_sign_in(bot, provider, grant, token):
    provider.sign_in_as = AGENT
    first = to_slack_and_back(http.Session(), bot, token)
    second = to_slack_and_back(http.Session(), bot, token)
    a, b = provider.authorize_requests
    for name in ("state", "nonce", "code_challenge"):
        assert a[name] != b[name] and len(a[name]) >= 43
    assert parse_qs(urlsplit(first).query)["state"] != parse_qs(urlsplit(second).query)["state"]


def test_a_link_page_under_the_policy_may_post_to_slack(bot, token):
    page = http.get(bot.url(f"/l/{token}"))
    form_action = [p.strip() for p in page.headers["Content-Security-Policy"].split(";") if p.strip().startswith("form-action")]
    assert bot.sign_in.origin in form_action[0]


# --- someone else holding the link ------------------------------------------------------------


@pytest.mark.parametrize("who", [SOMEONE_ELSE, AGENT_ID_IN_ANOTHER_WORKSPACE], ids=["other_user", "other_workspace"])
def test_a_different_slack_user_is_refused_audited_and_the_link_stays_for_its_agent(bot, provider, token, session_factory, who):
    before = len(audit_events(session_factory))
    unchanged = state_snapshot(session_factory)
    provider.sign_in_as = who

    answer = continue_from_landing(http.Session(), bot, token)

    assert answer.status_code == 403
    assert "belongs to someone else" in answer.text
    assert token not in answer.text
    assert state_snapshot(session_factory) == unchanged
    event, alerted = audit_events(session_factory)[before:]
    assert (event.type, alerted.type) == ("link.identity_mismatch", "alert.raised")
    assert event.actor_slack_id == who.user_id
    assert details(event)["signed_in_user"] == who.user_id and details(event)["signed_in_team"] == who.team_id
    assert details(event)["requester"] == "UAGENT1"
    assert token not in event.details
    # the security channel is owed an alert naming who signed in
    with session_factory() as db:
        (alert,) = db.execute(select(Alert)).scalars()
        owed = db.execute(select(OutboxMessage).where(OutboxMessage.kind == "alert")).scalars().all()
    assert (alert.rule, alert.request_id, alert.agent_slack_id) == ("link_identity_mismatch", event.request_id, "UAGENT1")
    assert json.loads(alert.details) == {"signed_in_user": who.user_id, "signed_in_team": who.team_id}
    assert [o.subject_id for o in owed] == [alert.id]

    # the agent it was sent to still opens it, in its window
    provider.sign_in_as = AGENT
    assert continue_from_landing(http.Session(), bot, token).status_code == 200
    assert len(sessions_of(session_factory)) == 1


# --- returns that must not redeem -------------------------------------------------------------


def test_a_return_in_another_browser_is_refused_and_audited(bot, provider, token, session_factory):
    """The attacker's own code and state, opened in the agent's browser (login CSRF), or the
    agent's return replayed from a browser without the flow's cookie: refused either way."""
    provider.sign_in_as = AGENT
    callback = to_slack_and_back(http.Session(), bot, token)
    before = len(audit_events(session_factory))

    answer = http.Session().get(callback)

    assert answer.status_code == 403
    assert sessions_of(session_factory) == []
    (event,) = audit_events(session_factory)[before:]
    assert (event.type, details(event)["cause"]) == ("link.sign_in_refused", "missing_flow")


def test_a_return_with_another_flows_state_is_refused(bot, provider, grant, token, session_factory):
    provider.sign_in_as = AGENT
    browser = http.Session()
    first = to_slack_and_back(http.Session(), bot, token)
    to_slack_and_back(browser, bot, token)  # this browser's own flow
    before = len(audit_events(session_factory))

    answer = browser.get(first)  # another flow's code and state in this browser

    assert answer.status_code == 403
    assert sessions_of(session_factory) == []
    (event,) = audit_events(session_factory)[before:]
    assert (event.type, details(event)["cause"]) == ("link.sign_in_refused", "state_mismatch")
    assert event.request_id is not None


def test_a_captured_return_cannot_be_replayed(bot, provider, token, session_factory):
    """The browser's return URL and cookie, captured and sent again: the code was spent at
    the token endpoint (and the link with it)."""
    provider.sign_in_as = AGENT
    browser = http.Session()
    callback = to_slack_and_back(browser, bot, token)
    cookie = browser.cookies.get(bot.sign_in.cookie_name)
    assert browser.get(callback).status_code == 200
    before = len(audit_events(session_factory))

    replay = http.get(callback, cookies={bot.sign_in.cookie_name: cookie})

    assert replay.status_code == 403
    assert [(e.type, details(e).get("cause")) for e in audit_events(session_factory)[before:]] == [("link.sign_in_refused", "token_exchange")]
    assert len(sessions_of(session_factory)) == 1


def test_cancelling_at_slack_redeems_nothing(bot, provider, token, session_factory):
    provider.deny = True
    before = len(audit_events(session_factory))
    answer = continue_from_landing(http.Session(), bot, token)
    assert answer.status_code == 403
    assert sessions_of(session_factory) == []
    assert [details(e)["cause"] for e in audit_events(session_factory)[before:]] == ["provider_error"]


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


FORGERIES = {
    "nonce_of_another_flow": (lambda c, k: ({**c, "nonce": "another-flows-nonce"}, k, {}), "nonce_mismatch"),
    "no_nonce": (lambda c, k: ({n: v for n, v in c.items() if n != "nonce"}, k, {}), "id_token_invalid"),
    "another_audience": (lambda c, k: ({**c, "aud": "another-app"}, k, {}), "id_token_invalid"),
    "another_issuer": (lambda c, k: ({**c, "iss": "https://evil.example"}, k, {}), "id_token_invalid"),
    "expired": (lambda c, k: ({**c, "exp": c["iat"] - 120}, k, {}), "id_token_invalid"),
    "signed_by_another_key": (lambda c, k: (c, _other_key(), {}), "id_token_invalid"),
    "alg_none": (lambda c, k: (c, None, {"alg": "none"}), "id_token_invalid"),
    "sub_not_the_user_id": (lambda c, k: ({**c, "sub": "UAGENT1", "https://slack.com/user_id": "UINTRUDER"}, k, {}), "id_token_invalid"),
    "no_team": (lambda c, k: ({n: v for n, v in c.items() if n != "https://slack.com/team_id"}, k, {}), "id_token_invalid"),
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=list(FORGERIES))
def test_an_id_token_that_fails_verification_is_refused_and_audited(bot, provider, token, session_factory, forgery):
    override, cause = FORGERIES[forgery]
    provider.sign_in_as = AGENT
    provider.id_token_override = override
    before = len(audit_events(session_factory))
    unchanged = state_snapshot(session_factory)

    answer = continue_from_landing(http.Session(), bot, token)

    assert answer.status_code == 403
    assert state_snapshot(session_factory) == unchanged
    (event,) = audit_events(session_factory)[before:]
    assert (event.type, details(event)["cause"]) == ("link.sign_in_refused", cause)


def test_an_unrecognised_client_secret_is_refused_by_slack_and_redeems_nothing(bot, provider, token, session_factory):
    provider.sign_in_as = AGENT
    provider.client_secret = "rotated-elsewhere"
    answer = continue_from_landing(http.Session(), bot, token)
    assert answer.status_code == 403
    assert sessions_of(session_factory) == []
    assert [details(e).get("cause") for e in audit_events(session_factory) if e.type == "link.sign_in_refused"] == ["token_exchange"]


# --- configuration ----------------------------------------------------------------------------


def test_a_discovery_document_naming_another_issuer_redeems_nothing(ctx, provider, csrf_secret, token, session_factory):
    sign_in = SlackSignIn(client_id=provider.client_id, client_secret="s", issuer=provider.issuer + "/elsewhere", public_base_url="http://bot.test", secret=csrf_secret)
    policy = ctx.policy.model_copy(update={"links": ctx.policy.links.model_copy(update={"require_slack_sign_in": True})})
    app = create_web_app(replace(ctx, policy=policy), csrf_secret=csrf_secret, sign_in=sign_in)
    try:
        client = app.test_client()
        page = client.get(f"/l/{token}")
        answer = client.post(f"/l/{token}", data={"csrf": csrf_proof(page.get_data(as_text=True))})
        assert answer.status_code == 503
        assert sessions_of(session_factory) == []
    finally:
        app.extensions[REFUSALS_EXTENSION].close()


def test_the_policy_without_sign_in_credentials_opens_nothing(ctx, csrf_secret, token, session_factory):
    policy = ctx.policy.model_copy(update={"links": ctx.policy.links.model_copy(update={"require_slack_sign_in": True})})
    app = create_web_app(replace(ctx, policy=policy), csrf_secret=csrf_secret)
    try:
        client = app.test_client()
        page = client.get(f"/l/{token}")
        answer = client.post(f"/l/{token}", data={"csrf": csrf_proof(page.get_data(as_text=True))})
        assert answer.status_code == 503
        assert "SLACK_CLIENT_ID" in answer.get_data(as_text=True)
        assert sessions_of(session_factory) == []
    finally:
        app.extensions[REFUSALS_EXTENSION].close()


def test_the_domain_refuses_to_redeem_without_a_signed_in_agent_under_the_policy(ctx, token, session_factory):
    policy = ctx.policy.model_copy(update={"links": ctx.policy.links.model_copy(update={"require_slack_sign_in": True})})
    unchanged = state_snapshot(session_factory)
    with pytest.raises(links.SignInRequired):
        links.redeem(replace(ctx, policy=policy), token)
    assert state_snapshot(session_factory) == unchanged


def test_the_flow_cookie_is_encrypted_and_bound_to_the_server_secret(bot, provider, token):
    provider.sign_in_as = AGENT
    browser = http.Session()
    to_slack_and_back(browser, bot, token)
    cookie = browser.cookies.get(bot.sign_in.cookie_name)
    assert token not in cookie
    flow = bot.sign_in.read_flow(cookie)
    assert flow is not None and flow.token == token
    other = SlackSignIn(client_id="c", client_secret="s", issuer=provider.issuer, public_base_url=bot.base, secret=b"x" * 32)
    assert other.read_flow(cookie) is None
    assert bot.sign_in.read_flow(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert "token" not in repr(flow) and token not in repr(flow)
