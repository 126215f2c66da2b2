"""Verify the bot's notification webhooks, signed per the Standard Webhooks spec
(https://www.standardwebhooks.com/, "Verifying webhook authenticity"):

- headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
  space-separated list of `v1,<base64 HMAC-SHA256>` entries (several during a secret rotation);
- the signed content is `"<webhook-id>.<webhook-timestamp>.<raw body>"`;
- the secret is `whsec_<base64 key>`; the HMAC key is the decoded base64 part.

The timestamp must be within a tolerance window (5 minutes by default, the spec's
recommendation) so a captured delivery cannot be replayed later, signatures are compared in
constant time (`hmac.compare_digest`), and a `webhook-id` already accepted is refused (the spec
says the id is the idempotency key of a delivery) through the kit's `JtiStore`, so a replay
inside the window is refused too. Verify the RAW body: re-serialised JSON does not match.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .replay import JtiStore, MemoryJtiStore

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 5 * 60


class WebhookRefused(Exception):
    """The delivery is not authentic (or is a replay); answer 400/401 and do not act on it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not whsec_<base64>") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one delivery."""
    mac = hmac.digest(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac).decode()


class WebhookVerifier:
    """One verifier per endpoint. `secrets` may hold several secrets (old and new during a
    rotation); a delivery is authentic when any `v1` signature matches any secret."""

    def __init__(
        self,
        secrets: str | list[str],
        *,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        store: JtiStore | None = None,
    ) -> None:
        self._keys = [_key(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
        if not self._keys:
            raise ValueError("at least one webhook secret is needed")
        self.tolerance_s = tolerance_s
        self.store = store if store is not None else MemoryJtiStore()

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> dict[str, Any]:
        """Return the decoded event, or raise WebhookRefused. Header names are matched
        case-insensitively (HTTP field names are, RFC 9110 §5.1)."""
        lower = {k.lower(): v for k, v in headers.items()}
        msg_id = lower.get("webhook-id", "")
        ts_text = lower.get("webhook-timestamp", "")
        sig_header = lower.get("webhook-signature", "")
        if not msg_id or not ts_text or not sig_header:
            raise WebhookRefused("missing_headers")
        try:
            timestamp = int(ts_text)
        except ValueError:
            raise WebhookRefused("bad_timestamp") from None
        current = time.time() if now is None else now
        if abs(current - timestamp) > self.tolerance_s:
            raise WebhookRefused("timestamp_outside_tolerance")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = [hmac.digest(k, signed, hashlib.sha256) for k in self._keys]
        matched = False
        for entry in sig_header.split():
            version, _, value = entry.partition(",")
            if version != "v1":
                continue  # other schemes (v1a: asymmetric) are not used by the bot
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            for mac in expected:
                # Every comparison runs (no early exit) so timing says nothing about which matched.
                matched |= hmac.compare_digest(mac, given)
        if not matched:
            raise WebhookRefused("bad_signature")
        # Remembered until the window closes: after that the timestamp check refuses it anyway.
        if not self.store.add(f"webhook:{msg_id}", timestamp + self.tolerance_s + 1, now=current):
            raise WebhookRefused("replayed")
        try:
            event = json.loads(body)
        except ValueError:
            raise WebhookRefused("bad_body") from None
        if not isinstance(event, dict):
            raise WebhookRefused("bad_body")
        return event
