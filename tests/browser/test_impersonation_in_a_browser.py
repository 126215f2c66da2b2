"""The whole hand-off as a person sees it, in headless Chromium: a request made in Slack (signed
requests against the fake Slack), the DM's one-time link, the landing page, the redemption and
the auto-POST into the demo product; the banner with the right account, agent, scope and time,
which neither script nor CSS can get rid of; read-only refusing a write and read-write
recording one in the audit log with the session id; a customer signed in at the same time
untouched; a revocation from Slack ending the session within the kit's cache time; and "End
session" ending another, the agent's Slack DM saying so; and the bot's signed webhook ending a
session at once and showing the customer's admins a notice. Screenshots go to docs/screenshots/."""
from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain import outbox
from bot.jobs import work
from bot.slack.ids import ActionId, BlockId, CallbackId
from examples.demo_product.app import DEMO_PASSWORD
from tests.browser.conftest import SCREENSHOTS, STATUS_CACHE_SECONDS, World
from tests.e2e.conftest import wait_for
from tests.fakes.response_urls import FakeResponseUrls
from tests.slack.listeners.flow import request_state
from tests.slack.listeners.test_log import click as log_click
from tests.slack.signed import slash_command, view_submission

BANNER = "impersonation-kit-banner"


def _ask_for_a_link(world: World, *, agent: str, scope: str = "read_only") -> tuple[str, dict]:
    """Submit the request modal as `agent`; the link from the DM the bot sent, and that DM."""
    before = len(world.fake.calls_to("chat.postMessage"))
    reply = world.send(view_submission(request_state(account="acme", user="u-bob", scope=scope), user_id=agent, callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    assert reply.status_code == 200 and "errors" not in reply.text, reply.text
    world.delivered()
    dms = [c for c in world.fake.calls_to("chat.postMessage")[before:] if c.args["channel"] == agent]
    links = re.findall(r"<(http://127\.0\.0\.1:\d+/l/[A-Za-z0-9_-]{43})\|", json.dumps(dms[-1].args["blocks"]))
    assert len(links) == 1
    return links[0], dms[-1].response


def _open_session(page, link: str, world: World) -> None:
    page.goto(link)
    page.locator("form button[type=submit]").click()  # the landing page's one button
    page.wait_for_url(f"{world.product_url}/**")


def _banner_texts(page) -> str:
    """The banner's text, read by the browser's DOM agent through its closed shadow root
    (which the page's own scripts cannot enter)."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
    found: list[str] = []

    def walk(node: dict, inside: bool) -> None:
        inside = inside or node.get("nodeName", "").lower() == BANNER
        if inside and node.get("nodeType") == 3:
            found.append(node.get("nodeValue", ""))
        for child in node.get("children", []) + node.get("shadowRoots", []) + ([node["templateContent"]] if "templateContent" in node else []):
            walk(child, inside)

    walk(root, False)
    return " ".join(t.strip() for t in found if t.strip())


def _banner_is_visible(page) -> bool:
    box = page.locator(BANNER).bounding_box()
    return box is not None and box["height"] > 10 and box["width"] > 100 and page.locator(BANNER).is_visible()


def _click_end_session(page) -> None:
    """The End button lives in the closed shadow root: found by the DOM agent, clicked with the mouse."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]

    def find(node: dict) -> dict | None:
        if node.get("nodeName", "").lower() == "button":
            return node
        for child in node.get("children", []) + node.get("shadowRoots", []):
            hit = find(child)
            if hit:
                return hit
        return None

    host = next(n for n in _nodes(root) if n.get("nodeName", "").lower() == BANNER)
    button = find(host)
    assert button is not None
    quad = cdp.send("DOM.getBoxModel", {"backendNodeId": button["backendNodeId"]})["model"]["content"]
    page.mouse.click((quad[0] + quad[4]) / 2, (quad[1] + quad[5]) / 2)


def _nodes(node: dict):
    yield node
    for child in node.get("children", []) + node.get("shadowRoots", []):
        yield from _nodes(child)


def _events(world: World, type_: str) -> list[AuditEvent]:
    with world.container.ctx.sessions() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq)).scalars())


