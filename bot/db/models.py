"""Typed SQLAlchemy 2 models. The schema only changes through Alembic (migrations/)."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.db.base import Base


class AccountFlag(str, enum.Enum):
    """Contract flags RevOps sets on an account (DESIGN.md, "Who uses it")."""

    OPTED_OUT = "opted_out"
    SENSITIVE = "sensitive"
    REGULATED = "regulated"
    FLAGGED = "flagged"


class RequestState(str, enum.Enum):
    """The one lifecycle of DESIGN.md. `blocked` requests are not stored: a refusal changes
    nothing but the audit log (see docs/design-decisions.md)."""

    PENDING = "pending"
    GRANTED = "granted"
    ACTIVE = "active"
    ENDED = "ended"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LAPSED = "lapsed"
    DENIED = "denied"
    CANCELLED = "cancelled"


class SessionScope(str, enum.Enum):
    READ_ONLY = "read_only"
    READ_WRITE = "read_write"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the product's own id for the account (e.g. "acme"); what people type in Slack
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    flags: Mapped[list[AccountFlagSetting]] = relationship(
        back_populates="account", lazy="selectin", cascade="all, delete-orphan"
    )

    def flag_names(self) -> frozenset[str]:
        return frozenset(f.flag for f in self.flags)


class AccountFlagSetting(Base):
    """One flag that is set on an account, with who set it, when and why.
    Clearing a flag removes its row; the history lives in the audit log."""

    __tablename__ = "account_flags"
    __table_args__ = (
        UniqueConstraint("account_id", "flag", name="uq_account_flags_account_flag"),
        CheckConstraint(
            "flag IN ('opted_out', 'sensitive', 'regulated', 'flagged')", name="known_flag"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    flag: Mapped[str] = mapped_column(String(32))
    set_by: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text)

    account: Mapped[Account] = relationship(back_populates="flags")


class CustomerUser(Base):
    __tablename__ = "customer_users"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id", name="uq_customer_users_account_external"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(128))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(255))
    #: owners and admins of the customer's org: never impersonated
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: when `privacy erase` removed this person's personal data (bot/domain/privacy.py): the
    #: row stays, because the requests about them point at it, but holds no clear value
    #: (migration 0015)
    erased_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship()


class Assignment(Base):
    """Which agent looks after which account; agents whose role scope is `assigned` may
    only impersonate inside their assignments."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("agent_slack_id", "account_id", name="uq_assignments_agent_account"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_slack_id: Mapped[str] = mapped_column(String(32), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]


class ImpersonationRequest(Base):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_account_created", "account_id", "created_at"),
        Index("ix_requests_state", "state"),
        # what the log's summary reads of each session's request, from the index alone
        # (migration 0006)
        Index("ix_requests_id_outcome", "id", "state", "break_glass", "approvals_required"),
    )

    #: random UUID (hex); appears in button values, never guessable in sequence
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(32))
    agent_slack_id: Mapped[str] = mapped_column(String(32), index=True)
    agent_email: Mapped[str | None] = mapped_column(String(320))
    #: the requester's Enterprise Grid id as `users.info` gave it at submission: self-approval
    #: checks compare against what was known then, not a lookup at click time (migration 0007)
    agent_enterprise_user_id: Mapped[str | None] = mapped_column(String(32))
    agent_tz: Mapped[str | None] = mapped_column(String(64))
    agent_role: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    customer_user_id: Mapped[int] = mapped_column(ForeignKey("customer_users.id"))
    reason: Mapped[str] = mapped_column(Text)
    #: the lawful-basis / justification code chosen from the policy's `[privacy]
    #: justifications` (docs/privacy.md); None when the policy listed none, or before 0015
    justification: Mapped[str | None] = mapped_column(String(64))
    ticket: Mapped[str | None] = mapped_column(String(128))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    #: flags that gated this request (comma separated), empty when it was granted at once
    gated_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: the agent's DM about this request, edited in place as it changes state
    agent_channel: Mapped[str | None] = mapped_column(String(32))
    agent_message_ts: Mapped[str | None] = mapped_column(String(32))
    #: distinct approvals needed (0 when not gated)
    approvals_required: Mapped[int] = mapped_column(Integer, default=0)
    #: a pending request not decided by then is expired (policy gating.pending_ttl_minutes)
    pending_expires_at: Mapped[datetime | None]
    #: a re-initiation points at the agent's last session with the same customer user, which
    #: ended at most `reinitiation.window_minutes` before it (docs/policy.md "Re-initiation")
    previous_session_id: Mapped[str | None] = mapped_column(String(36))
    #: 0 for a fresh request; N for the Nth re-initiation in a row (migration 0013)
    reinitiation_ordinal: Mapped[int] = mapped_column(Integer, default=0)
    #: when the previous session ended, as it stood when this request was made (0013)
    previous_session_ended_at: Mapped[datetime | None]
    #: granted by break-glass, skipping approval
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)

    account: Mapped[Account] = relationship(lazy="joined")
    customer_user: Mapped[CustomerUser] = relationship(lazy="joined")


