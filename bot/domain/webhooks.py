"""Notification webhooks: a product, or a customer's admin system, subscribes to what happens
to impersonation of its accounts — a session started, ended or was revoked, a request was
denied — and receives each event as an HTTP POST signed per the Standard Webhooks spec
(https://www.standardwebhooks.com/; the signing is bot/webhooks/sender.py).

An event is raised inside the transaction of the change it reports (so it is owed exactly when
the change commits), stored once with its body exactly as it will be sent, and owed to each
matching subscription as an outbox row (outbox.Kind.WEBHOOK). The outbox claims, retries with
backoff and audits a delivery that fails for good, as for Slack messages; every retry sends the
same bytes under the same `webhook-id`, the spec's idempotency key.

Subscriptions are made by an operator (`impersonation-bot webhooks add`): the secret is shown
once, then only used to sign. Adding and removing one is audited.
"""
from __future__ import annotations

import base64
import enum
import ipaddress
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import ColumnElement, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.db.base import affected_rows, table_of
from bot.db.engine import reading
from bot.db.models import WebhookEvent, WebhookSubscription
from bot.domain import audit, outbox
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow

#: Standard Webhooks' secret format: a prefix, then the base64 of the HMAC key
SECRET_PREFIX = "whsec_"
#: 32 random bytes: the key length of HMAC-SHA256's block-sized security (RFC 2104 §3 asks for
#: at least the hash's output length)
SECRET_BYTES = 32
URL_MAX_LENGTH = 2000
DESCRIPTION_MAX_LENGTH = 255


class EventType(str, enum.Enum):
    SESSION_STARTED = "session.started"
    SESSION_ENDED = "session.ended"
    SESSION_REVOKED = "session.revoked"
    REQUEST_DENIED = "request.denied"


#: the refusals at submission that protect the customer (their contract, a protected user,
#: an agent with no business on the account), told as `request.denied`; a request refused for
#: a mistake in the form (a short reason, a missing ticket) is not news to the customer
POLICY_DENIALS = frozenset({"opted_out", "protected_user", "not_assigned", "no_role"})


class WebhookConfigError(ValueError):
    """A subscription that cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class Subscribed:
    id: str
    #: shown once to the operator who subscribed; never logged, never listed again
    secret: str

    def __repr__(self) -> str:
        return f"Subscribed(id={self.id!r}, secret=<redacted>)"


@dataclass(frozen=True)
class SubscriptionView:
    id: str
    url: str
    event_types: tuple[str, ...]
    account: str | None
    description: str
    created_at: datetime
    created_by: str
    removed_at: datetime | None


@dataclass(frozen=True)
class Outgoing:
    """What one delivery sends: the sender signs `body` with `secret` under `message_id`."""

    message_id: str
    subscription_id: str
    url: str
    secret: str
    body: bytes

    def __repr__(self) -> str:
        return f"Outgoing(message_id={self.message_id!r}, subscription_id={self.subscription_id!r}, url=<{len(self.url)} chars>, secret=<redacted>)"


# ---------------------------------------------------------------------------- subscriptions


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_url(url: str) -> str:
    """An endpoint must be https (the body names accounts, people and reasons; RFC 9110 §4.2.2):
    plain http only to this machine itself, for a product developed locally. No credentials in
    the URL (they would be shown by `webhooks list` and audited)."""
    url = url.strip()
    if not url or len(url) > URL_MAX_LENGTH:
        raise WebhookConfigError(f"The URL must be 1–{URL_MAX_LENGTH} characters.")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise WebhookConfigError("The URL must name a host.")
    if parts.username is not None or parts.password is not None:
        raise WebhookConfigError("The URL must not carry credentials; the signature authenticates each delivery.")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url
    raise WebhookConfigError("The URL must be https (plain http only to localhost).")


def checked_event_types(names: Iterable[str] | None) -> tuple[str, ...]:
    """The event types asked for, each known; none named means all of them."""
    wanted = [n.strip() for n in (names or ()) if n.strip()]
    if not wanted:
        return tuple(t.value for t in EventType)
    unknown = sorted(set(wanted) - set(EventType._value2member_map_))
    if unknown:
        known = ", ".join(t.value for t in EventType)
        raise WebhookConfigError(f"Unknown event type(s): {', '.join(unknown)}. Known: {known}.")
    return tuple(t.value for t in EventType if t.value in wanted)


def _shown_url(url: str) -> str:
    """The URL as audited: without its query and fragment, which may carry a token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def subscribe(
    sessions: sessionmaker[Session],
    *,
    url: str,
    event_types: Iterable[str] | None = None,
    account: str | None = None,
    description: str = "",
    actor: Actor,
    now: datetime | None = None,
) -> Subscribed:
    now = now or utcnow()
    url = checked_url(url)
    types = checked_event_types(event_types)
    account = (account or "").strip() or None
    if account is not None and len(account) > 128:
        raise WebhookConfigError("An account id is at most 128 characters.")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise WebhookConfigError(f"The description is at most {DESCRIPTION_MAX_LENGTH} characters.")
    subscription = WebhookSubscription(
        id="ep_" + secrets.token_hex(12),
        url=url,
        secret=new_secret(),
        event_types=",".join(types),
        account=account,
        description=description,
        created_at=now,
        created_by=(actor.email or actor.slack_id or actor.role or "unknown")[:255],
        removed_at=None,
    )
    with sessions() as db, db.begin():
        db.add(subscription)
        audit.append(
            db,
            EventDraft(
                type="webhook.subscribed",
                actor=actor,
                account=account,
                details={"subscription": subscription.id, "url": _shown_url(url), "events": list(types), "description": description or None},
            ),
            now=now,
        )
    return Subscribed(subscription.id, subscription.secret)


