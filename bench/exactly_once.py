"""After a run against several web processes and schedulers sharing one database: was every
answered request's change made once, every Slack message sent once, and the audit chain left
whole? The scale-out bench (bench/scaleout_bench.py) and its test (tests/jobs/test_scale_out.py)
both judge their runs with `check`.

What a run hands over:
- the answered requests (`Answered`): a submission names its agent and customer user, an
  approve click its request, a redemption its link token;
- what the Slack stand-in received (`SlackCall`): every chat.postMessage with the channel and
  ts it answered, every chat.update with the message it edited.

What "once" means, from the database alone (bot/domain/outbox.py): every outbox row ends
sent, skipped or merged into one that was; a message posted for a target keeps its ts
(message_refs, or the request's agent_channel/agent_message_ts), and later rows of the target
edit that message. So a message posted twice shows up as a post whose ts nothing kept (its
sender died after Slack accepted it and before it recorded the ts, and the row was sent again
after its lease) or as two kept ts for one target; a message never sent as a row not finished
or a target sent without a kept ts. Edits are idempotent (chat.update of the same message
with the state of the moment) and are counted, not judged.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import (
    Account,
    AuditEvent,
    CustomerUser,
    ImpersonationRequest,
    ImpersonationSession,
    Link,
    MessageRef,
    OutboxMessage,
)
from bot.domain import checkpoints
from bot.domain.clock import utcnow

SUBMIT, APPROVE, REDEEM = "submission", "approve click", "redemption"
#: outbox states a row may end in; anything else is still owed
FINISHED = ("sent", "skipped", "merged")
#: audit events a request has at most once, however many processes handled it
ONCE_PER_REQUEST = ("request.created", "request.granted", "approval.granted", "approval.requested", "link.issued", "session.redeemed")
#: rows that are not Slack messages (a person's Home is republished, a webhook is not Slack)
NOT_MESSAGES = ("home", "webhook")


@dataclass(frozen=True)
class Answered:
    """A request the client got an answer to (HTTP 200). `key`: (agent, account, customer
    user) for a submission, the request id for an approve click, the link token for a
    redemption."""

    what: str
    key: tuple[str, ...] | str


@dataclass(frozen=True)
class SlackCall:
    method: str
    channel: str
    ts: str
    #: when the stand-in received it (its own clock)
    at: float = 0.0


@dataclass
class Verdict:
    answered: Counter[str] = field(default_factory=Counter)
    #: outbox rows by kind and final state
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    posts: int = 0
    edits: int = 0
    #: targets whose message was posted (each should be one post)
    posted_targets: int = 0
    audit_events: int = 0
    chain_ok: bool = False
    #: every way the run fell short of "once" but the orphan posts; empty when it did not
    problems: list[str] = field(default_factory=list)
    #: posts whose ts nothing kept: a message posted again because its first sender died
    #: after Slack accepted it and before it kept the ts (the outbox's at-least-once window)
    orphan_posts: list[SlackCall] = field(default_factory=list)
    #: pending rows not yet due (a reminder or a warning for later)
    not_yet_due: int = 0

    @property
    def duplicates(self) -> int:
        return len(self.orphan_posts)


def slack_calls(records: Iterable[tuple[str, dict, dict, float]]) -> list[SlackCall]:
    """(method, arguments, answer, time) of every Web API call → the posts and edits among them."""
    out = []
    for method, args, answer, at in records:
        if not answer.get("ok"):
            continue
        if method == "chat.postMessage":
            out.append(SlackCall(method, str(answer["channel"]), str(answer["ts"]), at))
        elif method == "chat.update":
            out.append(SlackCall(method, str(args["channel"]), str(args["ts"]), at))
    return out


def check(sessions: sessionmaker[Session], answered: Iterable[Answered], calls: Iterable[SlackCall], *, now: datetime | None = None) -> Verdict:
    """The run's verdict; `now` (default: the clock) tells a pending row not yet due from one
    left owed."""
    verdict = Verdict()
    answered = list(answered)
    calls = list(calls)
    verdict.answered.update(a.what for a in answered)
    with sessions() as db:
        _check_answers(db, answered, verdict)
        _check_audit(db, verdict)
        _check_messages(db, calls, verdict, now or utcnow())
    return verdict


def _check_answers(db: Session, answered: list[Answered], verdict: Verdict) -> None:
    problems = verdict.problems
    requests_of = Counter(
        db.execute(
            select(ImpersonationRequest.agent_slack_id, Account.external_id, CustomerUser.external_id)
            .join(Account, Account.id == ImpersonationRequest.account_id)
            .join(CustomerUser, CustomerUser.id == ImpersonationRequest.customer_user_id)
        ).all()
    )
    granted = Counter(
        db.execute(select(AuditEvent.request_id).where(AuditEvent.type == "approval.granted")).scalars()
    )
    links = dict(db.execute(select(Link.token_hash, Link.request_id)).all())
    sessions_of = Counter(db.execute(select(ImpersonationSession.request_id)).scalars())
    redeemed = Counter(db.execute(select(AuditEvent.request_id).where(AuditEvent.type == "session.redeemed")).scalars())
    for answer in answered:
        if answer.what == SUBMIT:
            found = requests_of[tuple(answer.key)]
            if found != 1:
                problems.append(f"submission {answer.key} answered 200: {found} requests stored")
        elif answer.what == APPROVE:
            if granted[answer.key] != 1:
                # what the request's log says instead (a refusal is answered 200 too, with its reason)
                said = [
                    f"{kind} {details}" if kind.endswith("refused") else kind
                    for kind, details in db.execute(
                        select(AuditEvent.type, AuditEvent.details).where(AuditEvent.request_id == answer.key).order_by(AuditEvent.seq)
                    ).all()
                ]
                problems.append(f"approve click on {answer.key} answered 200: {granted[answer.key]} approval.granted events (its log: {said})")
        elif answer.what == REDEEM:
            request_id = links.get(hashlib.sha256(str(answer.key).encode()).hexdigest())
            if request_id is None:
                problems.append(f"redemption answered 200 for a link not stored ({str(answer.key)[:8]}…)")
            elif sessions_of[request_id] != 1 or redeemed[request_id] != 1:
                problems.append(f"redemption of {request_id} answered 200: {sessions_of[request_id]} sessions, {redeemed[request_id]} session.redeemed events")
        else:
            raise ValueError(answer.what)


def _check_audit(db: Session, verdict: Verdict) -> None:
    twice = db.execute(
        select(AuditEvent.type, AuditEvent.request_id, func.count())
        .where(AuditEvent.type.in_(ONCE_PER_REQUEST), AuditEvent.request_id.is_not(None))
        .group_by(AuditEvent.type, AuditEvent.request_id)
        .having(func.count() > 1)
    ).all()
    verdict.problems += [f"{kind} recorded {n} times for request {request_id}" for kind, request_id, n in twice]
    result = checkpoints.verify_log(db)
    verdict.audit_events = result.events
    verdict.chain_ok = result.problem is None
    if result.problem is not None:
        verdict.problems.append(f"audit chain broken at seq {result.problem.seq}: {result.problem.reason}")


def _check_messages(db: Session, calls: list[SlackCall], verdict: Verdict, now: datetime) -> None:
    problems = verdict.problems
    rows = db.execute(select(OutboxMessage.kind, OutboxMessage.subject_id, OutboxMessage.recipient, OutboxMessage.state, OutboxMessage.due_at)).all()
    verdict.rows.update((kind, state) for kind, _, _, state, _ in rows)
    verdict.not_yet_due = sum(1 for *_, state, due_at in rows if state == "pending" and due_at > now)
    owed = Counter((kind, state) for kind, _, _, state, due_at in rows if state not in FINISHED and not (state == "pending" and due_at > now))
    for (kind, state), n in sorted(owed.items()):
        problems.append(f"{n} {kind} outbox row(s) still {state}")
    # what was kept of every posted message: (kind, subject, recipient) → the ts kept
    kept: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
    for subject, purpose, recipient, channel, ts in db.execute(
        select(MessageRef.subject_id, MessageRef.purpose, MessageRef.recipient, MessageRef.channel, MessageRef.ts)
    ).all():
        kept.setdefault((purpose, subject, recipient), set()).add((channel, ts))
    for request_id, agent, channel, ts in db.execute(
        select(ImpersonationRequest.id, ImpersonationRequest.agent_slack_id, ImpersonationRequest.agent_channel, ImpersonationRequest.agent_message_ts)
        .where(ImpersonationRequest.agent_message_ts.is_not(None))
    ).all():
        kept.setdefault(("agent", request_id, agent), set()).add((channel, ts))
    for target, messages in kept.items():
        if len(messages) > 1:
            problems.append(f"{target[0]} message about {target[1]} to {target[2]} posted and kept {len(messages)} times")
    verdict.posted_targets = len(kept)
    sent_targets = {(kind, subject, recipient) for kind, subject, recipient, state, _ in rows if state == "sent" and kind not in NOT_MESSAGES}
    kept_recipients = {(kind, subject) for kind, subject, _ in kept}
    for kind, subject, recipient in sorted(sent_targets):
        # a row to "security" keeps the channel it resolved to as its recipient
        if (kind, subject, recipient) not in kept and (recipient != "security" or (kind, subject) not in kept_recipients):
            problems.append(f"{kind} row about {subject} to {recipient} sent, but no posted message kept")
    posts = [c for c in calls if c.method == "chat.postMessage"]
    verdict.posts = len(posts)
    verdict.edits = sum(1 for c in calls if c.method == "chat.update")
    posted = {(c.channel, c.ts) for c in posts}
    kept_ts = {message for messages in kept.values() for message in messages}
    verdict.orphan_posts = [c for c in posts if (c.channel, c.ts) not in kept_ts]
    never = kept_ts - posted
    if never:
        problems.append(f"{len(never)} kept message(s) Slack never received: {sorted(never)[:5]}")
    unknown = {(c.channel, c.ts) for c in calls if c.method == "chat.update"} - posted
    if unknown:
        problems.append(f"{len(unknown)} edit(s) of messages never posted: {sorted(unknown)[:5]}")