class Link(Base):
    """The one-time link. Only the SHA-256 of its token is ever stored (DESIGN.md hand-off 1)."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    redeemed_at: Mapped[datetime | None]

    request: Mapped[ImpersonationRequest] = relationship(lazy="joined")


class ImpersonationSession(Base):
    __tablename__ = "sessions"
    # An account's sessions by start time, carrying what the log's summary reads, so that
    # counting a busy account's period reads only the index (migration 0005).
    __table_args__ = (
        Index("ix_sessions_account_period", "account_id", "started_at", "request_id", "agent_slack_id", "expires_at", "id"),
    )

    #: the `sid` claim of the hand-off JWT, the `impersonation_context` the product stamps
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    agent_slack_id: Mapped[str] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    #: ended | expired | revoked, set with ended_at
    end_reason: Mapped[str | None] = mapped_column(String(16))
    ended_by: Mapped[str | None] = mapped_column(String(32))
    #: the hand-off JWT's jti, so the product can refuse a replayed hand-off
    handoff_jti: Mapped[str] = mapped_column(String(36), unique=True)
    #: the product it was launched into (policy `product`), whose API keys alone may read it
    #: or report actions in it; None when none was configured (migration 0009)
    product: Mapped[str | None] = mapped_column(String(64))

    request: Mapped[ImpersonationRequest] = relationship(lazy="joined")


class AuditEvent(Base):
    """Append-only, hash-chained audit log (DESIGN.md "The audit log"). The database refuses
    UPDATE and DELETE on this table (triggers in the first migration)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_account_time", "account", "occurred_at"),
        # a type's events in a time range, e.g. blocked requests in a review period (migration 0016)
        Index("ix_audit_events_type_time", "type", "occurred_at"),
        # write actions per session, from the index alone (migration 0005)
        Index("ix_audit_events_session_type", "session_id", "type"),
        # write actions only: under half the events, so a smaller index to probe per session
        # (migration 0006; queries must name the type as a literal to use it)
        Index(
            "ix_audit_events_actions",
            "session_id",
            postgresql_where=text("type = 'action.recorded'"),
            sqlite_where=text("type = 'action.recorded'"),
        ),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(64))
    actor_slack_id: Mapped[str | None] = mapped_column(String(32))
    actor_email: Mapped[str | None] = mapped_column(String(320))
    actor_role: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(128))
    customer_user: Mapped[str | None] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(36), index=True)
    session_id: Mapped[str | None] = mapped_column(String(36))
    #: canonical JSON text, exactly as hashed
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: the encoding the event was hashed in (bot.domain.audit.Encoding; migration 0012): 2,
    #: RFC 8785, for every event written now. The server default 1 (the encoding before it)
    #: labels the rows written before the column existed, and any row a release that predates
    #: it still inserts during a rolling upgrade, as what they are.
    encoding: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))


class AuditHead(Base):
    """A single row holding the chain head. Appenders lock it (SELECT … FOR UPDATE on
    PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE) so the chain never forks."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ApprovalDecision(str, enum.Enum):
    APPROVE = "approve"
    DENY = "deny"


class Approval(Base):
    """One approver's decision on a request or an extension. The unique key on the approver's
    canonical identity makes a double click, or the same person from two devices or under a
    second Enterprise Grid id, count once."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("subject_id", "approver_identity", name="uq_approvals_subject_approver"),
        # a subject's approvals, and its distinct approvers from the index alone (migration 0005)
        Index("ix_approvals_subject_decision", "subject_id", "decision", "approver_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the request id, or the extension id for an extension
    subject_id: Mapped[str] = mapped_column(String(36))
    approver_slack_id: Mapped[str] = mapped_column(String(32))
    #: e-mail (lower-case) or Grid enterprise user id, else the Slack id
    approver_identity: Mapped[str] = mapped_column(String(320))
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime]


