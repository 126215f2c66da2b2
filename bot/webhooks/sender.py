"""Send one owed notification webhook (an outbox row of kind `webhook`), signed per the
Standard Webhooks spec (https://www.standardwebhooks.com/, "Signature scheme"):

- `webhook-id`: the event's id, the same on every retry (the receiver's idempotency key);
- `webhook-timestamp`: this attempt's time, integer Unix seconds;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, the key being
  the base64-decoded part of the subscription's `whsec_…` secret.

The receiver's answer becomes an outbox outcome: any 2xx is delivered; 410 Gone means the
endpoint is gone for good (the spec's and Svix's convention), so the subscription is removed and
the row fails; anything else — another status, a timeout, a refused connection — is retried
on the webhook schedule (outbox.WEBHOOK_RETRY_DELAYS). Redirects are not followed: a signed
body goes only to the URL an operator subscribed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime

from bot.domain import webhooks
from bot.domain.audit import Actor
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.messages import Delivered, Delivery, Outcome, Permanent, Skipped, Transient

log = logging.getLogger(__name__)

#: one attempt's limit, far inside the outbox claim's lease (outbox.LEASE); the spec advises
#: receivers to answer quickly and do the work afterwards
TIMEOUT_SECONDS = 15.0
USER_AGENT = "impersonation-bot-webhooks/1"
#: how much of a refusal's body is read (for the log); the rest is not wanted
ANSWER_EXCERPT = 256


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one attempt."""
    key = base64.b64decode(secret.removeprefix(webhooks.SECRET_PREFIX))
    mac = hmac.digest(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac).decode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ARG002 - urllib's signature
        return None  # the 3xx is then raised as an HTTPError: retried, never followed


class WebhookSender:
    """The outbox courier for Kind.WEBHOOK (DomainContext.webhook_sender). Holds no state."""

    def __init__(self, ctx: DomainContext, *, clock: Callable[[], datetime] = utcnow, timeout: float = TIMEOUT_SECONDS) -> None:
        self._ctx = ctx
        self._clock = clock
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    def deliver(self, delivery: Delivery) -> Outcome:
        outgoing = webhooks.outgoing(self._ctx.sessions, delivery.subject_id, delivery.recipient or "")
        if outgoing is None:
            return Skipped("subscription_removed")
        timestamp = int(self._clock().timestamp())
        request = urllib.request.Request(
            outgoing.url,
            data=outgoing.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "webhook-id": outgoing.message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature(outgoing.secret, outgoing.message_id, timestamp, outgoing.body),
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                return Delivered(answer.status)
        except urllib.error.HTTPError as error:
            with error:
                excerpt = error.read(ANSWER_EXCERPT).decode("utf-8", "replace")
            log.warning("webhook %s to %s: HTTP %s %r", outgoing.message_id, outgoing.subscription_id, error.code, excerpt)
            if error.code == 410:
                webhooks.remove(self._ctx.sessions, outgoing.subscription_id, actor=Actor.system("webhook_410"), now=self._clock())
                return Permanent("http_410_gone")
            return Transient(f"http_{error.code}")
        except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out, DNS
            reason = getattr(error, "reason", error)
            log.warning("webhook %s to %s: cannot reach the endpoint: %s", outgoing.message_id, outgoing.subscription_id, type(reason).__name__)
            return Transient(type(reason).__name__[:64])
