"""The README's first command without Slack credentials, in headless Chromium: `serve` starts
local mode (the real bot under gunicorn with its scheduler, the local workspace, the demo
product) and a visitor walks the main job as the demo's personas — an agent asks for access
to a sensitive account, a manager approves it, the agent follows the link into the demo
product and sees the banner, security watches the feed and the alert in #security, revokes
from the alert, looks the session up with /impersonation-log, posts a digest and opens the
bot's Home tab. Screenshots
of the workspace go to docs/screenshots/."""
from __future__ import annotations

import re

from examples.demo_product.app import DEMO_PASSWORD
from tests.browser.conftest import SCREENSHOTS
from tests.e2e.conftest import wait_for
from tests.local.conftest import local_serve  # noqa: F401 — the fixture

#: liveness only: how long a step may take before the test gives up on it
STEP_MS = 30_000
#: an approved session's alert comes with the scheduler's anomaly sweep (each minute in the demo policy)
SWEEP_MS = 150_000
AGENT, MANAGER, SECURITY = "U0ANAAGENT", "U0MIAMANAGER", "U0SAMSECURITY"


def _as(page, workspace: str, persona: str, channel: str | None = None) -> None:
    page.goto(f"{workspace}/?as={persona}" + (f"&channel={channel}" if channel else ""))
    page.wait_for_selector("#channels a", timeout=STEP_MS)


def _command(page, text: str) -> None:
    page.fill("#composer-text", text)
    page.locator("#composer button[type=submit]").click()


def _pick(page, block_id: str, query: str, option: str) -> None:
    """An external select: type, wait for the bot's options, choose one."""
    box = page.locator(f".bk-external[data-block-id='{block_id}']")
    box.locator(".bk-external-query").fill(query)
    box.locator(".bk-option", has_text=option).click(timeout=STEP_MS)


def test_the_first_command_shows_the_whole_flow_in_a_local_workspace(local_serve, browser):
    workspace = local_serve.workspace
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # Block Kit confirmations

    # 1. Ana, a support agent, asks for access to globex (sensitive: it needs an approval).
    _as(page, workspace, AGENT)
    _command(page, "/impersonate")
    modal = page.locator(".modal")
    modal.wait_for(timeout=STEP_MS)
    assert modal.locator("h3").inner_text() == "Impersonate a user"
    _pick(page, "account", "glo", "Globex")
    _pick(page, "user", "car", "Carol")
    modal.locator("[data-block-id='reason'] textarea").fill("Carol cannot see her invoices")
    modal.locator("[data-block-id='ticket'] input").fill("SUP-42")
    page.screenshot(path=str(SCREENSHOTS / "local-workspace-modal.png"))
    modal.locator("button[type=submit]").click()
    page.wait_for_selector(".modal", state="detached", timeout=STEP_MS)
    page.locator(".msg", has_text="approval").first.wait_for(timeout=STEP_MS)

    # 2. Mia, the manager, approves it in her DM with the bot.
    _as(page, workspace, MANAGER)
    ask = page.locator(".msg", has=page.locator("button", has_text="Approve"))
    ask.wait_for(timeout=STEP_MS)
    assert "Ana Agent" in ask.inner_text() and "Globex" in ask.inner_text()
    assert "<@" not in ask.inner_text()  # mentions shown as names
    page.screenshot(path=str(SCREENSHOTS / "local-workspace-approval.png"))
    ask.locator("button", has_text="Approve").click()
    page.locator(".msg", has_text="Approved").first.wait_for(timeout=STEP_MS)

    # 3. Ana follows the one-time link into the demo product: the banner is there.
    _as(page, workspace, AGENT)
    link = page.locator(".msg a[href*='/l/']").first
    link.wait_for(timeout=STEP_MS)
    with context.expect_page() as opened:
        link.click()
    product = opened.value
    product.locator("form button[type=submit]").click(timeout=STEP_MS)  # the landing page's one button
    product.wait_for_url(re.compile(r"http://127\.0\.0\.1:\d+/"), timeout=STEP_MS)
    banner = product.locator("impersonation-kit-banner")
    banner.wait_for(timeout=STEP_MS)
    assert banner.is_visible()

    # 4. Sam, security, sees the live feed and the alert in #security, and revokes from the alert.
    _as(page, workspace, SECURITY, "C0SECURITY")
    feed = page.locator(".msg", has_text="Carol", has=page.locator("h3", has_text="Impersonation"))
    alert = page.locator(".msg", has=page.locator("h3", has_text="Alert:"))
    alert.first.wait_for(timeout=SWEEP_MS)
    assert feed.count() == 1 and "Globex" in alert.first.inner_text(), page.locator("#messages").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "local-workspace-security.png"))
    alert.first.locator("button", has_text=re.compile("^Revoke")).first.click()
    feed.filter(has_text="evoked").wait_for(timeout=STEP_MS)  # the feed's message, edited in place

    # ...and the product ends the agent's session (within the kit's status cache time)
    def ended() -> bool:
        product.goto(product.url)
        return "Impersonation ended" in product.content() or product.locator("impersonation-kit-banner").count() == 0

    wait_for(ended, timeout=40)

    # ...and Carol, the customer, reads on her Support access page what support did (the bot's webhooks)
    origin = re.match(r"https?://[^/]+", product.url).group(0)
    customer = browser.new_context().new_page()
    customer.goto(f"{origin}/login")
    customer.fill("input[name=email]", "carol@globex.example")
    customer.fill("input[name=password]", DEMO_PASSWORD)
    customer.locator("form button[type=submit]").click()
    customer.wait_for_load_state()

    def notified() -> bool:
        customer.goto(f"{origin}/support-access")
        return "was revoked" in customer.content()

    wait_for(notified, timeout=40)

    # 5. /impersonation-log globex answers Sam alone, with the revoked session.
    _command(page, "/impersonation-log account:globex")
    answer = page.locator(".msg.ephemeral", has_text="Ana Agent")
    answer.first.wait_for(timeout=STEP_MS)
    assert "Carol" in answer.first.inner_text()

    # 6. The weekly access review, posted now: the summary and its files in #security.
    page.locator("#digest-button").click()
    page.locator(".msg", has_text="review").first.wait_for(timeout=STEP_MS)
    page.locator(".file a", has_text="CSV").first.wait_for(timeout=STEP_MS)

    # 7. Sam's Home tab: opening it sends app_home_opened; the bot publishes what Sam watches
    page.locator("#channels a", has_text="Home").click()
    page.locator(".home-view").wait_for(timeout=STEP_MS)

    # the bot broke none of Slack's rules on the way
    assert page.locator("#problems").is_hidden(), page.locator("#problems").inner_text()
    context.close()