class Extension(Base):
    """More time for a live session, asked with a fresh reason and approved like a request."""

    __tablename__ = "extensions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    minutes: Mapped[int] = mapped_column(Integer)
    #: pending | approved | denied | expired | cancelled
    state: Mapped[str] = mapped_column(String(16))
    approvals_required: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    pending_expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    new_expires_at: Mapped[datetime | None]

    session: Mapped[ImpersonationSession] = relationship(lazy="joined")


class MessageRef(Base):
    """A Slack message the app posted about a request, kept so it can be edited in place as
    the request changes state (the Teleport access-request plugin's pattern)."""

    __tablename__ = "message_refs"
    __table_args__ = (Index("ix_message_refs_subject", "subject_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: request id or extension id
    subject_id: Mapped[str] = mapped_column(String(36))
    #: approver | security
    purpose: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """A SaaS product's key for the product API (docs/product-api.md). The key is shown once,
    when it is created; only its SHA-256 is stored. A fast hash is right here because the key
    carries 256 random bits: slow password hashes defend low-entropy secrets, and nobody can
    search a 2^256 space however fast each guess is."""

    __tablename__ = "api_keys"

    #: the public part of the key (`ibk_<id>_<secret>`): looked up by, shown and audited
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: which product holds the key; recorded with every action it reports
    product: Mapped[str] = mapped_column(String(64))
    #: SHA-256 (hex) of the whole key
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(320))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(320))


