"""The CSRF proof and header builders as plain functions."""
from __future__ import annotations

import pytest

from bot.web.security import CsrfFailure, LinkCsrf, content_security_policy, origin_of

TOKEN = "T" * 43
OTHER_TOKEN = "U" * 43
NONCE = "N" * 43


@pytest.fixture
def csrf():
    return LinkCsrf.for_base_url(b"k" * 32, "http://bot.test")


def check(csrf, *, cookie=NONCE, submitted=None, origin=None, fetch_site=None, token=TOKEN):
    if submitted is None:
        submitted = csrf.proof(NONCE, TOKEN)
    return csrf.check(token, cookie=cookie, submitted=submitted, origin=origin, fetch_site=fetch_site)


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        LinkCsrf.for_base_url(b"k" * 31, "http://bot.test")


def test_proof_is_bound_to_secret_nonce_and_token(csrf):
    proof = csrf.proof(NONCE, TOKEN)
    assert len(proof) == 64
    assert proof == csrf.proof(NONCE, TOKEN)
    assert proof != csrf.proof("M" * 43, TOKEN)
    assert proof != csrf.proof(NONCE, OTHER_TOKEN)
    assert proof != LinkCsrf.for_base_url(b"j" * 32, "http://bot.test").proof(NONCE, TOKEN)


def test_a_matching_post_passes(csrf):
    assert check(csrf) is None
    assert check(csrf, origin="http://bot.test", fetch_site="same-origin") is None
    assert check(csrf, origin="null", fetch_site="none") is None


@pytest.mark.parametrize(
    "changes, failure",
    [
        ({"cookie": None}, CsrfFailure.MISSING_COOKIE),
        ({"cookie": "short"}, CsrfFailure.MISSING_COOKIE),
        ({"submitted": ""}, CsrfFailure.MISSING_PROOF),
        ({"submitted": "0" * 64}, CsrfFailure.BAD_PROOF),
        ({"cookie": "M" * 43}, CsrfFailure.BAD_PROOF),
        ({"token": OTHER_TOKEN}, CsrfFailure.BAD_PROOF),
        ({"origin": "https://evil.example"}, CsrfFailure.CROSS_ORIGIN),
        ({"origin": "https://bot.test"}, CsrfFailure.CROSS_ORIGIN),  # another scheme is another origin
        ({"origin": "http://bot.test:8080"}, CsrfFailure.CROSS_ORIGIN),
        ({"fetch_site": "cross-site"}, CsrfFailure.CROSS_SITE_FETCH),
        ({"fetch_site": "same-site"}, CsrfFailure.CROSS_SITE_FETCH),
    ],
)
def test_each_mismatch_is_refused_with_its_cause(csrf, changes, failure):
    assert check(csrf, **changes) is failure


def test_a_well_formed_nonce_is_kept_and_anything_else_replaced(csrf):
    assert csrf.nonce(NONCE) == NONCE
    fresh = csrf.nonce("not-a-nonce")
    assert fresh != "not-a-nonce" and len(fresh) == 43
    assert csrf.nonce(None) != csrf.nonce(None)


@pytest.mark.parametrize(
    "base_url, name, path, secure",
    [("http://localhost:3000", "link_csrf", "/l/", False), ("https://bot.example.com", "__Host-link_csrf", "/", True)],
)
def test_cookie_settings_follow_the_public_scheme(base_url, name, path, secure):
    csrf = LinkCsrf.for_base_url(b"k" * 32, base_url)
    assert (csrf.cookie_name, csrf.cookie_path, csrf.secure) == (name, path, secure)


@pytest.mark.parametrize(
    "url, origin",
    [
        ("http://bot.test", "http://bot.test"),
        ("HTTPS://Bot.Example.COM:443/path?q=1", "https://bot.example.com"),
        ("http://bot.test:80/", "http://bot.test"),
        ("http://bot.test:3000/x", "http://bot.test:3000"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
    ],
)
def test_origin_of(url, origin):
    assert origin_of(url) == origin


@pytest.mark.parametrize("url", ["", "/relative", "bot.test"])
def test_origin_of_refuses_relative_urls(url):
    with pytest.raises(ValueError):
        origin_of(url)


def test_content_security_policy():
    policy = content_security_policy("abc", form_action=("'self'", "https://product.example"))
    assert policy == (
        "default-src 'none'; script-src 'nonce-abc'; style-src 'nonce-abc'; "
        "form-action 'self' https://product.example; frame-ancestors 'none'; base-uri 'none'"
    )
    assert "form-action 'none'" in content_security_policy("abc", form_action=())