def subscriptions(sessions: sessionmaker[Session], *, include_removed: bool = False) -> list[SubscriptionView]:
    statement = select(WebhookSubscription).order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    if not include_removed:
        statement = statement.where(WebhookSubscription.removed_at.is_(None))
    with reading(sessions) as db:
        return [
            SubscriptionView(s.id, s.url, tuple(s.event_types.split(",")), s.account, s.description, s.created_at, s.created_by, s.removed_at)
            for s in db.execute(statement).scalars()
        ]


def remove(sessions: sessionmaker[Session], subscription_id: str, *, actor: Actor, now: datetime | None = None) -> bool:
    """Stop sending to a subscription, pending deliveries included (they are skipped when
    claimed). False when there is no such live subscription."""
    now = now or utcnow()
    with sessions() as db, db.begin():
        done = affected_rows(
            db,
            update(WebhookSubscription)
            .where(WebhookSubscription.id == subscription_id, WebhookSubscription.removed_at.is_(None))
            .values(removed_at=now)
            .execution_options(synchronize_session=False)
        )
        if done != 1:
            return False
        audit.append(
            db,
            EventDraft(type="webhook.removed", actor=actor, details={"subscription": subscription_id}),
            now=now,
        )
    return True


# ---------------------------------------------------------------------------- raising events


#: the live subscriptions that want one event type for one account, built once
_MATCHING = select(WebhookSubscription.id, WebhookSubscription.event_types).where(WebhookSubscription.removed_at.is_(None))
_INSERT_EVENT = insert(table_of(WebhookEvent))


def raise_event(db: Session, event_type: EventType, *, account: str | None, data: dict[str, object], now: datetime) -> str | None:
    """Owe `event_type` to every live subscription that wants it, in the caller's transaction.
    The body is fixed now: a retry days later still says what happened at the time. Returns
    the event's id, or None when nobody subscribed (then nothing is stored)."""
    statement = _MATCHING.where(or_(WebhookSubscription.account.is_(None), WebhookSubscription.account == account))
    wanted = [sid for sid, types in db.execute(statement).all() if event_type.value in types.split(",")]
    if not wanted:
        return None
    event_id = "msg_" + secrets.token_hex(13)
    # The Standard Webhooks envelope: type, timestamp (RFC 3339), data.
    body = _encoded({"type": event_type.value, "timestamp": audit.format_time(now), "data": data})
    db.execute(_INSERT_EVENT, {"id": event_id, "type": event_type.value, "account": account, "body": body, "created_at": now})
    for subscription_id in wanted:
        outbox.enqueue(db, outbox.Kind.WEBHOOK, event_id, recipient=subscription_id, now=now)
    return event_id


