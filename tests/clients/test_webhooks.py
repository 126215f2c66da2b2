"""The webhook verifier (Standard Webhooks): the spec's published example, the tolerance window,
several signatures (secret rotation), a replayed webhook-id, tampering and bad headers."""
from __future__ import annotations

import json

import pytest

from impersonation_kit.webhooks import WebhookRefused, WebhookVerifier, sign

# The example in the Standard Webhooks spec (standard-webhooks/standard-webhooks, spec and the
# reference libraries' tests): this secret, id, timestamp and body sign to this value.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


def headers(msg_id=SPEC_ID, ts=SPEC_TS, sig=SPEC_SIGNATURE) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_sign_reproduces_the_specs_published_example():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_the_specs_example_verifies_within_the_window_with_any_header_case():
    event = WebhookVerifier(SPEC_SECRET).verify(
        {k.title(): v for k, v in headers().items()}, SPEC_BODY, now=SPEC_TS + 299)
    assert event == {"test": 2432232314}


@pytest.mark.parametrize("offset", [301, -301, 86400])
def test_a_timestamp_outside_the_tolerance_is_refused(offset):
    with pytest.raises(WebhookRefused) as refused:
        WebhookVerifier(SPEC_SECRET).verify(headers(), SPEC_BODY, now=SPEC_TS + offset)
    assert refused.value.reason == "timestamp_outside_tolerance"


def test_a_replayed_webhook_id_is_refused_inside_the_window():
    verifier = WebhookVerifier(SPEC_SECRET)
    verifier.verify(headers(), SPEC_BODY, now=SPEC_TS)
    with pytest.raises(WebhookRefused) as refused:
        verifier.verify(headers(), SPEC_BODY, now=SPEC_TS + 10)
    assert refused.value.reason == "replayed"


def test_any_of_several_signatures_and_any_of_several_secrets_is_enough():
    body = json.dumps({"type": "session.ended"}).encode()
    new_sig = sign(OTHER_SECRET, "msg_2", SPEC_TS, body)
    old_sig = sign(SPEC_SECRET, "msg_2", SPEC_TS, body)
    # The sender signs with old and new during a rotation; v1a (asymmetric) entries are skipped.
    header = f"v1a,AAAA v1,bm90LWEtbWFj {old_sig} {new_sig}"
    assert WebhookVerifier(OTHER_SECRET).verify(headers("msg_2", sig=header), body, now=SPEC_TS)["type"] == "session.ended"
    # The receiver can hold both secrets while it rotates.
    only_old = headers("msg_3", sig=sign(SPEC_SECRET, "msg_3", SPEC_TS, body))
    assert WebhookVerifier([OTHER_SECRET, SPEC_SECRET]).verify(only_old, body, now=SPEC_TS)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_any_change_to_the_signed_content_or_secret_is_refused(tamper):
    body, msg_id, ts, secret = SPEC_BODY, SPEC_ID, SPEC_TS, SPEC_SECRET
    if tamper == "body":
        body = b'{"test": 2432232315}'
    elif tamper == "id":
        msg_id = "msg_other"
    elif tamper == "timestamp":
        ts = SPEC_TS + 1
    else:
        secret = OTHER_SECRET
    with pytest.raises(WebhookRefused) as refused:
        WebhookVerifier(secret).verify(headers(msg_id, ts), body, now=SPEC_TS)
    assert refused.value.reason == "bad_signature"


@pytest.mark.parametrize("hdrs, reason", [
    ({}, "missing_headers"),
    ({"webhook-id": SPEC_ID, "webhook-timestamp": "soon", "webhook-signature": SPEC_SIGNATURE}, "bad_timestamp"),
    ({"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": "v1,not base64!"}, "bad_signature"),
    ({"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": "v2," + SPEC_SIGNATURE[3:]}, "bad_signature"),
])
def test_malformed_headers_are_refused(hdrs, reason):
    with pytest.raises(WebhookRefused) as refused:
        WebhookVerifier(SPEC_SECRET).verify(hdrs, SPEC_BODY, now=SPEC_TS)
    assert refused.value.reason == reason


def test_a_secret_that_is_not_whsec_base64_is_rejected_at_construction():
    with pytest.raises(ValueError):
        WebhookVerifier("whsec_***")
