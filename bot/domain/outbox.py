"""The Slack outbox: every Slack message a state change causes is written
here in the same transaction as the change, and sent afterwards by a delivery run (the
scheduler's `outbox.deliver` job every few seconds, and at once by the listener or page that
made the change). A process that dies between its commit and its Slack call loses nothing:
the row is still there for the next run.

A row names its message by ids only — kind, subject (request, session, alert … id) and
recipient — never text, a token or a link. The Slack face renders it from the state at
delivery time (bot/slack/courier.py), so a late delivery shows the truth, and several rows
about one message (its `target`) collapse into one edit.

Claiming (the pattern of "transactional outbox" relays such as Debezium's and Rails'
solid_queue): a delivery run takes a row with one conditional UPDATE
(`… WHERE id = :id AND state = 'pending' AND due_at <= :now AND no earlier row of the same
target is pending or sending`), setting a random claim token and a lease. Of two schedulers
exactly one wins a row, rows about one message go out one at a time and in order, and a row
whose sender died is taken again once its lease has passed. Completion is conditional on the
claim token.

Outcomes: Slack's 429 is retried after its Retry-After; a server error or a broken connection
with exponential backoff and jitter, up to MAX_ATTEMPTS (a webhook on its own, longer schedule,
WEBHOOK_RETRY_DELAYS); any other Slack error is permanent:
logged and audited as `notify.failed`, never dropped silently. The message's `ts` is kept
(message_refs, or the request's agent_channel/agent_message_ts) so that later rows edit it.

Posts to a channel are paced (ChannelPace) to one per PACE_SECONDS, Slack's documented rate
for posting to one channel; meanwhile pending alerts accumulate and go out together as one
summary, so a storm never floods the channel and no alert is lost. A run that finds a
channel's next slot taken may wait for it (`pace_wait`), so a queue of posts drains at that
rate rather than at one per scheduler tick. Rows that warn people — alerts, break-glass alerts,
the notice to a revoked agent — are claimed before routine ones (URGENT_KINDS): an alert never
waits behind a queue of feed updates for the same channel's slots.

Delivery is at least once: a sender that dies after Slack accepted a new message and before
it recorded the `ts` makes the next run post it again (Slack has no idempotency key for
chat.postMessage). The window is one HTTP round trip; edits are idempotent.
"""
from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Insert, Integer, Select, String, and_, bindparam, case, exists, insert, literal, or_, select, union_all, update
from sqlalchemy.orm import Session, aliased

from bot.db.base import UTCDateTime, affected_rows, table_of
from bot.db.engine import reading
from bot.db.models import ChannelPace, HomeTab, ImpersonationRequest, MessageRef, OutboxMessage
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.messages import (
    FAILED,
    MERGED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    Delivered,
    Delivery,
    Kind,
    MessageRef_,
    Outcome,
    Permanent,
    RetryAfter,
    Sent,
    Skipped,
    Transient,
)
from bot.domain.once import insert_once
from bot.domain.ports import Courier

log = logging.getLogger(__name__)

#: recipient meaning "the security channel named in the policy" (resolved at delivery, so a
#: row enqueued without a policy at hand still goes to the channel configured when it is sent)
SECURITY = "security"

#: a claimed row not completed within its lease is taken again (its sender died). The lease
#: must outlast the delivery: every kind but the digest makes one Slack call, which slack_sdk
#: gives up after 30 s (twice that with its one retry after a broken connection; outbox
#: deliveries never sleep through a 429, bot/wiring.py), so 2 minutes; a digest uploads its
#: report files before posting (several calls), so 10. Short enough that a link DM whose
#: sender died in the send is taken again well inside the default 5-minute redeem window (it
#: was 5 minutes for every kind: such a DM arrived as the link expired).
LEASE = timedelta(minutes=2)
DIGEST_LEASE = timedelta(minutes=10)
#: the longest one send may take (slack_sdk's WebClient gives up after 30 s, the webhook
#: sender after TIMEOUT_SECONDS): a row claimed in a group (_deliver_together) is sent only
#: while this much of its lease is left, so that no send outlives its claim
SEND_TIMEOUT = timedelta(seconds=30)
#: the most rows an immediate delivery claims together (a change owes one to about ten)
GROUP_MAX = 16

#: Slack's rate-limit guide (https://docs.slack.dev/apis/web-api/rate-limits, "Posting
#: messages"): chat.postMessage "generally allows posting one message per second per channel",
#: short bursts beyond it without guarantee; so one new message per channel per second
PACE_SECONDS = 1.0
#: transient failures: delays of BACKOFF_BASE·2^(n−1), capped, each cut by up to half at random
#: ("equal jitter", AWS Architecture Blog "Exponential Backoff And Jitter") so that retries from
#: several schedulers spread out; after MAX_ATTEMPTS the row fails and is audited
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=15)
MAX_ATTEMPTS = 10
#: alerts carried by one summary message: one section (with its Revoke button) per alert,
#: within Block Kit's 50 blocks per message with room for a header and a footer
ALERT_BATCH_MAX = 40


