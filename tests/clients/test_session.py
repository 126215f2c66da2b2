"""An impersonation session in the demo product (examples/demo_product) through the kit's
WSGI middleware, against the real bot over HTTP: the kit's own cookie, isolation from the
product's sessions, scope, stamping, and ending (time limit, revocation, End button)."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone

from freezegun import freeze_time

from bot.domain import revocation
from bot.domain.product_api import session_report
from examples.demo_product.app import DEMO_PASSWORD
from tests.clients.conftest import PRODUCT, banner_count, form_field, launch

END = "/_impersonation/end"


def sign_in(client, email: str):
    client.get("/login", base_url=PRODUCT)
    response = client.post("/login", data={"email": email, "password": DEMO_PASSWORD}, base_url=PRODUCT)
    assert response.status_code == 302
    return response


def csrf_of(client) -> str:
    return form_field(client.get("/", base_url=PRODUCT).get_data(as_text=True), "/notes", "csrf")


def impersonate(demo, handoff, **overrides):
    sid, token = handoff(**overrides)
    agent = demo.test_client()
    response = launch(agent, token)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    return sid, agent, response


def test_the_kit_cookie_is_its_own_httponly_lax_and_expires_with_the_session(demo, handoff):
    sid, _agent, response = impersonate(demo, handoff)
    (cookie,) = response.headers.getlist("Set-Cookie")
    name, _, rest = cookie.partition("=")
    attributes = [a.strip() for a in rest.split(";")[1:]]
    assert name == "impersonation_kit" != demo.config["SESSION_COOKIE_NAME"]
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes) and "Secure" not in attributes
    max_age = int(next(a for a in attributes if a.startswith("Max-Age=")).split("=")[1])
    assert 29 * 60 <= max_age <= 30 * 60  # the session's 30 minutes, not a browser session
    secure = launch(demo.test_client(), handoff(account="globex", user="u-carol")[1])
    assert secure.status_code == 303
    over_https = demo.test_client().post("/impersonation/launch", data={"token": handoff(account="initech", user="u-dave")[1]}, base_url="https://product.test")
    assert "Secure" in [a.strip() for a in over_https.headers["Set-Cookie"].split(";")]


def test_the_agent_acts_as_the_customer_with_a_banner_and_the_customers_own_session_is_untouched(demo, handoff):
    customer = demo.test_client()
    sign_in(customer, "bob@acme.example")
    customer_cookie = customer.get_cookie("demo_session", domain="product.test").value
    sid, agent, _ = impersonate(demo, handoff, scope="read_write", user="u-bob")

    page = agent.get("/", base_url=PRODUCT)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="who">Bob Builder (acme)' in html
    assert banner_count(html) == 1
    for shown in ("ACME Corp (acme)", "Bob Builder (u-bob)", "senior1@corp.example", "SUP-1 — customer ticket about billing", "read and write", "End session"):
        assert shown in html
    assert page.headers["Cache-Control"] == "no-store"

    # The agent's writes and reads never touch the product's own cookie, and the customer
    # (another browser) goes on as before, without a banner.
    assert agent.get_cookie("demo_session", domain="product.test") is None or agent.get_cookie("demo_session", domain="product.test").value != customer_cookie
    agent.post("/notes", data={"body": "written by support", "csrf": csrf_of(agent)}, base_url=PRODUCT)
    theirs = customer.get("/", base_url=PRODUCT).get_data(as_text=True)
    assert customer.get_cookie("demo_session", domain="product.test").value == customer_cookie or customer.get_cookie("demo_session", domain="product.test") is not None
    assert banner_count(theirs) == 0 and "written by support" in theirs and 'id="who">Bob Builder (acme)' in theirs
    assert f'&#34;session_id&#34;: &#34;{sid}&#34;' in theirs  # the write is stamped with the session


def test_read_only_refuses_writes_with_a_page_or_json_and_lets_the_end_route_through(demo, handoff):
    _sid, agent, _ = impersonate(demo, handoff, scope="read_only")
    token = csrf_of(agent)
    refused = agent.post("/notes", data={"body": "nope", "csrf": token}, base_url=PRODUCT)
    assert refused.status_code == 403 and "read-only" in refused.get_data(as_text=True)
    for method in ("PUT", "PATCH", "DELETE"):
        as_json = agent.open("/notes", method=method, json={"body": "nope"}, base_url=PRODUCT)
        assert as_json.status_code == 403 and as_json.get_json()["error"] == "read_only_session"
    assert "nope" not in agent.get("/", base_url=PRODUCT).get_data(as_text=True)
    ended = agent.post(END, data={"csrf": form_field(agent.get("/", base_url=PRODUCT).get_data(as_text=True), END, "csrf")}, base_url=PRODUCT)
    assert ended.status_code == 200 and "Impersonation ended" in ended.get_data(as_text=True)


def test_writes_are_stamped_in_log_records(demo, handoff, caplog):
    sid, agent, _ = impersonate(demo, handoff, scope="read_write")
    with caplog.at_level(logging.INFO, logger="demo_product"):
        agent.post("/profile", data={"name": "Bobby", "csrf": csrf_of(agent)}, base_url=PRODUCT)
    (record,) = [r for r in caplog.records if r.name == "demo_product" and "renamed" in r.getMessage()]
    assert record.impersonation_context == {"session_id": sid, "agent": "senior1@corp.example", "account": "acme"}


def test_a_revoked_session_stops_at_the_first_request_after_the_cache_time(demo, handoff, ctx):
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with freeze_time(start) as clock:
        sid, agent, _ = impersonate(demo, handoff)
        assert agent.get("/", base_url=PRODUCT).status_code == 200  # status cached as live
        revoked = revocation.revoke_session(ctx, sid, actor_slack_id="USECURITY1", source="command")
        assert isinstance(revoked, revocation.Revoked)
        clock.tick(timedelta(seconds=14))
        assert agent.get("/", base_url=PRODUCT).status_code == 200  # within the cache time
        clock.tick(timedelta(seconds=2))
        stopped = agent.get("/", base_url=PRODUCT)
    assert stopped.status_code == 403 and "revoked" in stopped.get_data(as_text=True)
    assert "impersonation_kit=;" in stopped.headers["Set-Cookie"] and "Max-Age=0" in stopped.headers["Set-Cookie"]
    assert agent.get_cookie("impersonation_kit", domain="product.test") is None
    assert agent.get("/", base_url=PRODUCT).status_code == 302  # back to the product's own login


def test_a_pushed_end_stops_the_session_at_once(demo, handoff, kit):
    sid, agent, _ = impersonate(demo, handoff)
    assert agent.get("/", base_url=PRODUCT).status_code == 200
    kit.end_now(sid)  # what a session.revoked webhook does
    assert agent.get("/", base_url=PRODUCT).status_code == 403


def test_the_time_limit_ends_the_session(demo, handoff):
    _sid, agent, _ = impersonate(demo, handoff, duration_minutes=15)
    with freeze_time(datetime.now(timezone.utc) + timedelta(minutes=16)):
        over = agent.get("/", base_url=PRODUCT)
    assert over.status_code == 403 and "time limit" in over.get_data(as_text=True)


def test_the_bot_unreachable_fails_closed(demo_config, handoff, bot):
    from examples.demo_product.app import create_app

    app = create_app({**demo_config, "API_URL": "http://127.0.0.1:9", "STATUS_CACHE_SECONDS": 0})
    _sid, agent, _ = impersonate(app, handoff)
    assert agent.get("/", base_url=PRODUCT).status_code == 503
    app.extensions["impersonation_kit"].reporter.close()


def test_end_session_is_csrf_protected_and_ends_the_session(demo, handoff, ctx):
    sid, agent, _ = impersonate(demo, handoff)
    html = agent.get("/", base_url=PRODUCT).get_data(as_text=True)
    for forged in ("", "x" * 43, form_field(html, END, "csrf")[:-2] + "AA"):
        refused = agent.post(END, data={"csrf": forged}, base_url=PRODUCT)
        assert refused.status_code == 403 and agent.get("/", base_url=PRODUCT).status_code == 200
    # Another session's token does not end this one.
    other_sid, other, _ = impersonate(demo, handoff, account="globex", user="u-carol")
    other_token = form_field(other.get("/", base_url=PRODUCT).get_data(as_text=True), END, "csrf")
    assert agent.post(END, data={"csrf": other_token}, base_url=PRODUCT).status_code == 403
    ended = agent.post(END, data={"csrf": form_field(html, END, "csrf")}, base_url=PRODUCT)
    assert ended.status_code == 200 and "Max-Age=0" in ended.headers["Set-Cookie"]
    assert agent.get("/", base_url=PRODUCT).status_code == 302
    assert other.get("/", base_url=PRODUCT).status_code == 200


def test_the_api_key_never_reaches_the_browser(demo, handoff, api_key):
    sid, agent, launched = impersonate(demo, handoff, scope="read_write")
    seen = [launched]
    seen.append(agent.get("/", base_url=PRODUCT))
    seen.append(agent.get("/profile", base_url=PRODUCT))
    seen.append(agent.post("/notes", data={"body": "hello", "csrf": csrf_of(agent)}, base_url=PRODUCT))
    seen.append(agent.post(END, data={"csrf": form_field(seen[1].get_data(as_text=True), END, "csrf")}, base_url=PRODUCT))
    secret_part = api_key.split("_", 2)[2]  # ibk_<key id>_<secret>; the secret may hold "_" itself
    for response in seen:
        blob = response.get_data(as_text=True) + json.dumps(list(response.headers.items()))
        assert api_key not in blob and secret_part not in blob


def test_while_the_bot_is_down_requests_are_refused_without_asking_it_each_time(demo_config, handoff, bot):
    from examples.demo_product.app import create_app

    app = create_app({**demo_config, "STATUS_CACHE_SECONDS": 0})
    kit = app.extensions["impersonation_kit"]
    _sid, agent, _ = impersonate(app, handoff)
    calls = []
    real = kit.api.session_status

    def failing(session_id):
        calls.append(session_id)
        from impersonation_kit.botapi import BotUnavailable

        raise BotUnavailable("down")

    with freeze_time(datetime.now(timezone.utc)) as clock:
        kit.api.session_status = failing
        assert [agent.get("/", base_url=PRODUCT).status_code for _ in range(5)] == [503] * 5
        assert len(calls) == 1  # one try, then refused at once for a moment
        kit.api.session_status = real
        clock.tick(timedelta(seconds=3))
        assert agent.get("/", base_url=PRODUCT).status_code == 200  # back as soon as the bot is
    kit.reporter.close()
