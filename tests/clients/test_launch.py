"""The launch route: only a genuine, fresh, unused hand-off from the bot opens a session.
Verified against the real bot's JWKS over HTTP; forged tokens are built by hand."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from freezegun import freeze_time

from impersonation_kit import HandoffVerifier, KitConfig, LaunchRefused, MemoryJtiStore, SqliteJtiStore
from tests.clients.conftest import BOT_ISSUER, LAUNCH_PATH, PRODUCT, launch


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict) -> str:
    return b64(json.dumps(value).encode())


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def header_of(token: str) -> dict:
    return jwt.get_unverified_header(token)


def sign_with(key, claims: dict, header: dict) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers=header)


@pytest.fixture
def verifier(bot, api_key):
    def _make(**overrides) -> HandoffVerifier:
        values = dict(bot_url=BOT_ISSUER, launch_url=PRODUCT + LAUNCH_PATH, api_key=api_key, secret=b"k" * 32, jwks_url=f"{bot.url}/.well-known/jwks.json")
        values.update(overrides)
        return HandoffVerifier(KitConfig(**values), MemoryJtiStore())

    return _make


def test_a_genuine_hand_off_verifies_once_against_the_bots_jwks_over_http(verifier, handoff):
    sid, token = handoff()
    check = verifier()
    assert check.verify(token)["sid"] == sid
    with pytest.raises(LaunchRefused, match="jti replayed"):
        check.verify(token)


def test_forged_tokens_are_refused(verifier, handoff, signing_key):
    _sid, token = handoff()
    claims, header = claims_of(token), header_of(token)
    public_pem = signing_key.private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64json({**header, 'alg': 'HS256'})}.{b64json(claims)}"
    hs256_with_public_key = f"{signing_input}.{b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())}"
    x = json.loads(json.dumps(signing_key.public_jwk()))["x"]
    hs256_with_jwk_x = f"{signing_input}.{b64(hmac.new(x.encode(), signing_input.encode(), hashlib.sha256).digest())}"
    alg_none = f"{b64json({**header, 'alg': 'none'})}.{b64json(claims)}."
    stranger = Ed25519PrivateKey.generate()
    forged = {
        "alg none": alg_none,
        "HS256 with the public key (PEM)": hs256_with_public_key,
        "HS256 with the JWK's x": hs256_with_jwk_x,
        "another key, same kid": sign_with(stranger, claims, header),
        "unknown kid": sign_with(stranger, claims, {**header, "kid": "not-a-bot-key"}),
        "no kid": sign_with(stranger, claims, {"typ": header["typ"]}),
        "wrong typ": sign_with(signing_key.private_key, claims, {**header, "typ": "JWT"}),
        "wrong aud": sign_with(signing_key.private_key, {**claims, "aud": "http://other.test/launch"}, header),
        "wrong iss": sign_with(signing_key.private_key, {**claims, "iss": "http://evil.test"}, header),
        "expired": sign_with(signing_key.private_key, {**claims, "exp": int(time.time()) - 60, "jti": str(uuid.uuid4())}, header),
        "not yet valid": sign_with(signing_key.private_key, {**claims, "nbf": int(time.time()) + 600, "jti": str(uuid.uuid4())}, header),
        "no jti": sign_with(signing_key.private_key, {k: v for k, v in claims.items() if k != "jti"}, header),
        "no act": sign_with(signing_key.private_key, {k: v for k, v in claims.items() if k != "act"}, header),
        "bad scope": sign_with(signing_key.private_key, {**claims, "scope": "admin"}, header),
        "tampered payload": token.split(".")[0] + "." + b64json({**claims, "scope": "read_write"}) + "." + token.split(".")[2],
        "garbage": "not.a.jwt",
    }
    check = verifier()
    for name, bad in forged.items():
        with pytest.raises(LaunchRefused):
            check.verify(bad)
            pytest.fail(f"{name} was accepted")
    # None of them used up the genuine token's jti.
    assert check.verify(token)["jti"] == claims["jti"]


def test_a_small_clock_skew_is_tolerated_and_no_more(verifier, handoff):
    _sid, token = handoff()
    exp = claims_of(token)["exp"]
    with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(exp + 3))):
        assert verifier().verify(token)
    with freeze_time(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(exp + 30))):
        with pytest.raises(LaunchRefused):
            verifier().verify(token)


def test_no_key_to_be_had_fails_closed(verifier, handoff):
    _sid, token = handoff()
    with pytest.raises(LaunchRefused, match="no verification key"):
        verifier(jwks_url="http://127.0.0.1:9/.well-known/jwks.json").verify(token)


def test_a_rotated_key_is_fetched_again_by_its_new_kid(bot, api_key, handoff, ctx, monkeypatch, tmp_path):
    from bot.domain.keys import load_or_create_signing_key

    check = HandoffVerifier(
        KitConfig(bot_url=BOT_ISSUER, launch_url=PRODUCT + LAUNCH_PATH, api_key=api_key, secret=b"k" * 32, jwks_url=f"{bot.url}/.well-known/jwks.json", jwks_refetch_cooldown_seconds=0),
        MemoryJtiStore(),
    )
    _sid, first = handoff()
    assert check.verify(first)  # the old key is now cached
    new_key = load_or_create_signing_key(tmp_path / "rotated.pem", allow_create=True)
    monkeypatch.setattr(ctx, "signing_key", new_key)  # the bot rotated: its JWKS serves the new key
    _sid2, second = handoff(account="globex", user="u-carol", reason="a second customer ticket")
    assert header_of(second)["kid"] == new_key.kid != header_of(first)["kid"]
    assert check.verify(second)["sub"] == "u-carol"


def test_jti_stores_accept_each_jti_once_and_forget_it_after_its_expiry(tmp_path):
    for store in (MemoryJtiStore(), SqliteJtiStore(str(tmp_path / "jti.db"))):
        assert store.add("a", until=100, now=50) is True
        assert store.add("a", until=100, now=60) is False
        assert store.add("a", until=300, now=200) is True  # purged after its expiry
    shared_a, shared_b = SqliteJtiStore(str(tmp_path / "shared.db")), SqliteJtiStore(str(tmp_path / "shared.db"))
    assert shared_a.add("j", until=time.time() + 60) and not shared_b.add("j", until=time.time() + 60)


def test_the_launch_route_refuses_a_replayed_post_and_a_get(demo, handoff):
    _sid, token = handoff()
    first = launch(demo.test_client(), token)
    assert first.status_code == 303
    again = launch(demo.test_client(), token)  # a copy of the form post, another browser
    assert again.status_code == 403 and "Set-Cookie" not in again.headers
    assert token not in again.get_data(as_text=True)
    assert demo.test_client().get(LAUNCH_PATH, base_url=PRODUCT).status_code == 405
