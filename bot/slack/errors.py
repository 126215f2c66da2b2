"""Slack's answer to a failed Web API call, as an outbox outcome (bot.domain.outbox).

Slack "Rate limits" and "Web API: errors": HTTP 429 or `ratelimited` → RetryAfter, honouring
Retry-After; HTTP 5xx and Slack's own server-side errors → Transient (retried with backoff);
any other error (`channel_not_found`, `not_in_channel`, `is_archived`, `user_not_found`,
`account_inactive`, `invalid_blocks` …) → Permanent, which the outbox audits as
`notify.failed`. Only Slack's error code is kept, never the response body.
"""
from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bot.domain.messages import Outcome, Permanent, RetryAfter, Transient

#: Slack errors that say "try again later" rather than "this will never work"
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout", "timeout"})
#: seconds to wait after a 429 that carries no usable Retry-After
DEFAULT_RETRY_AFTER = 1.0


def classify(error: SlackApiError) -> Outcome:
    response = error.response
    code = str(response.get("error") or "") if isinstance(response.data, dict) else ""
    status = int(getattr(response, "status_code", 200) or 200)
    if status == 429 or code == "ratelimited":
        headers = {str(k).lower(): v for k, v in (response.headers or {}).items()}
        value = headers.get("retry-after")
        if isinstance(value, list):
            value = value[0] if value else None
        try:
            seconds = max(float(value), 0.0) if value is not None else DEFAULT_RETRY_AFTER
        except (TypeError, ValueError):
            seconds = DEFAULT_RETRY_AFTER
        return RetryAfter(seconds, code or "ratelimited")
    if status >= 500 or code in TRANSIENT_ERRORS:
        return Transient(code or f"http_{status}")
    return Permanent(code or f"http_{status}")