def _encoded(document: dict[str, object]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _time(value: datetime | None) -> str | None:
    return audit.format_time(value) if value is not None else None


def session_started(
    db: Session,
    *,
    session_id: str,
    request_id: str,
    account: str,
    customer_user: str,
    agent: str,
    scope: str,
    reason: str,
    ticket: str | None,
    started_at: datetime,
    expires_at: datetime,
    now: datetime,
) -> str | None:
    return raise_event(
        db,
        EventType.SESSION_STARTED,
        account=account,
        data={
            "session_id": session_id,
            "request_id": request_id,
            "account": account,
            "customer_user": customer_user,
            "agent": agent,
            "scope": scope,
            "reason": reason,
            "ticket": ticket,
            "started_at": _time(started_at),
            "expires_at": _time(expires_at),
        },
        now=now,
    )


def session_over(
    db: Session,
    *,
    session_id: str,
    request_id: str,
    account: str,
    customer_user: str,
    agent: str,
    end_reason: str,
    ended_by: str | None,
    started_at: datetime,
    ended_at: datetime,
    now: datetime,
) -> str | None:
    """`session.revoked` for a revocation; `session.ended` for an end or an expiry, with
    `end_reason` saying which."""
    event_type = EventType.SESSION_REVOKED if end_reason == "revoked" else EventType.SESSION_ENDED
    return raise_event(
        db,
        event_type,
        account=account,
        data={
            "session_id": session_id,
            "request_id": request_id,
            "account": account,
            "customer_user": customer_user,
            "agent": agent,
            "end_reason": end_reason,
            "ended_by": ended_by,
            "started_at": _time(started_at),
            "ended_at": _time(ended_at),
        },
        now=now,
    )


def request_denied(
    db: Session,
    *,
    request_id: str | None,
    account: str,
    customer_user: str,
    agent: str,
    denied_by: str,
    cause: str | None,
    now: datetime,
) -> str | None:
    """A request to access the account was refused: by an approver (`denied_by` "approver")
    or by the access policy at submission (`denied_by` "policy", with its cause)."""
    return raise_event(
        db,
        EventType.REQUEST_DENIED,
        account=account,
        data={
            "request_id": request_id,
            "account": account,
            "customer_user": customer_user,
            "agent": agent,
            "denied_by": denied_by,
            "cause": cause,
        },
        now=now,
    )


# ---------------------------------------------------------------------------- erasure


#: what an event's data says about the customer user, erased with their personal data
_PERSONAL_FIELDS = ("customer_user", "reason", "ticket")


def erase_customer_user(db: Session, *, account: str, customer_user: str, erased: str) -> int:
    """Write `erased` over the customer user's id, and the reasons and tickets about them, in
    the stored bodies of the account's webhook events (a delivery still owed then sends the
    erased body). Returns how many bodies changed."""

    def about_them(data: dict) -> list[str]:
        return [name for name in _PERSONAL_FIELDS if data.get(name) is not None] if data.get("customer_user") == customer_user else []

    return _erase_in_bodies(db, WebhookEvent.account == account, about_them, erased)


def erase_reasons_before(db: Session, cutoff: datetime, *, erased: str) -> int:
    """Write `erased` over the reasons and tickets in bodies of events raised before `cutoff`
    (the personal-data retention). Returns how many bodies changed."""

    def still_clear(data: dict) -> list[str]:
        return [name for name in ("reason", "ticket") if data.get(name) not in (None, erased)]

    return _erase_in_bodies(db, WebhookEvent.created_at < cutoff, still_clear, erased)


def _erase_in_bodies(db: Session, which: ColumnElement[bool], fields_of: Callable[[dict[str, Any]], list[str]], erased: str) -> int:
    """For each stored body `which` selects, write `erased` over the data fields `fields_of`
    names; returns how many bodies changed."""
    changed = 0
    for event_id, body in db.execute(select(WebhookEvent.id, WebhookEvent.body).where(which)).all():
        document = json.loads(body)
        data = document.get("data") or {}
        fields = fields_of(data)
        if not fields:
            continue
        data.update(dict.fromkeys(fields, erased))
        db.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(body=_encoded(document)).execution_options(synchronize_session=False))
        changed += 1
    return changed


# ---------------------------------------------------------------------------- delivering


def outgoing(sessions: sessionmaker[Session], event_id: str, subscription_id: str) -> Outgoing | None:
    """What a delivery sends, read at delivery time; None when the subscription was removed
    (or the event pruned): nothing is sent."""
    with reading(sessions) as db:
        row = db.execute(
            select(WebhookSubscription.url, WebhookSubscription.secret, WebhookEvent.body)
            .join(WebhookEvent, WebhookEvent.id == event_id)
            .where(WebhookSubscription.id == subscription_id, WebhookSubscription.removed_at.is_(None))
        ).first()
    if row is None:
        return None
    return Outgoing(event_id, subscription_id, row.url, row.secret, row.body.encode("utf-8"))
