"""Requests signed exactly as Slack signs them (Slack "Verifying requests from Slack"):
`X-Slack-Signature: v0=` + hex HMAC-SHA256(signing secret, "v0:{timestamp}:{raw body}"),
with the timestamp in `X-Slack-Request-Timestamp`. The test suite and the local workspace
sign with this one function; Bolt verifies with its own."""
from __future__ import annotations

import hashlib
import hmac
import time

FORM = "application/x-www-form-urlencoded"


def signature(body: str, timestamp: str, secret: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(body: str, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a form-encoded request carrying `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"Content-Type": FORM, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(body, ts, secret)}