#: claimed before every other kind in a delivery run, whatever their age: what security must
#: act on (an alert, break-glass) and the revoked agent's notice. Older rows of the same message
#: still go first (a target's rows are delivered in order).
URGENT_KINDS = frozenset({Kind.ALERT, Kind.BREAK_GLASS, Kind.NOTICE})


#: rows that change what a Home shows, and so owe one: a DM's recipient's own Home, or, for
#: the security channel's, every Home showing security's view (bot/domain/home.py)
HOME_SOURCES = frozenset({Kind.AGENT, Kind.AGENT_REQUEST, Kind.APPROVER, Kind.FEED, Kind.ALERT, Kind.BREAK_GLASS, Kind.CHECKPOINT})


def lease_for(kind: Kind) -> timedelta:
    """How long a claim of a row of this kind lasts (LEASE, DIGEST_LEASE)."""
    return DIGEST_LEASE if kind is Kind.DIGEST else LEASE


#: a webhook's retries, after its first attempt: the schedule Standard Webhooks' reference
#: implementation (Svix, "Retry schedule") uses — immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
#: 10 h, 10 h — so a receiver that is down for most of a day still gets every event. A Slack
#: message is worth less a day late; a customer's record of who accessed their account is not.
WEBHOOK_RETRY_DELAYS = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=5), timedelta(hours=10), timedelta(hours=10),
)


def max_attempts_for(kind: Kind) -> int:
    return len(WEBHOOK_RETRY_DELAYS) + 1 if kind is Kind.WEBHOOK else MAX_ATTEMPTS


#: kinds whose subject is a request id / a session id (for the audit event of a failure)
REQUEST_SUBJECTS = frozenset({Kind.AGENT, Kind.AGENT_REQUEST, Kind.FEED, Kind.APPROVER, Kind.REMINDER, Kind.BREAK_GLASS})
SESSION_SUBJECTS = frozenset({Kind.WARNING, Kind.NOTICE})


@dataclass
class DeliveryReport:
    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.skipped + self.retried + self.failed


# ---------------------------------------------------------------------------- enqueueing


def target_of(kind: Kind, subject_id: str, recipient: str) -> str:
    return f"{kind.value}:{subject_id}:{recipient}"


#: one owed message: its kind, its subject's id and its recipient (a person, or SECURITY)
Owed = tuple[Kind, str, str]
_COLUMNS = ["kind", "subject_id", "recipient", "target", "state", "created_at", "due_at", "attempts"]
#: rows per INSERT: SQLite takes at most 500 terms in one compound SELECT
#: (SQLITE_MAX_COMPOUND_SELECT, https://www.sqlite.org/limits.html), and a row with Homes is two
_ROWS_PER_INSERT = 100


def _homes_of(who) -> Select:
    """One Home row per person with a Home tab that `who` selects (bound to the statement's
    `created_at` / `due_at`): nobody's Home is published unasked."""
    home = literal(Kind.HOME.value, String)
    return select(
        home, HomeTab.slack_id, HomeTab.slack_id, home + literal(":", String) + HomeTab.slack_id + literal(":", String) + HomeTab.slack_id,
        literal(PENDING, String), bindparam("created_at", type_=UTCDateTime()), bindparam("due_at", type_=UTCDateTime()), literal(0, Integer),
    ).where(who)


#: what a row owes the Homes (HOME_SOURCES): nothing, its person's, or every Home showing
#: security's view (HomeTab.sees_security)
_NO_HOMES, _PERSONS_HOME, _SECURITY_HOMES = range(3)


def _homes_owed(kind: Kind, recipient: str) -> int:
    if kind not in HOME_SOURCES:
        return _NO_HOMES
    return _SECURITY_HOMES if recipient == SECURITY else _PERSONS_HOME


_INSERTS: dict[tuple[int, ...], Insert] = {}


