"""The Bolt app: built once at start-up (bot/wiring.py) from the domain context and the one
configured WebClient.

- Request verification stays on: Bolt checks `X-Slack-Signature` (v0 HMAC-SHA256) and
  refuses timestamps older than 5 minutes, answering 401 before any listener runs.
- `process_before_response=True` by default: Bolt's default runner hands listeners to a
  thread pool and polls for ack() every 10 ms (slack_bolt/listener/thread_runner.py), which
  DESIGN.md "Web stack and speed" measured as the dominant cost (p50 107 ms against p99
  6.5 ms). Our listeners ack first and hand what their change owed in the outbox to
  the deliverer (a background thread in the running app, bot/web/background.py), well
  inside Slack's 3 s.
- Every listener uses the client given here (see `use_configured_client`).
- Logs never carry tokens, trigger ids, response URLs, view state (user text) or links.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import deliveries
from bot.domain.context import DomainContext
from bot.domain.outbox import InlineDeliverer
from bot.domain.ports import Deliverer
from bot.slack.courier import SlackCourier
from bot.slack.listeners import register_listeners

log = logging.getLogger(__name__)


def build_slack_app(
    ctx: DomainContext,
    *,
    client: WebClient,
    signing_secret: str,
    process_before_response: bool = True,
    deliverer: Deliverer | None = None,
) -> App:
    if not signing_secret:
        raise ValueError("a Slack signing secret is required: requests are verified with it")
    keep_wire_logs_quiet(client)
    drop_unused_token_warning()
    app = App(
        name="impersonation-bot",
        client=client,  # Bolt takes the bot token from the client
        signing_secret=signing_secret,
        request_verification_enabled=True,
        process_before_response=process_before_response,
    )
    app.middleware(use_configured_client(client))
    app.middleware(log_request)
    app.middleware(acting_once(ctx))
    app.error(handle_listener_error)
    # what changes owe in the outbox: sent after the answer in the running app (bot/wiring.py);
    # without a deliverer, before the listener returns, through this app's client
    register_listeners(app, ctx, deliverer or InlineDeliverer(ctx, SlackCourier(ctx, client)))
    return app


#: slack_sdk's logger for response_url posts (Bolt's respond() builds a WebhookClient with it)
WEBHOOK_LOGGER = "slack_sdk.webhook.client"
#: Bolt's signature check logs every refused request's whole raw body and signature at INFO
#: (slack_bolt/middleware/request_verification: "Invalid request signature detected (…)")
BOLT_VERIFICATION_LOGGER = "slack_bolt.RequestVerification"
#: the App's own logger (slack_bolt.logger.get_bolt_logger(App))
BOLT_APP_LOGGER = "slack_bolt.App"


class _DropRefusedBodyDump(logging.Filter):
    """Drops Bolt's refused-request line: its body is whatever an unauthenticated sender chose
    (and, for a genuine but stale request, holds its response_url and trigger_id). The web
    layer logs the refusal itself, without the body (bot/web/app.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Invalid request signature detected")


class _DropUnusedTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment even when given a client, and then
    warns that the token "will be unused" (slack_bolt/app/app.py), once per process. The
    client is built from that same token (bot/wiring.py), so the warning is always true and
    never actionable: it only taught operators to ignore warnings."""

    message = warning_client_prioritized_and_token_skipped()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


def drop_unused_token_warning() -> None:
    bolt = logging.getLogger(BOLT_APP_LOGGER)
    if not any(isinstance(f, _DropUnusedTokenWarning) for f in bolt.filters):
        bolt.addFilter(_DropUnusedTokenWarning())


def keep_wire_logs_quiet(client: WebClient) -> None:
    """slack_sdk logs whole request and response bodies at DEBUG whenever its logger's own
    level is NOTSET or DEBUG (slack_sdk/web/base_client.py, "Sending a request - … json_body";
    slack_sdk/webhook/client.py, the same with the response URL), and those bodies hold
    one-time links, response URLs and `/impersonation-log` answers (customers' names and
    e-mail addresses). Keep those loggers at INFO or above, so the lines are not even built;
    enabling DEBUG for the app elsewhere then cannot leak them."""
    for logger in (client.logger, logging.getLogger(WEBHOOK_LOGGER)):
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    verification = logging.getLogger(BOLT_VERIFICATION_LOGGER)
    if not any(isinstance(f, _DropRefusedBodyDump) for f in verification.filters):
        verification.addFilter(_DropRefusedBodyDump())


def use_configured_client(client: WebClient) -> Callable[..., None]:
    """Bolt gives each request a fresh copy of the app's WebClient (App._init_context). Use
    the configured instance itself, so that everything set up at the composition root (base
    URL from SLACK_API_URL, timeout, retry handlers, the quieted logger, a recording client
    in tests) governs every call. The token is static and never changed per request, so
    sharing the instance between threads is safe."""

    def use_configured_client_middleware(context: BoltContext, next: Callable[[], None]) -> None:
        context["client"] = client
        next()

    return use_configured_client_middleware


def describe_request(body: dict[str, Any]) -> dict[str, str]:
    """What a log line may say about an incoming request: its kind and route (command,
    callback_id, action_ids, event type), who and which workspace. Never the verification
    token, trigger_id, response_url, command text, view state or a shortcut's message."""
    kind = str(body.get("type") or ("slash_command" if "command" in body else "unknown"))[:64]
    route = ""
    if "command" in body:
        route = str(body.get("command"))
    elif kind in ("view_submission", "view_closed"):
        route = str((body.get("view") or {}).get("callback_id") or "")
    elif kind == "block_actions":
        route = ",".join(str(a.get("action_id")) for a in body.get("actions") or [] if isinstance(a, dict))
    elif kind == "block_suggestion":
        route = str(body.get("action_id") or "")
    elif kind in ("shortcut", "message_action"):
        route = str(body.get("callback_id") or "")
    raw_event = body.get("event")
    event: dict[str, Any] = raw_event if kind == "event_callback" and isinstance(raw_event, dict) else {}
    if event:
        route = str(event.get("type") or "")
    user = body.get("user_id") or (body.get("user") or {}).get("id") or event.get("user") or ""
    team = body.get("team_id") or (body.get("team") or {}).get("id") or ""
    return {"kind": kind, "route": route[:255], "user": str(user)[:32], "team": str(team)[:32]}


def log_request(body: dict[str, Any], next: Callable[[], None]) -> None:
    facts = describe_request(body)
    log.info("slack %s %s user=%s team=%s", facts["kind"], facts["route"], facts["user"], facts["team"])
    next()


#: Read-only requests: a replay of one shows the same options again and changes nothing.
_IDEMPOTENT_KINDS = frozenset({"block_suggestion"})


def delivery_of(headers: dict[str, Any], body: dict[str, Any]) -> deliveries.Delivery | None:
    """The delivery's identity: the Events API `event_id` (kept by Slack across its retries),
    else the request's `X-Slack-Signature` (an HMAC of the timestamp and the whole body, so a
    replay carries the same one and any change breaks it). None when neither exists (Socket
    Mode interactions arrive over the app's own authenticated WebSocket, one envelope each)."""
    facts = describe_request(body)
    if facts["kind"] in _IDEMPOTENT_KINDS:
        return None
    signature = next(iter(headers.get("x-slack-signature") or []), None)
    event_id = body.get("event_id")
    if isinstance(event_id, str) and event_id:
        identity = f"event:{event_id}"
    elif isinstance(signature, str) and signature:
        identity = f"signature:{signature}"
    else:
        return None
    retried = bool(headers.get("x-slack-retry-num")) or bool(body.get("retry_attempt"))
    return deliveries.Delivery(
        key=deliveries.delivery_key(identity),
        kind=facts["kind"][:64],
        route=facts["route"][:255],
        user=facts["user"] or None,
        team=facts["team"] or None,
        retry=retried,
    )


def acting_once(ctx: DomainContext) -> Callable[..., BoltResponse | None]:
    """Middleware: a delivery Slack already made (a replayed signed request, or Slack's own
    retry) is acknowledged with an empty 200 and reaches no listener (bot/domain/deliveries.py).
    It runs after Bolt's signature check, so only verified requests are recorded."""

    def acting_once_middleware(req: Any, body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        delivery = delivery_of(req.headers, body)
        if delivery is not None and not deliveries.first_delivery(ctx, delivery):
            log.warning("slack %s %s user=%s: delivered before; acknowledged and ignored", delivery.kind, delivery.route, delivery.user)
            return BoltResponse(status=200, body="")
        next()
        return None

    return acting_once_middleware


def handle_listener_error(
    error: Exception, body: dict[str, Any], context: BoltContext, response: BoltResponse | None
) -> None:
    """The one error handler for every listener.

    Logged: the request's kind and route and, for a Slack API failure, the method's error
    code only (a SlackApiError's text includes the whole response). Answered: what the
    listener acknowledged, if it did. Bolt would otherwise turn a failure after ack() into
    HTTP 500, and Slack would then show an error on a modal whose request was in fact
    recorded, inviting the agent to submit it twice.
    """
    facts = describe_request(body)
    if isinstance(error, SlackApiError):
        log.error(
            "slack %s %s: Slack API call failed: %s",
            facts["kind"],
            facts["route"],
            error.response.get("error") or "unknown_error",
        )
    else:
        log.error("slack %s %s failed: %s", facts["kind"], facts["route"], type(error).__name__, exc_info=error)
    acked = context.ack.response if context.ack is not None else None
    if acked is not None and response is not None:
        response.status, response.body, response.headers = acked.status, acked.body, acked.headers