def _customer_signed_in(browser, world: World, email: str):
    """A customer signed into the demo product in a browser context of their own."""
    page = browser.new_context().new_page()
    page.goto(f"{world.product_url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"{world.product_url}/")
    return page


def test_an_impersonation_as_agent_and_customer_see_it(world, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The customer, Bob, is signed into the product in a browser of their own all along.
    customer = _customer_signed_in(browser, world, "bob@acme.example")
    assert customer.locator(BANNER).count() == 0

    # 1. A read-only session: the banner, and what cannot get rid of it.
    agent_context = browser.new_context(viewport={"width": 1100, "height": 700})
    agent = agent_context.new_page()
    link, _dm = _ask_for_a_link(world, agent="UAGENT1")
    _open_session(agent, link, world)
    assert _banner_is_visible(agent)
    shown = _banner_texts(agent)
    for expected in ("ACME Corp (acme)", "Bob Builder (u-bob)", "agent1@corp.example", "read only", "SUP-1"):
        assert expected in shown, (expected, shown)
    assert re.search(r"\d+m \d+s|\d+ min", shown), shown  # time left
    agent.screenshot(path=str(SCREENSHOTS / "banner.png"))

    agent.evaluate(f"document.querySelector('{BANNER}').remove()")
    wait_for(lambda: agent.locator(BANNER).count() == 1)  # put back at once
    # the page's own CSS (allowed by its CSP nonce, as the product's styles are) tries to hide it
    agent.evaluate(
        """css => { const s = document.createElement('style'); s.nonce = document.querySelector('[nonce]').nonce;
                    s.textContent = css; document.head.appendChild(s); }""",
        f"{BANNER}{{display:none!important;visibility:hidden!important}} body>*:first-child{{opacity:0!important}}",
    )
    agent.evaluate(f"document.querySelector('{BANNER}').setAttribute('hidden', '')")
    assert _banner_is_visible(agent)
    agent.goto(f"{world.product_url}/profile")  # the next action: still there
    assert _banner_is_visible(agent)

    # read-only: a write is refused, and nothing is written
    agent.goto(f"{world.product_url}/")
    agent.fill("textarea[name=body]", "written while impersonating")
    with agent.expect_response(lambda r: r.url.endswith("/notes")) as refused:
        agent.locator("#add-note button[type=submit]").click()
    assert refused.value.status == 403
    assert "written while impersonating" not in customer.goto(f"{world.product_url}/").text()

    # the customer's own session was never touched
    assert customer.locator(BANNER).count() == 0
    assert "Bob Builder" in customer.content()

    # 2. Security revokes it from Slack: the product stops it within its cache time.
    (session_id,) = [e.session_id for e in _events(world, "session.redeemed")]
    assert world.send(slash_command(f"revoke {session_id}", user_id="USECURITY1")).status_code == 200
    revoked_at = time.monotonic()

    def ended_page() -> bool:
        agent.goto(f"{world.product_url}/")
        return "Impersonation ended" in agent.content()

    wait_for(ended_page, timeout=STATUS_CACHE_SECONDS + 5)
    assert time.monotonic() - revoked_at <= STATUS_CACHE_SECONDS + 5
    agent.screenshot(path=str(SCREENSHOTS / "ended.png"))
    assert agent.locator(BANNER).count() == 0

    # 3. A read-write session (a senior agent): a write goes through and reaches the audit log.
    writer = browser.new_context().new_page()
    link, _dm = _ask_for_a_link(world, agent="USENIOR1", scope="read_write")
    _open_session(writer, link, world)
    assert "read and write" in _banner_texts(writer)
    writer.fill("textarea[name=body]", "fixed the invoice address")
    writer.locator("#add-note button[type=submit]").click()
    writer.wait_for_url(f"{world.product_url}/")
    recorded = wait_for(lambda: _events(world, "action.recorded"))
    write_session = [e for e in _events(world, "session.redeemed") if e.actor_slack_id == "USENIOR1"][0].session_id
    assert recorded[0].session_id == write_session and json.loads(recorded[0].details)["action"] == "note.create"
    answer = world.send(slash_command("account:acme", user_id="USECURITY1", command="/impersonation-log"))
    assert answer.status_code == 200
    shown = json.dumps(answer.json()["blocks"])
    assert "<@USENIOR1> as *Bob Builder*" in shown and "1 write action" in shown
    export = next(b for b in answer.json()["blocks"] if b.get("block_id") == BlockId.LOG_ACTIONS.value)
    csv_value = next(e["value"] for e in export["elements"] if e["action_id"] == ActionId.LOG_EXPORT_CSV.value)
    with FakeResponseUrls() as hooks:
        assert log_click(world.send, ActionId.LOG_EXPORT_CSV, csv_value, user_id="USECURITY1", response_url=hooks.issue()).status_code == 200
        hooks.wait_for(1)
    (exported,) = world.fake.files.values()
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    (written,) = [r for r in rows if r["session_id"] == write_session]
    assert written["write_actions"] == "1", written

    # 4. The agent ends a session with the banner's button: the bot ends it, the DM says so.
    ender = browser.new_context().new_page()
    link, dm = _ask_for_a_link(world, agent="UAGENT1")
    _open_session(ender, link, world)
    with ender.expect_navigation():
        _click_end_session(ender)
    assert "You have ended the impersonation session" in ender.content()
    (ended,) = _events(world, "session.ended")
    assert json.loads(ended.details)["via"] == "product"
    work.deliver_outbox(world.container.ctx)  # the scheduler's next tick
    message = world.fake.messages[(dm["channel"], dm["ts"])]
    assert "ended" in (message.text + json.dumps(message.blocks)).lower()
    world.fake.assert_no_violations()


@pytest.mark.parametrize("status_cache_seconds", [600])
def test_a_revocation_reaches_the_product_by_webhook_long_before_its_status_cache(world, browser):
    """With the product trusting a session's status for 10 minutes, only the bot's signed
    `session.revoked` webhook can end it at once; the customer's admins see each event as a
    "support accessed your account" notice."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    agent = browser.new_context().new_page()
    link, _dm = _ask_for_a_link(world, agent="UAGENT1")
    _open_session(agent, link, world)
    agent.goto(f"{world.product_url}/")
    assert _banner_is_visible(agent)  # the status is now cached as live
    (session_id,) = [e.session_id for e in _events(world, "session.redeemed")]

    work.deliver_outbox(world.container.ctx)  # the scheduler's outbox job: session.started goes out
    admin = _customer_signed_in(browser, world, "alice@acme.example")
    admin.goto(f"{world.product_url}/support-access")
    assert f"Support started a session in your account: agent1@corp.example — session {session_id}" in admin.locator("#notices").inner_text()

    assert world.send(slash_command(f"revoke {session_id}", user_id="USECURITY1")).status_code == 200
    work.deliver_outbox(world.container.ctx)  # session.revoked goes out
    agent.goto(f"{world.product_url}/")
    assert "Impersonation ended" in agent.content()  # at once: the cache had 10 minutes left
    assert agent.locator(BANNER).count() == 0

    admin.goto(f"{world.product_url}/support-access")
    notices = admin.locator("#notices").inner_text()
    assert f"Support's session in your account was revoked: agent1@corp.example — session {session_id}" in notices
    admin.screenshot(path=str(SCREENSHOTS / "support-access.png"))
    assert [r.state for r in outbox.rows(world.container.ctx, kinds=[outbox.Kind.WEBHOOK])] == ["sent", "sent"]
