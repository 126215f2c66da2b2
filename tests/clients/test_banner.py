"""The banner: escaped, under the page's CSP nonce, no close control, self-healing script,
injected into every HTML page of a session (or placed by the template helper), nowhere else."""
from __future__ import annotations

import gzip
import html as html_mod
import re
import time

from impersonation_kit.banner import HOST_STYLE, SCRIPT, SCRIPT_SHA256, csp_nonce, inject, render_banner
from impersonation_kit.context import ImpersonationContext
from tests.clients.conftest import PRODUCT, banner_count, launch

HOSTILE = '<script>alert(1)</script>"\'&<img src=x onerror=alert(2)>'


def hostile_context(**overrides) -> ImpersonationContext:
    values = dict(
        session_id="7c0e8a0e-3b4e-4a53-9d3e-5f1c2b8e9a10", agent=HOSTILE, account=HOSTILE, customer_user=HOSTILE, scope="read_only",
        expires_at=int(time.time()) + 600, account_name=HOSTILE, customer_user_name=HOSTILE, reason=HOSTILE, ticket=HOSTILE,
    )
    values.update(overrides)
    return ImpersonationContext(**values)


def test_every_value_is_escaped():
    markup = render_banner(hostile_context(), end_path='/end"><script>', csrf_token='"><b>', nonce='n"><x')
    assert "<script>alert" not in markup and "<img" not in markup and "<b>" not in markup and 'n"><x' not in markup
    assert html_mod.escape(HOSTILE) in markup
    # Exactly one script element: ours.
    assert len(re.findall(r"<script\b", markup)) == 1


def test_it_shows_what_the_agent_and_the_customer_need_and_has_no_close_control():
    ctx = ImpersonationContext(
        session_id="s", agent="agent1@corp.example", account="acme", customer_user="u-bob", scope="read_only",
        expires_at=1_000_000 + 25 * 60 + 7, account_name="ACME Corp", customer_user_name="Bob", reason="billing", ticket="SUP-1",
    )
    markup = render_banner(ctx, end_path="/_impersonation/end", csrf_token="tok", now=1_000_000)
    for shown in ("ACME Corp (acme)", "Bob (u-bob)", "agent1@corp.example", "SUP-1 — billing", "read only", "25m 07s", f'data-ends-at="{ctx.expires_at}"'):
        assert shown in markup
    assert 'shadowrootmode="closed"' in markup and 'action="/_impersonation/end"' in markup and 'value="tok"' in markup
    assert not re.search(r"close|dismiss|×|&times;", markup.replace("closed", ""), re.I)
    # The page's stylesheets cannot hide the host: its inline declarations are !important.
    for declaration in ("display:block!important", "visibility:visible!important", "opacity:1!important", "z-index:2147483647!important"):
        assert declaration in HOST_STYLE
    # The script puts the host back when removed and restores its attributes.
    assert "MutationObserver" in SCRIPT and "prepend(host)" in SCRIPT and 'setProperty(D[i][0],D[i][1],"important")' in SCRIPT


def test_the_page_csp_nonce_is_used_and_the_script_has_a_stable_hash():
    assert csp_nonce(["default-src 'self'; script-src 'nonce-abc123' 'strict-dynamic'; style-src 'nonce-abc123'"]) == "abc123"
    assert csp_nonce(["default-src 'nonce-zz'"]) == "zz"
    assert csp_nonce(["script-src 'self'"]) is None and csp_nonce([]) is None
    markup = render_banner(hostile_context(), end_path="/e", csrf_token="t", nonce="abc123")
    assert '<script nonce="abc123">' in markup and '<style nonce="abc123">' in markup
    assert SCRIPT_SHA256.startswith("sha256-") and SCRIPT in markup


def test_injection_goes_first_in_body_and_a_page_quoting_the_marker_still_gets_it():
    page = b'<html><body class="x"><p>data-impersonation-kit-banner</p></body></html>'
    out = inject(page, "<B>")
    assert out == b'<html><body class="x"><B><p>data-impersonation-kit-banner</p></body></html>'
    assert inject(b"<p>fragment</p>", "<B>") == b"<B><p>fragment</p>"


def test_every_html_page_of_a_session_has_one_banner_under_the_pages_nonce(demo, handoff):
    _sid, token = handoff()
    agent = demo.test_client()
    launch(agent, token)
    for path in ("/", "/profile"):  # /profile places it with the template helper
        page = agent.get(path, base_url=PRODUCT)
        body = page.get_data(as_text=True)
        nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
        assert banner_count(body) == 1, path
        assert f'<script nonce="{nonce}">' in body and SCRIPT in body
    assert "<impersonation-kit-banner" not in agent.get("/healthz", base_url=PRODUCT).get_data(as_text=True)  # JSON: untouched
    # A customer's own pages never carry it.
    assert banner_count(demo.test_client().get("/login", base_url=PRODUCT).get_data(as_text=True)) == 0


def test_a_gzipped_page_gets_the_banner_too():
    from impersonation_kit.core import Active
    from impersonation_kit.wsgi import ImpersonationMiddleware

    class FakeKit:
        def inject_banner(self, active, html, csp, charset):
            return inject(html, "<B>")

    body = gzip.compress(b"<html><body>hi</body></html>")
    html, headers = ImpersonationMiddleware(None, FakeKit())._with_banner(
        Active(context=hostile_context(), csrf_token="t"), body, [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))]
    )
    assert html == b"<html><body><B>hi</body></html>"
    assert ("Content-Length", str(len(html))) in headers and not any(k.lower() == "content-encoding" for k, _ in headers)


def test_a_head_request_is_left_without_a_body(demo, handoff):
    _sid, token = handoff()
    agent = demo.test_client()
    launch(agent, token)
    head = agent.head("/", base_url=PRODUCT)
    page = agent.get("/", base_url=PRODUCT).get_data()
    assert head.status_code == 200 and head.get_data() == b""
    # It announces the page's own length, not one with a banner it does not carry.
    assert int(head.headers["Content-Length"]) < len(page)
