"""What the outbox carries (bot/domain/outbox.py): the kinds of message a change can owe, a
row's states, a claimed row as a courier receives it and the outcomes a courier answers with.

Plain values with no dependencies, so that the ports (bot/domain/ports.py), the outbox, the
retention job and the couriers (bot/slack/courier.py, bot/webhooks/sender.py) share them
without importing one another.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(str, enum.Enum):
    """What a row asks to be said. The value doubles as message_refs.purpose (≤ 16 chars)."""

    #: the agent's DM about a granted request (requests.agent_channel/ts): posted with the
    #: one-time link, whose token is derived again at each delivery (never stored), then
    #: edited to the live session and to how it ended (subject: request id)
    AGENT = "agent"
    #: the agent's "approval needed" DM about a gated request (subject: request id; ref in
    #: message_refs): the wait while pending, edited to the outcome once decided. Its own
    #: message, so that an approval's link arrives as a new DM that notifies the agent.
    AGENT_REQUEST = "agent_request"
    #: the expiry warning DM to the agent (subject: session id), edited once the session is over
    WARNING = "warning"
    #: a new DM that notifies the agent: their session was revoked (subject: session id)
    NOTICE = "notice"
    #: an approver's DM about a request or an extension (subject: its id; recipient: the
    #: approver's Slack id): the ask while it is pending, edited to the outcome once decided
    APPROVER = "approver"
    #: a new DM that notifies an approver who has not answered an ask still pending past its
    #: reminder point (subject: request or extension id); edited once the ask is decided
    REMINDER = "reminder"
    #: the security channel's live message about one granted request and its session
    FEED = "feed"
    #: an alert (subject: alert id); alerts pending together are sent as one summary
    ALERT = "alert"
    #: the security channel's alert that break-glass skipped approval (subject: request id),
    #: sent on its own, never folded into an alert summary
    BREAK_GLASS = "break_glass"
    #: a periodic access review (subject: the period key)
    DIGEST = "digest"
    #: a signed audit checkpoint (subject: the checkpoint's period key)
    CHECKPOINT = "checkpoint"
    #: a notification webhook, not a Slack message (subject: the event id, recipient: the
    #: subscription id; bot/domain/webhooks.py), sent by `DomainContext.webhook_sender`
    WEBHOOK = "webhook"
    #: a person's App Home tab, published again (subject and recipient: their Slack id),
    #: owed whenever a row that changes what it shows is (HOME_SOURCES); at most one
    #: publish per person per PACE_SECONDS, later rows merging into the next
    HOME = "home"


#: a row's states: owed; claimed by a sender (until its lease passes); and the four ways it ends
PENDING, SENDING, SENT, SKIPPED, MERGED, FAILED = "pending", "sending", "sent", "skipped", "merged", "failed"


@dataclass(frozen=True)
class MessageRef_:
    """A Slack message already posted for this target: edit it rather than post again."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Delivery:
    """One claimed row, as the courier sees it."""

    id: int
    kind: Kind
    subject_id: str
    #: a Slack user id (a DM) or a channel id (SECURITY resolved); None when no channel is set
    recipient: str | None
    attempts: int
    token: str = field(repr=False)
    #: the message to edit, when one was posted before
    ref: MessageRef_ | None = None
    #: ALERT: every alert id this message carries, the claimed row's first
    batch: tuple[str, ...] = ()
    #: the rows claimed together by an immediate delivery share this token (None: claimed
    #: alone): each was claimed before any of them is rendered, so the courier may render a
    #: subject's state once for all of them (outbox._deliver_together)
    claim_group: str | None = None


@dataclass(frozen=True)
class Sent:
    channel: str
    ts: str


@dataclass(frozen=True)
class Delivered:
    """Accepted by a receiver that is not Slack (a webhook's 2xx): no message to edit later."""

    status: int


@dataclass(frozen=True)
class Skipped:
    """Nothing to say (e.g. the message would only repeat what is already shown)."""

    reason: str


@dataclass(frozen=True)
class RetryAfter:
    """Slack answered 429: try again after `seconds` (its Retry-After); or a row given back
    unsent (outbox._deliver_together)."""

    seconds: float
    error: str = "ratelimited"


@dataclass(frozen=True)
class Transient:
    """A server error or a broken connection: try again with backoff."""

    error: str


@dataclass(frozen=True)
class Permanent:
    """Slack refused for good (channel_not_found, not_in_channel, is_archived …)."""

    error: str


Outcome = Sent | Delivered | Skipped | RetryAfter | Transient | Permanent