def _insert_for(shape: tuple[int, ...]) -> Insert:
    """One INSERT … SELECT for rows of this shape (what each owes the Homes), each row followed
    by the Home rows it owes, ids taken in that order (the outbox sends a channel's messages
    oldest first). Built once per shape: statement construction is costly on hot paths."""
    statement = _INSERTS.get(shape)
    if statement is not None:
        return statement
    parts = []
    for n, homes in enumerate(shape):
        recipient = bindparam(f"recipient_{n}", type_=String)
        parts.append(
            select(
                bindparam(f"kind_{n}", type_=String), bindparam(f"subject_id_{n}", type_=String), recipient,
                bindparam(f"target_{n}", type_=String), literal(PENDING, String), bindparam("created_at", type_=UTCDateTime()),
                bindparam("due_at", type_=UTCDateTime()), literal(0, Integer), literal(2 * n, Integer).label("position"),
            )
        )
        if homes != _NO_HOMES:
            who = HomeTab.sees_security.is_(True) if homes == _SECURITY_HOMES else HomeTab.slack_id == recipient
            parts.append(_homes_of(who).add_columns(literal(2 * n + 1, Integer).label("position")))
    rows = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("owed")
    ordered = select(*list(rows.c)[:-1]).order_by(rows.c.position)
    statement = insert(table_of(OutboxMessage)).from_select(_COLUMNS, ordered)
    _INSERTS[shape] = statement
    return statement


def enqueue_all(db: Session, owed: Sequence[Owed], *, now: datetime | None = None) -> list[str]:
    """Owe these messages, inside the caller's transaction (so they commit with the state
    change they report, or not at all), each with the Home publishes it owes (HOME_SOURCES),
    in one statement however many they are. Returns the rows' targets, in order, for an
    immediate delivery."""
    now = now or utcnow()
    targets = [target_of(kind, subject_id, recipient) for kind, subject_id, recipient in owed]
    # A Core INSERT in the session's transaction, not ORM objects: every state change owes
    # one to six of these, and the unit of work's bookkeeping for objects nobody reads again
    # cost more than the insert itself. (The table has no foreign keys, so it does not matter
    # that this runs before the session flushes the change's own ORM objects.)
    for start in range(0, len(owed), _ROWS_PER_INSERT):
        chunk = owed[start : start + _ROWS_PER_INSERT]
        parameters: dict[str, object] = {"created_at": now, "due_at": now}
        for n, (kind, subject_id, recipient) in enumerate(chunk):
            parameters.update(
                {f"kind_{n}": kind.value, f"subject_id_{n}": subject_id, f"recipient_{n}": recipient, f"target_{n}": targets[start + n]}
            )
        db.execute(_insert_for(tuple(_homes_owed(kind, recipient) for kind, _, recipient in chunk)), parameters)
    return targets


def enqueue(db: Session, kind: Kind, subject_id: str, *, recipient: str = SECURITY, now: datetime | None = None) -> str:
    """Owe one message (enqueue_all); returns its target."""
    return enqueue_all(db, [(kind, subject_id, recipient)], now=now)[0]


_INSERT_HOME = insert(table_of(OutboxMessage)).from_select(_COLUMNS, _homes_of(HomeTab.slack_id == bindparam("person", type_=String)))


def enqueue_home(db: Session, slack_id: str, *, now: datetime) -> str:
    """Owe one person's Home a publish (a change only they see, such as their own vote), if
    they have one; returns its target."""
    db.execute(_INSERT_HOME, {"person": slack_id, "created_at": now, "due_at": now})
    return target_of(Kind.HOME, slack_id, slack_id)


def granted(request: ImpersonationRequest) -> list[Owed]:
    """What a grant owes: the agent's link DM (rendered at delivery with the link derived again
    from the request's id; the row holds no token) and the security channel's live feed
    message."""
    return [(Kind.AGENT, request.id, request.agent_slack_id), (Kind.FEED, request.id, SECURITY)]


def enqueue_granted(db: Session, request: ImpersonationRequest, *, now: datetime) -> list[str]:
    return enqueue_all(db, granted(request), now=now)


def enqueue_break_glass(db: Session, request: ImpersonationRequest, *, now: datetime) -> list[str]:
    """A break-glass grant: the agent's link DM, the alert that approval was skipped, then the
    grant's feed message. The last two are new posts to the security channel, paced one per
    PACE_SECONDS: the alert is owed first so that it is the one sent at once."""
    return enqueue_all(
        db, [(Kind.AGENT, request.id, request.agent_slack_id), (Kind.BREAK_GLASS, request.id, SECURITY), (Kind.FEED, request.id, SECURITY)], now=now
    )


def enqueue_agent_request(db: Session, request: ImpersonationRequest, *, now: datetime) -> str:
    """The agent's DM about a gated request: "approval needed" now, its outcome later."""
    return enqueue(db, Kind.AGENT_REQUEST, request.id, recipient=request.agent_slack_id, now=now)


def break_glass_target(request_id: str) -> str:
    return target_of(Kind.BREAK_GLASS, request_id, SECURITY)