class OutboxMessage(Base):
    """A Slack message owed because of a state change, written in the same
    transaction as the change and sent by the delivery job (bot/domain/outbox.py). It names
    what to say by ids only — never a token or a link — and is rendered from the state at
    delivery time. `target` groups the rows that concern one Slack message; they are
    delivered in order, one at a time."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_due", "state", "due_at"),
        Index("ix_outbox_target", "target", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: a request, session, extension or alert id, or a period key for digests and checkpoints
    subject_id: Mapped[str] = mapped_column(String(36))
    #: a Slack user id (a DM), or "security" for the policy's security channel
    recipient: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(96))
    #: pending | sending | sent | skipped | merged | failed
    state: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None]
    #: the row whose delivery also covered this one (same message, or one alert summary)
    merged_into: Mapped[int | None] = mapped_column(Integer)
    #: Slack's error code (never a message text, token or link)
    last_error: Mapped[str | None] = mapped_column(String(64))
    finished_at: Mapped[datetime | None]


class ChannelPace(Base):
    """The next moment a new message may be posted to a channel: Slack allows about one
    message per second per channel (https://api.slack.com/apis/rate-limits, "Posting
    messages"), so alert storms are coalesced rather than queued past that."""

    __tablename__ = "channel_pace"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_post_at: Mapped[datetime]


class JobClaim(Base):
    """Work a scheduled job has claimed, once: an insert that only one scheduler can make
    (a unique key), so two schedulers, or a restart, never repeat a notice or a digest."""

    __tablename__ = "job_claims"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    claimed_at: Mapped[datetime]


class Alert(Base):
    """An anomaly posted to the security channel; audited as alert.raised."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_raised_at", "raised_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    #: what the alert is about (an account, an agent, a request …): the deduplication key
    subject: Mapped[str] = mapped_column(String(128))
    raised_at: Mapped[datetime]
    account: Mapped[str | None] = mapped_column(String(128))
    agent_slack_id: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(36))
    session_id: Mapped[str | None] = mapped_column(String(36))
    #: canonical JSON of the facts that triggered it (counts, times; no secrets)
    details: Mapped[str] = mapped_column(Text)


class AlertMark(Base):
    """When a rule last alerted about a subject: an alert is raised again only once its
    window has passed (a conditional UPDATE, so concurrent sweeps raise it once)."""

    __tablename__ = "alert_marks"

    rule: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_raised_at: Mapped[datetime]


# Digests and anomaly sweeps read requests and sessions by time range; the access review
# counts a period's requests and sessions from these indexes alone (migration 0016).
Index(
    "ix_requests_period",
    ImpersonationRequest.created_at,
    ImpersonationRequest.state,
    ImpersonationRequest.approvals_required,
    ImpersonationRequest.ticket,
    ImpersonationRequest.previous_session_id,
    ImpersonationRequest.break_glass,
    ImpersonationRequest.id,
)
Index("ix_sessions_period", ImpersonationSession.started_at, ImpersonationSession.account_id, ImpersonationSession.agent_slack_id)
Index("ix_links_created_at", Link.created_at)


class SlackDelivery(Base):
    """A request Slack delivered, by a key that a replay of it repeats (its signature, or the
    event id Slack keeps across retries): the first delivery acts, any later one within
    Slack's 5-minute window does nothing. Pruned once no replay of it can pass verification."""

    __tablename__ = "slack_deliveries"

    #: SHA-256 (hex) of the signature or event id; the raw value is not kept
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    #: how many times it came again (the first replay is audited, the rest only counted)
    replays: Mapped[int] = mapped_column(Integer, default=0)


class SigningKeyRecord(Base):
    """The public half of a signing key (bot/domain/keyring.py). The JWKS publishes a key
    until `published_until` (unset: the key still signs); checkpoints verify against all."""

    __tablename__ = "signing_keys"

    #: RFC 7638 thumbprint, as in the JWT header and the checkpoint
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the raw public key, base64url (RFC 8037 `x`)
    x: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    #: when `keys rotate` replaced it: from then on it signs nothing new
    retired_at: Mapped[datetime | None]
    #: the JWKS serves it until every token it signed has expired
    published_until: Mapped[datetime | None]


class WebhookSubscription(Base):
    """An endpoint that receives notification webhooks (bot/domain/webhooks.py), signed per
    the Standard Webhooks spec with `secret` (`whsec_<base64>`; shown once when created)."""

    __tablename__ = "webhook_subscriptions"

    #: `ep_…`; the recipient of its outbox rows
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(64))
    #: comma-separated event types (bot.domain.webhooks.EventType values)
    event_types: Mapped[str] = mapped_column(String(255))
    #: only this account's events (an account's external id); None: every account
    account: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(255))
    removed_at: Mapped[datetime | None]


class WebhookEvent(Base):
    """One event raised for at least one subscription: the body exactly as sent, so that every
    retry sends the same bytes under the same `webhook-id` (this row's id)."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_created_at", "created_at"),)

    #: `msg_…`, the Standard Webhooks `webhook-id`
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    account: Mapped[str | None] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class HomeTab(Base):
    """Someone who opened the app's Home tab: their Home is published again through the
    outbox when something it shows changes (bot/domain/home.py). `sees_security`: their Home
    shows what security sees (live sessions across accounts, alerts, the last checkpoint), so
    a change the security channel is told of changes it too; set from their powers each time
    they open it."""

    __tablename__ = "home_tabs"

    slack_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    opened_at: Mapped[datetime]
    sees_security: Mapped[bool] = mapped_column(Boolean, default=False)


class PersonalValue(Base):
    """One personal value an audit event refers to (bot/domain/personal.py, docs/privacy.md).

    The event holds `ref` in place of the value: "pd:" and the HMAC-SHA256 of the value under
    this row's own random `key`, so the chain's hash commits to the value while the value
    itself lives here, erasable. Erasing a person deletes their rows; without the key the
    reference says nothing about the value, and the chain still verifies (migration 0015)."""

    __tablename__ = "personal_values"
    __table_args__ = (
        Index("ix_personal_values_subject", "account", "customer_user"),
        Index("ix_personal_values_created", "created_at"),
    )

    ref: Mapped[str] = mapped_column(String(67), primary_key=True)
    #: the data subject: the customer user (account id and the product's user id)
    account: Mapped[str | None] = mapped_column(String(128))
    customer_user: Mapped[str] = mapped_column(String(128))
    #: 32 random bytes, hex: the HMAC key of this value alone
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
