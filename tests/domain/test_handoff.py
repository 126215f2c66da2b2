"""The hand-off JWT and its strict verification (DESIGN.md
"The hand-off", step 4). Attack tokens are built by hand where PyJWT refuses to build them."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from freezegun import freeze_time
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.domain.handoff import ALGORITHM, REQUIRED_CLAIMS, TOKEN_TYPE, HandoffClaims, HandoffRefused, mint_handoff, verify_handoff
from bot.domain.keys import SigningKey

ISSUER = "https://bot.example.com"
AUDIENCE = "https://product.example.com/impersonation/launch"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _clock_at_now():
    """Every token here is minted relative to NOW, read when the module was imported: the
    clock is frozen there, or a test reached minutes later (a long suite) finds a token
    meant to be "not yet valid" already valid."""
    with freeze_time(NOW):
        yield


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(**overrides) -> HandoffClaims:
    values = dict(
        issuer=ISSUER,
        audience=AUDIENCE,
        customer_user="u-bob",
        agent="agent1@corp.example",
        session_id="6f1c2d3e-0000-4000-8000-000000000001",
        account="acme",
        scope="read_only",
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        jti="0b7e6a52-0000-4000-8000-000000000002",
    )
    values.update(overrides)
    return HandoffClaims(**values)


@pytest.fixture
def jwks(signing_key):
    return {"keys": [signing_key.public_jwk()]}


@pytest.fixture
def good(signing_key):
    return mint_handoff(signing_key, claims())


def payload_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def header_of(key: SigningKey, **overrides) -> dict:
    return {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid, **overrides}


def signed(key: SigningKey, payload: dict, **header) -> str:
    """An EdDSA token signed with our real key, with whatever header and payload we like."""
    return jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers=header_of(key, **header))


def verify(token: str, jwks: dict, **overrides) -> dict:
    return verify_handoff(token, jwks, **{"issuer": ISSUER, "audience": AUDIENCE, **overrides})


def test_a_minted_token_verifies_with_the_design_claims(good, jwks, signing_key):
    assert jwt.get_unverified_header(good) == {"alg": "EdDSA", "typ": "impersonation+jwt", "kid": signing_key.kid}
    assert verify(good, jwks) == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-bob",
        "act": {"sub": "agent1@corp.example"},
        "sid": "6f1c2d3e-0000-4000-8000-000000000001",
        "account": "acme",
        "scope": "read_only",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=30)).timestamp()),
        "jti": "0b7e6a52-0000-4000-8000-000000000002",
    }


def test_alg_none_is_refused(good, jwks, signing_key):
    unsigned = f"{b64url_json(header_of(signing_key, alg='none'))}.{good.split('.')[1]}."
    with pytest.raises(HandoffRefused, match="not allowed"):
        verify(unsigned, jwks)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(lambda key: key.public_pem().encode(), id="pem"),
        pytest.param(lambda key: key.public_raw, id="raw-bytes"),
        pytest.param(lambda key: key.public_jwk()["x"].encode(), id="jwk-x"),
        pytest.param(lambda key: json.dumps(key.public_jwk()).encode(), id="jwk-json"),
    ],
)
def test_hs256_signed_with_the_public_key_is_refused(good, jwks, signing_key, secret):
    # The key-confusion attack: a verifier that let the token pick its algorithm would check
    # this HMAC with the (public) key and accept it. PyJWT will not mint it, so we do.
    signing_input = f"{b64url_json(header_of(signing_key, alg='HS256'))}.{good.split('.')[1]}"
    mac = hmac.new(secret(signing_key), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(HandoffRefused, match="not allowed"):
        verify(f"{signing_input}.{b64url(mac)}", jwks)


def test_expired_is_refused(signing_key, jwks):
    token = mint_handoff(signing_key, claims(issued_at=NOW - timedelta(hours=1), expires_at=NOW - timedelta(seconds=1)))
    with pytest.raises(HandoffRefused, match="expired"):
        verify(token, jwks)


def test_not_yet_valid_is_refused(signing_key, jwks):
    token = mint_handoff(signing_key, claims(issued_at=NOW + timedelta(minutes=5)))
    with pytest.raises(HandoffRefused, match="not yet valid"):
        verify(token, jwks)


def test_another_audience_is_refused(good, jwks):
    with pytest.raises(HandoffRefused, match="[Aa]udience"):
        verify(good, jwks, audience="https://other-product.example.com/launch")


def test_another_issuer_is_refused(good, jwks):
    with pytest.raises(HandoffRefused, match="[Ii]ssuer"):
        verify(good, jwks, issuer="https://evil.example")


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_required_claim_is_required(good, jwks, signing_key, claim):
    payload = payload_of(good)
    del payload[claim]
    with pytest.raises(HandoffRefused):
        verify(signed(signing_key, payload), jwks)


@pytest.mark.parametrize("act", [{}, {"sub": 7}, "agent1@corp.example"])
def test_act_must_name_the_agent(good, jwks, signing_key, act):
    payload = {**payload_of(good), "act": act}
    with pytest.raises(HandoffRefused, match="act.sub"):
        verify(signed(signing_key, payload), jwks)


def test_unknown_scope_is_refused(good, jwks, signing_key):
    with pytest.raises(HandoffRefused, match="scope"):
        verify(signed(signing_key, {**payload_of(good), "scope": "admin"}), jwks)


@pytest.mark.parametrize("change", [{"scope": "read_write"}, {"sub": "u-alice"}, {"exp": 4102444800}])
def test_a_tampered_payload_is_refused(good, jwks, change):
    header, _, signature = good.split(".")
    tampered = f"{header}.{b64url_json({**payload_of(good), **change})}.{signature}"
    with pytest.raises(HandoffRefused, match="[Ss]ignature"):
        verify(tampered, jwks)


def test_a_tampered_header_is_refused(good, jwks, signing_key):
    _, payload, signature = good.split(".")
    header = b64url_json({"typ": TOKEN_TYPE, "kid": signing_key.kid, "alg": ALGORITHM, "x": 1})
    with pytest.raises(HandoffRefused, match="[Ss]ignature"):
        verify(f"{header}.{payload}.{signature}", jwks)


def test_an_unknown_kid_is_refused(good, jwks, signing_key):
    with pytest.raises(HandoffRefused, match="unknown key id"):
        verify(signed(signing_key, payload_of(good), kid="some-other-key"), jwks)


def test_another_key_claiming_our_kid_is_refused(good, jwks, signing_key):
    impostor = SigningKey(Ed25519PrivateKey.generate())
    token = jwt.encode(payload_of(good), impostor.private_key, algorithm=ALGORITHM, headers=header_of(signing_key))
    with pytest.raises(HandoffRefused, match="[Ss]ignature"):
        verify(token, jwks)


def signed_by_hand(key: SigningKey, header: dict, payload: dict) -> str:
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", None])
def test_a_wrong_or_missing_typ_is_refused(good, jwks, signing_key, typ):
    # RFC 8725 §3.11: explicit typing keeps one kind of JWT from being accepted as another.
    header = {k: v for k, v in header_of(signing_key, typ=typ).items() if v is not None}
    with pytest.raises(HandoffRefused, match="wrong token type"):
        verify(signed_by_hand(signing_key, header, payload_of(good)), jwks)


def test_a_hand_signed_token_with_our_header_verifies(good, jwks, signing_key):
    # The control for the test above: hand-signing itself is sound.
    assert verify(signed_by_hand(signing_key, header_of(signing_key), payload_of(good)), jwks) == payload_of(good)


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "e30.e30"])
def test_malformed_tokens_are_refused(jwks, garbage):
    with pytest.raises(HandoffRefused):
        verify(garbage, jwks)


def test_display_claims_for_the_banner_are_carried_only_when_known(signing_key, jwks):
    token = mint_handoff(signing_key, claims(account_name="ACME <Corp>", customer_user_name="Bob", reason="billing ticket", ticket="SUP-1"))
    verified = verify_handoff(token, jwks, issuer=ISSUER, audience=AUDIENCE)
    assert (verified["account_name"], verified["name"], verified["reason"], verified["ticket"]) == ("ACME <Corp>", "Bob", "billing ticket", "SUP-1")
    bare = payload_of(mint_handoff(signing_key, claims(reason="billing ticket")))
    assert bare["reason"] == "billing ticket" and not {"account_name", "name", "ticket"} & bare.keys()