def enqueue_session_started(db: Session, request_id: str, agent_slack_id: str, *, now: datetime) -> list[str]:
    """A redemption: the agent's DM becomes the live session's; the feed shows when it ends."""
    return enqueue_all(db, [(Kind.AGENT, request_id, agent_slack_id), (Kind.FEED, request_id, SECURITY)], now=now)


def enqueue_session_over(db: Session, request: ImpersonationRequest, session_id: str, *, revoked: bool, now: datetime) -> list[str]:
    """A session ended, expired or was revoked: the agent's DM and any expiry warning lose
    their buttons, the feed says how it ended, and a revoked agent is notified."""
    agent = request.agent_slack_id
    owed: list[Owed] = [(Kind.AGENT, request.id, agent), (Kind.WARNING, session_id, agent), (Kind.FEED, request.id, SECURITY)]
    if revoked:
        owed.append((Kind.NOTICE, session_id, agent))
    return enqueue_all(db, owed, now=now)


# ---------------------------------------------------------------------------- delivering


def deliver_due(
    ctx: DomainContext,
    courier: Courier,
    *,
    now: datetime | None = None,
    limit: int = 200,
    targets: Iterable[str] | None = None,
    pace_wait: timedelta = timedelta(0),
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Send what is due, urgent kinds first, then oldest first: claim a row, render and send
    it, record the outcome. `targets`: only rows about these messages (an immediate delivery
    after a change). `pace_wait`: how long this run may wait, in all, for a channel's next
    posting slot when rows are held back only by pacing (the scheduler's run; an immediate
    delivery does not wait). `now`: a fixed clock (tests; it never waits); else `clock`, read
    at each step, with `sleep` to wait."""
    read_clock: Callable[[], datetime] = (lambda: now) if now is not None else (clock or utcnow)
    report = DeliveryReport()
    wanted = list(targets) if targets is not None else None
    if wanted == []:
        return report
    deadline = read_clock() + pace_wait if now is None else None
    while True:
        paced_until = _deliver_pass(ctx, courier, read_clock, limit, wanted, report)
        if paced_until is None or deadline is None or paced_until > deadline:
            return report
        before = read_clock()
        sleep(max((paced_until - before).total_seconds(), 0.0))
        if read_clock() <= before:
            # a clock that does not move (frozen in a test, or stepped back) would wait forever
            return report


class InlineDeliverer:
    """The Deliverer port (bot.domain.ports) that sends the rows one change owed in the calling
    thread, before returning, through `courier` and with the claims of the scheduler's job
    (whichever comes first sends; never both). Their rows go out in the order they were
    written (an approval's link DM after the edit that announces it), each claimed on its own:
    one failing row does not stop the next. Never raises: what is not sent stays owed, and the
    scheduler's outbox job sends it. bot.web.background.BackgroundDeliverer runs it after the
    response; a Bolt app built without one (tests of the listeners' Slack calls) uses it as is."""

    def __init__(self, ctx: DomainContext, courier: Courier) -> None:
        self._ctx = ctx
        self.courier = courier

    def deliver(self, targets: Sequence[str]) -> None:
        owed = list(dict.fromkeys(targets))
        if not owed:
            return
        try:
            deliver_due(self._ctx, self.courier, targets=owed)
        except Exception:  # noqa: BLE001 - the outbox job retries whatever was not sent
            log.exception("immediate delivery of outbox targets failed; the scheduler will retry them")


def _deliver_pass(
    ctx: DomainContext,
    courier: Courier,
    clock: Callable[[], datetime],
    limit: int,
    wanted: list[str] | None,
    report: DeliveryReport,
) -> datetime | None:
    """One pass over what is due; returns the earliest moment a row held back by its
    channel's pacing may be posted (None: nothing was held back)."""
    candidates = _candidates(ctx, clock(), limit, wanted)
    if wanted is not None and 1 < len(candidates) <= GROUP_MAX:
        return _deliver_together(ctx, courier, candidates, clock, report)
    paced_until: datetime | None = None
    for row_id in candidates:
        try:
            outcome = _deliver_row(ctx, courier, row_id, clock)
        except Exception:  # noqa: BLE001 - a database error on one row must not stop the others
            log.exception("outbox %s: delivery failed; it stays owed and is retried", row_id)
            continue
        if isinstance(outcome, _Paced):
            paced_until = outcome.until if paced_until is None else min(paced_until, outcome.until)
            continue
        if outcome is not None:
            _count(ctx, report, *outcome)
    return paced_until


def _count(ctx: DomainContext, report: DeliveryReport, delivery: Delivery, result: Outcome) -> None:
    if isinstance(result, (Sent, Delivered)):
        report.sent += 1
    elif isinstance(result, Skipped):
        report.skipped += 1
    elif isinstance(result, (RetryAfter, Transient)) and _state_of(ctx, delivery.id) == PENDING:
        report.retried += 1
    else:
        report.failed += 1


def _deliver_together(
    ctx: DomainContext, courier: Courier, candidates: list[int], clock: Callable[[], datetime], report: DeliveryReport
) -> datetime | None:
    """An immediate delivery of the few rows one change owed: every row is claimed before any
    is rendered, so each still shows the state as it is after its claim and the courier may
    read a subject's state once for all the rows of the group (a deciding click's approver
    DMs and the agent's DM show one request); then they are sent in order, each outcome
    recorded after its send. A row whose lease the sends ahead of it used up (less than
    SEND_TIMEOUT left) is given back unsent, its attempt not spent, for the next delivery run.

    Each claim and each outcome is a transaction of its own, as in the scheduler's runs. This
    runs right after an answer, beside the requests that follow it, and SQLite has one writer
    (bot/db/engine.py): a transaction spanning the group's rows held the write lock for the
    whole group while the next request's write waited behind it (docs/design-decisions.md,
    "Watching sessions", the outbox's claims: a link redemption's p50 was about 30 % higher)."""
    now = clock()
    group = secrets.token_hex(8)
    claimed: list[Delivery] = []
    paced_until: datetime | None = None
    # one read, outside any write transaction, for what the claims need of the rows and what
    # never changes once a row is written (its kind, subject, recipient and target)
    with reading(ctx.sessions) as db:
        loaded = {row.id: row for row in db.execute(select(OutboxMessage).where(OutboxMessage.id.in_(candidates))).scalars()}
    for row_id in candidates:
        delivery = _claim(ctx, row_id, now, group=group, row=loaded.get(row_id))
        if isinstance(delivery, _Paced):
            paced_until = delivery.until if paced_until is None else min(paced_until, delivery.until)
        elif delivery is not None:
            claimed.append(delivery)
    for delivery in claimed:
        if clock() + SEND_TIMEOUT > now + lease_for(delivery.kind):
            outcome: Outcome = RetryAfter(0.0, "claim_ran_out")
        else:
            outcome = _send(ctx, courier, delivery)
        try:
            _complete(ctx, delivery, outcome, now=clock())
        except Exception:  # noqa: BLE001 - it stays claimed; its lease runs out and it is retried
            log.exception("outbox %s: recording the outcome failed", delivery.id)
        _count(ctx, report, delivery, outcome)
    return paced_until


@dataclass(frozen=True)
class _Paced:
    """A row not claimed because its channel's next posting slot is not yet free."""

    until: datetime


def _deliver_row(ctx: DomainContext, courier: Courier, row_id: int, clock: Callable[[], datetime]) -> tuple[Delivery, Outcome] | _Paced | None:
    """Claim one row, render and send it, record the outcome; None if it was not ours to send,
    _Paced if it waits for its channel's next slot."""
    delivery = _claim(ctx, row_id, clock())
    if delivery is None or isinstance(delivery, _Paced):
        return delivery
    outcome = _send(ctx, courier, delivery)
    _complete(ctx, delivery, outcome, now=clock())
    return delivery, outcome


def _send(ctx: DomainContext, courier: Courier, delivery: Delivery) -> Outcome:
    sender = ctx.webhook_sender if delivery.kind is Kind.WEBHOOK else courier
    try:
        if sender is None:  # _candidates leaves webhook rows alone without a sender
            raise RuntimeError("no webhook sender is configured")
        return sender.deliver(delivery)
    except Exception as exc:  # noqa: BLE001 - a courier bug or a dead connection: retry later
        log.exception("outbox %s (%s %s): delivery raised %s", delivery.id, delivery.kind.value, delivery.subject_id, type(exc).__name__)
        return Transient(type(exc).__name__[:64])


def _due(now: datetime):
    return or_(
        and_(OutboxMessage.state == PENDING, OutboxMessage.due_at <= now),
        and_(OutboxMessage.state == SENDING, OutboxMessage.lease_until < now),
    )


def _candidates(ctx: DomainContext, now: datetime, limit: int, targets: list[str] | None) -> list[int]:
    """The oldest due row of each target (later rows of a target wait for it), rows of the
    URGENT_KINDS first: new posts to a channel take its paced slots in this order."""
    urgent = case((OutboxMessage.kind.in_([k.value for k in URGENT_KINDS]), 0), else_=1)
    statement = select(OutboxMessage.id, OutboxMessage.target).where(_due(now)).order_by(urgent, OutboxMessage.id).limit(limit)
    if targets is not None:
        statement = statement.where(OutboxMessage.target.in_(targets))
    if ctx.webhook_sender is None:
        # a process that cannot send webhooks (a CLI command, a test without one) leaves
        # them owed to one that can, rather than spending their attempts
        statement = statement.where(OutboxMessage.kind != Kind.WEBHOOK.value)
    with reading(ctx.sessions) as db:
        rows = db.execute(statement).all()
    seen: set[str] = set()
    out = []
    for row_id, target in rows:
        if target not in seen:
            seen.add(target)
            out.append(row_id)
    return out


def _existing_ref(db: Session, row: OutboxMessage, recipient: str | None) -> MessageRef_ | None:
    if row.kind == Kind.AGENT.value:
        # two columns, not the request with its account, user and flags: this is on every
        # delivery of the agent's DM
        found = db.execute(
            select(ImpersonationRequest.agent_channel, ImpersonationRequest.agent_message_ts).where(ImpersonationRequest.id == row.subject_id)
        ).first()
        if found is not None and found[0] and found[1]:
            return MessageRef_(found[0], found[1])
        return None
    if recipient is None:
        return None
    ref = db.execute(
        select(MessageRef)
        .where(MessageRef.subject_id == row.subject_id, MessageRef.purpose == row.kind, MessageRef.recipient == recipient)
        .order_by(MessageRef.id)
        .limit(1)
    ).scalar_one_or_none()
    return MessageRef_(ref.channel, ref.ts) if ref is not None else None


def _take_posting_slot(db: Session, channel: str, now: datetime) -> datetime | None:
    """One new message per PACE_SECONDS per channel, across every scheduler: a conditional
    UPDATE of the channel's row (inserted the first time). None when the slot is ours, else
    when the channel's next slot opens."""
    next_at = now + timedelta(seconds=PACE_SECONDS)
    if insert_once(db, ChannelPace, {"channel": channel, "next_post_at": next_at}):
        return None
    taken = affected_rows(
        db,
        update(ChannelPace)
        .where(ChannelPace.channel == channel, ChannelPace.next_post_at <= now)
        .values(next_post_at=next_at)
        .execution_options(synchronize_session=False)
    )
    if taken == 1:
        return None
    opens = db.execute(select(ChannelPace.next_post_at).where(ChannelPace.channel == channel)).scalar_one_or_none()
    return opens or next_at


_EARLIER = aliased(OutboxMessage)
#: the claim, built once with bind parameters (statement construction and its cache key were a
#: third of a claim's CPU, py-spy on the approve click's five deliveries): the row, if it is
#: due and no earlier row of its target is still pending or being sent
_CLAIM = (
    update(OutboxMessage)
    .where(
        OutboxMessage.id == bindparam("row_id"),
        or_(
            and_(OutboxMessage.state == PENDING, OutboxMessage.due_at <= bindparam("now")),
            and_(OutboxMessage.state == SENDING, OutboxMessage.lease_until < bindparam("now")),
        ),
        ~exists().where(
            _EARLIER.target == OutboxMessage.target,
            _EARLIER.id < OutboxMessage.id,
            _EARLIER.state.in_((PENDING, SENDING)),
        ),
    )
    .values(state=SENDING, claim_token=bindparam("token"), lease_until=bindparam("lease_until"), attempts=OutboxMessage.attempts + 1)
    .returning(OutboxMessage.attempts)
    .execution_options(synchronize_session=False)
)
def _pending_locked(candidates):
    """The pending rows among `candidates`, locked for a merge: rows another scheduler holds
    are skipped (SKIP LOCKED on PostgreSQL; SQLite writers are already serialised)."""
    return candidates.where(OutboxMessage.state == PENDING).with_for_update(skip_locked=True)


#: later pending rows about the same message (merged into the claimed one)
_LATER_OF_TARGET = _pending_locked(
    select(OutboxMessage.id).where(OutboxMessage.target == bindparam("target"), OutboxMessage.id > bindparam("row_id"))
)
_MERGE_ROW = (
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("row_id"), OutboxMessage.state == PENDING)
    .values(state=MERGED, merged_into=bindparam("into"))
    .execution_options(synchronize_session=False)
)


def _claim(
    ctx: DomainContext, row_id: int, now: datetime, *, group: str | None = None, row: OutboxMessage | None = None
) -> Delivery | _Paced | None:
    """Claim one row, in a transaction of its own (`row`: the row, when the caller has read it
    already; `group`: the claim group of an immediate delivery). A row not claimed (paced, or
    not ours) leaves nothing written: a posting slot taken for it is given back."""
    with ctx.sessions() as db, db.begin():
        claimed = _claim_in(db, ctx, row_id, now, group=group, row=row)
        if not isinstance(claimed, Delivery):
            db.rollback()
        return claimed


def _claim_in(
    db: Session, ctx: DomainContext, row_id: int, now: datetime, *, group: str | None, row: OutboxMessage | None
) -> Delivery | _Paced | None:
    """_claim's work, in its transaction."""
    row = row if row is not None else db.get(OutboxMessage, row_id)
    if row is None:
        return None
    kind = Kind(row.kind)
    recipient = ctx.policy.alerts.security_channel if row.recipient == SECURITY else row.recipient
    ref = _existing_ref(db, row, recipient) if kind not in (Kind.WEBHOOK, Kind.HOME) else None
    # A new message in a channel waits for the channel's next posting slot (pacing), and
    # a Home for its person's next slot.
    slot = f"home:{row.subject_id}" if kind is Kind.HOME else recipient if ref is None and row.recipient == SECURITY else None
    if slot is not None and recipient is not None:
        opens = _take_posting_slot(db, slot, now)
        if opens is not None:
            return _Paced(opens)
    token = secrets.token_hex(16)
    attempts = db.execute(
        _CLAIM, {"row_id": row_id, "now": now, "token": token, "lease_until": now + lease_for(kind)}
    ).scalar_one_or_none()
    if attempts is None:
        return None
    # Later rows about the same message are covered by this delivery: it renders the
    # state as it is now, which includes every change committed before this claim.
    _merge(db, row_id, _LATER_OF_TARGET, {"target": row.target, "row_id": row_id})
    batch: tuple[str, ...] = ()
    if kind is Kind.ALERT:
        others = (
            select(OutboxMessage.id)
            .where(OutboxMessage.kind == Kind.ALERT.value, OutboxMessage.recipient == row.recipient, OutboxMessage.id != row_id, OutboxMessage.due_at <= now)
            .order_by(OutboxMessage.id)
            .limit(ALERT_BATCH_MAX - 1)
        )
        merged = _merge(db, row_id, _pending_locked(others))
        subjects = dict(db.execute(select(OutboxMessage.id, OutboxMessage.subject_id).where(OutboxMessage.id.in_(merged))).all()) if merged else {}
        batch = (row.subject_id, *[subjects[i] for i in merged])
    return Delivery(row.id, kind, row.subject_id, recipient, attempts, token, ref, batch, claim_group=group)


def _merge(db: Session, into: int, candidates, parameters: dict[str, object] | None = None) -> list[int]:
    """Mark the rows `candidates` selects (pending, locked: `_pending_locked`) as covered by
    row `into`; returns their ids. The UPDATE re-checks `pending`, so a row is merged only
    once."""
    ids = list(db.execute(candidates, parameters or {}).scalars())
    if not ids:
        return []
    taken = []
    for row_id in ids:
        done = affected_rows(db, _MERGE_ROW, {"row_id": row_id, "into": into})
        if done == 1:
            taken.append(row_id)
    return taken


def backoff(attempts: int, *, rng: Callable[[float, float], float] = random.uniform) -> timedelta:
    """The wait after the `attempts`-th transient failure (1-based)."""
    full = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)
    return full / 2 + full / 2 * rng(0.0, 1.0)


def retry_delay(kind: Kind, attempts: int, *, rng: Callable[[float, float], float] = random.uniform) -> timedelta:
    """The wait after a row's `attempts`-th transient failure: WEBHOOK_RETRY_DELAYS (each
    stretched by up to a tenth at random, so that a receiver's recovery is not met by every
    retry at once) for a webhook, `backoff` for a Slack message."""
    if kind is Kind.WEBHOOK:
        delay = WEBHOOK_RETRY_DELAYS[min(max(attempts, 1), len(WEBHOOK_RETRY_DELAYS)) - 1]
        return delay + delay / 10 * rng(0.0, 1.0)
    return backoff(attempts, rng=rng)


def _complete(ctx: DomainContext, delivery: Delivery, outcome: Outcome, *, now: datetime) -> None:
    with ctx.sessions() as db, db.begin():
        _complete_in(db, delivery, outcome, now=now)


def _complete_in(db: Session, delivery: Delivery, outcome: Outcome, *, now: datetime) -> None:
    """Record one send's outcome in the caller's transaction."""
    mine = and_(OutboxMessage.id == delivery.id, OutboxMessage.claim_token == delivery.token, OutboxMessage.state == SENDING)

    def finish(**values) -> bool:
        done = affected_rows(db, update(OutboxMessage).where(mine).values(claim_token=None, lease_until=None, **values).execution_options(synchronize_session=False))
        if done != 1:
            log.warning("outbox %s: lease lost before completion (another scheduler took it over)", delivery.id)
        return done == 1

    if isinstance(outcome, Sent):
        finish(state=SENT, finished_at=now, last_error=None)
        _record_ref(db, delivery, outcome, now)
    elif isinstance(outcome, Delivered):
        finish(state=SENT, finished_at=now, last_error=None)
    elif isinstance(outcome, Skipped):
        finish(state=SKIPPED, finished_at=now, last_error=outcome.reason[:64])
    elif isinstance(outcome, RetryAfter):
        # Being told to slow down is not a failure of this message: no attempt is spent.
        finish(state=PENDING, due_at=now + timedelta(seconds=max(outcome.seconds, 0.0)), attempts=max(delivery.attempts - 1, 0), last_error=outcome.error[:64])
        log.info("outbox %s (%s): %s; retrying in %.0f s", delivery.id, delivery.kind.value, outcome.error, outcome.seconds)
    elif isinstance(outcome, Transient) and delivery.attempts < max_attempts_for(delivery.kind):
        wait = retry_delay(delivery.kind, delivery.attempts)
        finish(state=PENDING, due_at=now + wait, last_error=outcome.error[:64])
        log.warning(
            "outbox %s (%s): %s; retry %d of %d in %.0f s",
            delivery.id, delivery.kind.value, outcome.error, delivery.attempts, max_attempts_for(delivery.kind), wait.total_seconds(),
        )
    else:
        error = outcome.error if isinstance(outcome, (Transient, Permanent)) else "unknown"
        if finish(state=FAILED, finished_at=now, last_error=error[:64]):
            _audit_failure(db, delivery, error, now)


def _record_ref(db: Session, delivery: Delivery, sent: Sent, now: datetime) -> None:
    """Keep the message's ts so that later rows about it edit it in place."""
    if delivery.ref is not None and (delivery.ref.channel, delivery.ref.ts) == (sent.channel, sent.ts):
        return
    if delivery.kind is Kind.AGENT:
        db.execute(
            update(ImpersonationRequest)
            .where(ImpersonationRequest.id == delivery.subject_id, ImpersonationRequest.agent_message_ts.is_(None))
            .values(agent_channel=sent.channel, agent_message_ts=sent.ts)
            .execution_options(synchronize_session=False)
        )
        return
    for subject in delivery.batch or (delivery.subject_id,):
        db.add(MessageRef(subject_id=subject, purpose=delivery.kind.value, recipient=delivery.recipient or sent.channel, channel=sent.channel, ts=sent.ts, created_at=now))


def _audit_failure(db: Session, delivery: Delivery, error: str, now: datetime) -> None:
    merged = list(db.execute(select(OutboxMessage.id).where(OutboxMessage.merged_into == delivery.id).order_by(OutboxMessage.id)).scalars())
    log.warning(
        "outbox %s (%s %s to %s) failed for good after %d attempt(s): %s",
        delivery.id, delivery.kind.value, delivery.subject_id, delivery.recipient, delivery.attempts, error,
    )
    audit.append(
        db,
        EventDraft(
            type="notify.failed",
            actor=Actor.system("outbox"),
            # an approver's DM may be about an extension: only a request's id is a request id
            request_id=delivery.subject_id if delivery.kind in REQUEST_SUBJECTS and db.get(ImpersonationRequest, delivery.subject_id) is not None else None,
            session_id=delivery.subject_id if delivery.kind in SESSION_SUBJECTS else None,
            details={
                "outbox_id": delivery.id,
                "kind": delivery.kind.value,
                "subject_id": delivery.subject_id,
                "recipient": delivery.recipient,
                "error": error[:64],
                "attempts": delivery.attempts,
                "covered": merged,
                "alerts": list(delivery.batch),
            },
        ),
        now=now,
    )


def _state_of(ctx: DomainContext, row_id: int) -> str | None:
    with reading(ctx.sessions) as db:
        return db.execute(select(OutboxMessage.state).where(OutboxMessage.id == row_id)).scalar_one_or_none()


# ---------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    subject_id: str
    recipient: str
    state: str
    attempts: int
    due_at: datetime
    last_error: str | None
    merged_into: int | None


def rows(ctx: DomainContext, *, kinds: Sequence[Kind] | None = None) -> list[OutboxRow]:
    """Every row, oldest first (tests and operators' checks)."""
    statement = select(OutboxMessage).order_by(OutboxMessage.id)
    if kinds:
        statement = statement.where(OutboxMessage.kind.in_([k.value for k in kinds]))
    with reading(ctx.sessions) as db:
        return [
            OutboxRow(r.id, r.kind, r.subject_id, r.recipient, r.state, r.attempts, r.due_at, r.last_error, r.merged_into)
            for r in db.execute(statement).scalars()
        ]
