"""Approvals: gated requests and session extensions decided by approvers, exactly once.

Every click reloads the subject under a row lock (SELECT … FOR UPDATE on PostgreSQL; SQLite
transactions hold the write lock from BEGIN IMMEDIATE) and re-checks, at click time: the clicker
still holds an approving role and is among the designated approvers, is not the requester (by
Slack id, Grid id or e-mail), and the subject is still pending and not past its TTL. The
`approvals` table's unique key on (subject, approver identity) makes a double click count once.
The final transition is the lifecycle's conditional UPDATE, so of concurrent approve and deny
clicks exactly one decides; every other click learns who decided and when.
"""
from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import (
    Approval,
    ApprovalDecision,
    Extension,
    ImpersonationRequest,
    ImpersonationSession,
    JobClaim,
    MessageRef,
    RequestState,
)
from bot.domain import audit, outbox, webhooks
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.identity import Identity, identify, requester_identity
from bot.domain.lifecycle import transition
from bot.domain.links import issue_link
from bot.domain.once import claim_once, claimed, insert_once
from bot.domain.policy import (
    ExtensionOutcome,
    ExtensionRefusal,
    approval_nudges,
    decide_extension_ask,
    escalation_group,
    powers_of,
)
from bot.domain.views import IssuedLink, RequestView, SessionView

DENY_REASON_MIN_LENGTH = 5
DENY_REASON_MAX_LENGTH = 1000
#: one reminder and one escalation per ask (its request or extension id), across schedulers
#: (job_claims, bot/domain/once.py)
REMIND_CLAIM = "approval.remind"
ESCALATE_CLAIM = "approval.escalate"


class Purpose(str, enum.Enum):
    #: an approver's DM; the same value as outbox.Kind.APPROVER, whose deliveries record it
    APPROVER = "approver"
    #: a break-glass alert recorded before it went through the outbox (now Kind.BREAK_GLASS)
    SECURITY = "security"


@dataclass(frozen=True)
class PastSession:
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    reason: str


@dataclass(frozen=True)
class MessageView:
    recipient: str
    channel: str
    ts: str


@dataclass(frozen=True)
class ExtensionView:
    id: str
    session: SessionView
    requested_by: str
    reason: str
    minutes: int
    state: str
    approvals_required: int
    pending_expires_at: datetime
    new_expires_at: datetime | None

    @classmethod
    def of(cls, extension: Extension) -> ExtensionView:
        return cls(
            id=extension.id,
            session=SessionView.of(extension.session),
            requested_by=extension.requested_by,
            reason=extension.reason,
            minutes=extension.minutes,
            state=extension.state,
            approvals_required=extension.approvals_required,
            pending_expires_at=extension.pending_expires_at,
            new_expires_at=extension.new_expires_at,
        )


# ---------------------------------------------------------------- who may approve


def eligible_approvers(ctx: DomainContext, *, account: str, team_id: str | None, requester: Identity) -> list[str]:
    """Slack ids of everyone who may approve: holders of a `can_approve` role, narrowed to the
    designated approvers for the account (or else the team) when the policy names any, never
    the requester under any of their ids, nor anyone the directory could not identify just
    now (whether they are the requester under another id cannot be known)."""
    gating = ctx.policy.gating
    designated = gating.approvers_by_account.get(account) or (gating.approvers_by_team.get(team_id or "") or None)
    return _approver_pool(ctx, designated, requester=requester)


def _approver_pool(ctx: DomainContext, members: Sequence[str] | None, *, requester: Identity) -> list[str]:
    """Holders of a `can_approve` role, narrowed to `members` (ids, @groups) when given, who
    are identified just now and are not the requester."""
    holders: set[str] = set()
    for role in ctx.policy.roles.values():
        if role.can_approve:
            holders |= _expand(ctx, role.members)
    if members:
        holders &= _expand(ctx, list(members))
    eligible = []
    for holder in sorted(holders):
        identity = identify(ctx.people, holder)
        if identity.resolved and not identity.same_person(requester):
            eligible.append(holder)
    return eligible


def _expand(ctx: DomainContext, members: list[str]) -> set[str]:
    out: set[str] = set()
    for member in members:
        if member.startswith("@"):
            out |= ctx.groups.members_of(member[1:])
        else:
            out.add(member)
    return out


def escalation_members(ctx: DomainContext, request: ImpersonationRequest) -> tuple[str, ...]:
    """The group (ids, @groups) an unanswered ask about this request, or about more time on
    its session, escalates to: the policy's group for its gates, else `escalate_to`."""
    gating = ctx.policy.gating
    gates = frozenset(g for g in request.gated_by.split(",") if g)
    return escalation_group(gates=gates, escalate_to=gating.escalate_to, escalate_to_by_gate=gating.escalate_to_by_gate)


def _escalated_to(db: Session, ctx: DomainContext, request: ImpersonationRequest, subject_id: str) -> Callable[[], tuple[str, ...]]:
    """The escalation group once the ask was escalated to it (its approvers may decide too),
    else (); read only when asked (a designated approver's click needs no query for it)."""
    return lambda: escalation_members(ctx, request) if claimed(db, ESCALATE_CLAIM, subject_id) else ()


def _refusal_cause(
    ctx: DomainContext,
    clicker: Identity,
    *,
    account: str,
    team_id: str | None,
    requester: Identity,
    escalated_to: Callable[[], Sequence[str]] | None = None,
) -> str | None:
    """Why this clicker may not decide, or None. The escalation group's approvers, once the
    ask was escalated to them, face the same checks as the first group's."""
    if clicker.same_person(requester):
        return "self_approval"
    if not clicker.resolved:
        # Fail closed: without the clicker's Grid id and e-mail, "not the requester" is unproven.
        return "identity_unavailable"
    powers = powers_of(ctx.policy, clicker.slack_id, ctx.groups)
    if powers is None or not powers.can_approve:
        return "not_an_approver"
    if clicker.slack_id not in eligible_approvers(ctx, account=account, team_id=team_id, requester=requester):
        group = escalated_to() if escalated_to is not None else ()
        if not group or clicker.slack_id not in _approver_pool(ctx, group, requester=requester):
            return "not_a_designated_approver"
    return None


def recent_sessions(db: Session, *, agent_slack_id: str, account_id: int, limit: int = 5) -> list[PastSession]:
    rows = db.execute(
        select(ImpersonationSession)
        .where(ImpersonationSession.agent_slack_id == agent_slack_id, ImpersonationSession.account_id == account_id)
        .order_by(ImpersonationSession.started_at.desc())
        .limit(limit)
    ).scalars()
    return [PastSession(s.started_at, s.ended_at, s.end_reason, s.request.reason) for s in rows]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class ApprovalAsk:
    """What approvers are shown when a request (or extension) needs them."""

    request: RequestView
    approvers: tuple[str, ...]
    recent: tuple[PastSession, ...]
    extension: ExtensionView | None = None
    #: when the approvers who had not answered were reminded
    reminded_at: datetime | None = None
    #: when the ask was escalated to the second approver group, and whom of it that asked
    escalated_at: datetime | None = None
    escalated_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Counted:
    """This approval was recorded; more distinct approvers are needed."""

    subject_id: str
    approvals: int
    required: int


@dataclass(frozen=True)
class AlreadyCounted:
    subject_id: str


@dataclass(frozen=True)
class Decided:
    """The click that moved the subject to a final state. Only this result edits messages."""

    request: RequestView
    outcome: str  # approved | denied | expired | cancelled
    by: str | None
    at: datetime
    reason: str | None
    approvers_messages: tuple[MessageView, ...]
    link: IssuedLink | None = None
    extension: ExtensionView | None = None
    session: SessionView | None = None
    #: every approver asked about the subject (their DMs may not all be delivered yet)
    asked: tuple[str, ...] = ()
    #: the outbox targets the decision owed, in the order to send them (the agent's new link
    #: DM last), for an immediate delivery once the transaction has committed
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlreadyDecided:
    outcome: str
    by: str | None
    at: datetime


@dataclass(frozen=True)
class Refused:
    message: str


ClickResult = Counted | AlreadyCounted | Decided | AlreadyDecided | Refused

REFUSAL_MESSAGES = {
    "self_approval": "You cannot approve or deny your own request. Another approver decides it; you can cancel it from its DM.",
    "not_an_approver": "You no longer hold a role that can approve impersonation requests. The other approvers can decide it; `/impersonate help` lists what you can do.",
    "not_a_designated_approver": "You are not a designated approver for this account. Its designated approvers, named in the request's DM, can decide it.",
    "identity_unavailable": "Slack could not confirm who you are just now, so your vote was not counted. Try again in a minute.",
}


# ---------------------------------------------------------------- requests


def open_request_approval(db: Session, ctx: DomainContext, request: ImpersonationRequest, *, requester: Identity, now: datetime) -> ApprovalAsk:
    """Called in the transaction that creates a pending request: who is asked, audited."""
    approvers = eligible_approvers(ctx, account=request.account.external_id, team_id=request.team_id, requester=requester)
    audit.append(
        db,
        EventDraft(
            type="approval.requested",
            actor=Actor.agent_of(request),
            account=request.account.external_id,
            customer_user=request.customer_user.external_id,
            request_id=request.id,
            details={
                "asked": approvers,
                "approvals_required": request.approvals_required,
                "expires_at": audit.format_time(request.pending_expires_at or now),
            },
        ),
        now=now,
    )
    # The approvers' DMs are owed in this same transaction: a crash after
    # the commit still delivers them; a rollback owes none.
    enqueue_asks(db, request.id, approvers, now=now)
    recent = recent_sessions(db, agent_slack_id=request.agent_slack_id, account_id=request.account_id)
    return ApprovalAsk(RequestView.of(request), tuple(approvers), tuple(recent))


def enqueue_asks(db: Session, subject_id: str, approvers: list[str] | tuple[str, ...], *, now: datetime) -> list[str]:
    """One outbox row per approver's DM about a request or an extension (its id as subject).
    The courier renders each from the state at delivery: the ask while the subject is
    pending, its outcome once decided, so a DM delivered late never offers stale buttons."""
    return [outbox.enqueue(db, outbox.Kind.APPROVER, subject_id, recipient=approver, now=now) for approver in approvers]


def ask_targets(ask: ApprovalAsk) -> list[str]:
    """The outbox targets an ask wrote (for an immediate delivery by the listener): every
    approver's DM and, for more time, the agent's session DM."""
    subject_id = ask.extension.id if ask.extension is not None else ask.request.id
    targets = [outbox.target_of(outbox.Kind.APPROVER, subject_id, approver) for approver in ask.approvers]
    if ask.extension is not None:
        targets.append(outbox.target_of(outbox.Kind.AGENT, ask.request.id, ask.request.agent_slack_id))
    return targets


@dataclass(frozen=True)
class _AskHistory:
    """Whom an ask reached, from its audit events: asked first, reminded, asked on escalation."""

    asked: tuple[str, ...] = ()
    reminded: tuple[str, ...] = ()
    reminded_at: datetime | None = None
    escalated: tuple[str, ...] = ()
    escalated_at: datetime | None = None


def _ask_history(db: Session, subject_id: str) -> _AskHistory:
    """The `asked` lists of the events that owed approvers' DMs about a request or an
    extension (approval.requested / extension.requested, then approval.escalated), and its
    reminder (approval.reminded), in order, found through the indexed request id; an
    extension's events are told apart by their extension_id."""
    request_id, first_type, extension_id = subject_id, "approval.requested", None
    extension = db.get(Extension, subject_id) if db.get(ImpersonationRequest, subject_id) is None else None
    if extension is not None:
        request_id, first_type, extension_id = extension.session.request_id, "extension.requested", extension.id
    asked: list[str] = []
    reminded: tuple[str, ...] = ()
    escalated: tuple[str, ...] = ()
    reminded_at = escalated_at = None
    rows = db.execute(
        select(audit.AuditEvent.type, audit.AuditEvent.details, audit.AuditEvent.occurred_at)
        .where(audit.AuditEvent.request_id == request_id, audit.AuditEvent.type.in_((first_type, "approval.escalated", "approval.reminded")))
        .order_by(audit.AuditEvent.seq)
    )
    for event_type, details, occurred_at in rows:
        facts = json.loads(details)
        if facts.get("extension_id") != extension_id:
            continue
        if event_type == "approval.reminded":
            reminded, reminded_at = tuple(str(a) for a in facts.get("reminded") or ()), occurred_at
            continue
        people = [str(a) for a in facts.get("asked") or ()]
        asked.extend(people)
        if event_type == "approval.escalated":
            escalated, escalated_at = tuple(people), occurred_at
    return _AskHistory(tuple(asked), reminded, reminded_at, escalated, escalated_at)


def _asked(db: Session, subject_id: str, messages: tuple[MessageView, ...] | None = None) -> tuple[str, ...]:
    """Every approver asked about a request or an extension, in the order asked (the first
    group, then the escalation group: _ask_history), and anyone whose DM was recorded
    otherwise."""
    return _everyone_asked(_ask_history(db, subject_id), messages if messages is not None else _messages(db, subject_id))


def _everyone_asked(history: _AskHistory, messages: tuple[MessageView, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*history.asked, *(m.recipient for m in messages)]))


def enqueue_approver_edits(
    db: Session, subject_id: str, *, now: datetime, asked: tuple[str, ...] | None = None, reminded: tuple[str, ...] | None = None
) -> list[str]:
    """A decision edits every approver's DM through the outbox. A row is owed to everyone
    asked, not only to those whose DM is recorded: a DM still being sent when the decision
    commits is followed by this row (rows of one target go out in order), which then edits it.
    The reminders sent (`reminded`) are edited too, so that none still offers the ask."""
    if asked is None or reminded is None:
        _, everyone, were_reminded = _decision_audience(db, subject_id)
        asked = everyone if asked is None else asked
        reminded = were_reminded if reminded is None else reminded
    targets = enqueue_asks(db, subject_id, asked, now=now)
    return targets + [outbox.enqueue(db, outbox.Kind.REMINDER, subject_id, recipient=r, now=now) for r in reminded]


def approver_targets(decided: Decided) -> list[str]:
    """The approver DMs a decision owes (for an immediate delivery by the deciding click)."""
    subject_id = decided.extension.id if decided.extension is not None else decided.request.id
    recipients = dict.fromkeys([*decided.asked, *(m.recipient for m in decided.approvers_messages)])
    return [outbox.target_of(outbox.Kind.APPROVER, subject_id, r) for r in recipients]


def record_message(ctx: DomainContext, subject_id: str, *, purpose: Purpose, recipient: str, channel: str, ts: str) -> None:
    with ctx.sessions() as db, db.begin():
        db.add(MessageRef(subject_id=subject_id, purpose=purpose.value, recipient=recipient, channel=channel, ts=ts, created_at=utcnow()))


def _messages(db: Session, subject_id: str) -> tuple[MessageView, ...]:
    rows = db.execute(
        select(MessageRef).where(MessageRef.subject_id == subject_id, MessageRef.purpose == Purpose.APPROVER.value).order_by(MessageRef.id)
    ).scalars()
    return tuple(MessageView(r.recipient, r.channel, r.ts) for r in rows)


def _decision_audience(db: Session, subject_id: str) -> tuple[tuple[MessageView, ...], tuple[str, ...], tuple[str, ...]]:
    """The approver DMs recorded about a subject, everyone asked about it and everyone
    reminded, read once for a decision's outbox rows and its Decided."""
    messages = _messages(db, subject_id)
    history = _ask_history(db, subject_id)
    return messages, _everyone_asked(history, messages), history.reminded


#: built once (statement construction and its cache key are costly on every click)
_LOCK_REQUEST = select(ImpersonationRequest).where(ImpersonationRequest.id == bindparam("request_id")).with_for_update(of=ImpersonationRequest)


def _lock_request(db: Session, request_id: str) -> ImpersonationRequest | None:
    return db.execute(_LOCK_REQUEST, {"request_id": request_id}).unique().scalar_one_or_none()


def _requester(request: ImpersonationRequest) -> Identity:
    """The requester as identified at submission (never looked up again: a lookup that fails
    at click time would hide their Grid id and e-mail)."""
    return requester_identity(
        slack_id=request.agent_slack_id, email=request.agent_email, enterprise_user_id=request.agent_enterprise_user_id
    )


def _final_facts(db: Session, request: ImpersonationRequest) -> AlreadyDecided:
    """Who moved a request out of pending, and when: read back from the audit log."""
    types = ("approval.granted", "approval.denied", "request.expired", "request.cancelled", "approval.bypassed", "request.granted")
    event = db.execute(
        select(audit.AuditEvent)
        .where(audit.AuditEvent.request_id == request.id, audit.AuditEvent.type.in_(types))
        .order_by(audit.AuditEvent.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    outcome = {
        RequestState.DENIED.value: "denied",
        RequestState.EXPIRED.value: "expired",
        RequestState.CANCELLED.value: "cancelled",
        RequestState.PENDING.value: "pending",
    }.get(request.state, "approved")
    if event is None:
        return AlreadyDecided(outcome, None, request.updated_at)
    # Read from the deciding event: a granted request whose session has since expired is in
    # state `expired` too, yet was approved.
    return AlreadyDecided(_EVENT_OUTCOMES.get(event.type, outcome), event.actor_slack_id, event.occurred_at)


_EVENT_OUTCOMES = {
    "approval.granted": "approved",
    "request.granted": "approved",
    "approval.bypassed": "approved",
    "approval.denied": "denied",
    "request.expired": "expired",
    "request.cancelled": "cancelled",
}


def outcome_of(db: Session, request: ImpersonationRequest) -> Decided:
    """How a request left `pending`, rebuilt from the audit log and the votes, for messages
    rendered from the current state (the outbox)."""
    facts = _final_facts(db, request)
    reason = None
    if facts.outcome == "denied":
        reason = db.execute(
            select(Approval.reason)
            .where(Approval.subject_id == request.id, Approval.decision == ApprovalDecision.DENY.value)
            .order_by(Approval.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    messages, asked, _ = _decision_audience(db, request.id)
    return Decided(RequestView.of(request), facts.outcome, facts.by, facts.at, reason, messages, asked=asked)


def _extension_outcome(db: Session, extension: Extension) -> Decided:
    """How more time was decided, rebuilt from the extension and its votes (the deciding
    vote is the last one of its kind; an expiry has none)."""
    by = reason = None
    if extension.state in ("approved", "denied"):
        decision = ApprovalDecision.APPROVE if extension.state == "approved" else ApprovalDecision.DENY
        vote = db.execute(
            select(Approval).where(Approval.subject_id == extension.id, Approval.decision == decision.value).order_by(Approval.id.desc()).limit(1)
        ).scalar_one_or_none()
        if vote is not None:
            by, reason = vote.approver_slack_id, vote.reason
    session = extension.session
    return Decided(
        RequestView.of(session.request),
        extension.state,
        by,
        extension.decided_at or extension.created_at,
        reason,
        _messages(db, extension.id),
        extension=ExtensionView.of(extension),
        session=SessionView.of(session),
        asked=_asked(db, extension.id),
    )


def _ask_now(db: Session, request: ImpersonationRequest, extension: Extension | None) -> ApprovalAsk:
    recent = recent_sessions(db, agent_slack_id=request.agent_slack_id, account_id=request.account_id)
    subject_id = extension.id if extension is not None else request.id
    history = _ask_history(db, subject_id)
    return ApprovalAsk(
        RequestView.of(request),
        _everyone_asked(history, _messages(db, subject_id)),
        tuple(recent),
        ExtensionView.of(extension) if extension is not None else None,
        reminded_at=history.reminded_at,
        escalated_at=history.escalated_at,
        escalated_to=history.escalated,
    )


def approver_message_state(ctx: DomainContext, subject_id: str) -> ApprovalAsk | Decided | None:
    """What an approver's DM about a request or an extension should show now (the outbox
    renders it at delivery): the ask while pending, else how it was decided."""
    with reading(ctx.sessions) as db:
        request = db.get(ImpersonationRequest, subject_id)
        if request is not None:
            return _ask_now(db, request, None) if request.state == RequestState.PENDING.value else outcome_of(db, request)
        extension = db.get(Extension, subject_id)
        if extension is None:
            return None
        if extension.state == "pending":
            return _ask_now(db, extension.session.request, extension)
        return _extension_outcome(db, extension)


def pending_extension_ask(db: Session, session_id: str) -> ApprovalAsk | None:
    """The ask for more time waiting on a session, if any (the agent's DM shows it)."""
    extension = db.execute(select(Extension).where(Extension.session_id == session_id, Extension.state == "pending")).scalar_one_or_none()
    return _ask_now(db, extension.session.request, extension) if extension is not None else None


def enqueue_outcome(
    db: Session, request: ImpersonationRequest, *, now: datetime, asked: tuple[str, ...] | None = None, reminded: tuple[str, ...] | None = None
) -> list[str]:
    """Outbox rows that edit every approver's DM and the agent's "approval needed"
    DM once a request is decided: expired, denied, cancelled or approved (an approval also
    owes the new link DM: approve_request)."""
    targets = enqueue_approver_edits(db, request.id, now=now, asked=asked, reminded=reminded)
    targets.append(outbox.enqueue_agent_request(db, request, now=now))
    return targets


def outcome_targets(decided: Decided) -> list[str]:
    """The outbox targets a request's decision wrote (for an immediate delivery)."""
    request = decided.request
    targets = approver_targets(decided)
    targets.append(outbox.target_of(outbox.Kind.AGENT_REQUEST, request.id, request.agent_slack_id))
    return targets


def approved_by(db: Session, request: ImpersonationRequest) -> str | None:
    """The approver whose click granted a gated request (its `approval.granted` event)."""
    return db.execute(
        select(audit.AuditEvent.actor_slack_id)
        .where(audit.AuditEvent.request_id == request.id, audit.AuditEvent.type == "approval.granted")
        .order_by(audit.AuditEvent.seq.desc())
        .limit(1)
    ).scalar_one_or_none()


def _expire_request(db: Session, request: ImpersonationRequest, now: datetime) -> Decided:
    transition(
        db,
        request,
        source=RequestState.PENDING,
        target=RequestState.EXPIRED,
        event=EventDraft(
            type="request.expired",
            actor=Actor.system("clock"),
            account=request.account.external_id,
            customer_user=request.customer_user.external_id,
            request_id=request.id,
            details={"pending_expires_at": audit.format_time(request.pending_expires_at or now)},
        ),
        now=now,
    )
    messages, asked, reminded = _decision_audience(db, request.id)
    targets = enqueue_outcome(db, request, now=now, asked=asked, reminded=reminded)
    return Decided(RequestView.of(request), "expired", None, now, None, messages, asked=asked, targets=tuple(targets))


def _counted_vote(
    db: Session,
    ctx: DomainContext,
    request_id: str,
    clicker: Identity,
    decision: ApprovalDecision,
    reason: str | None,
    now: datetime,
) -> ImpersonationRequest | ClickResult:
    """The checks every approve or deny click makes, in order, under the request's row lock:
    it exists, is still pending, is not past its TTL (expired now if it is), the clicker may
    decide it — then records the vote. Returns the locked request when the vote counted, or
    the answer for the clicker."""
    request = _lock_request(db, request_id)
    if request is None:
        return Refused("That request no longer exists.")
    if request.state != RequestState.PENDING.value:
        return _final_facts(db, request)
    if request.pending_expires_at is not None and now >= request.pending_expires_at:
        return _expire_request(db, request, now)
    refusal = _refuse_if_ineligible(db, ctx, request, clicker, action=decision.value, now=now)
    if refusal:
        return refusal
    if not _vote(db, request.id, clicker, decision, reason, now):
        return AlreadyCounted(request.id)
    return request


def approve_request(ctx: DomainContext, request_id: str, *, clicker_slack_id: str, now: datetime | None = None) -> ClickResult:
    now = now or utcnow()
    clicker = identify(ctx.people, clicker_slack_id)
    with ctx.sessions() as db, db.begin():
        request = _counted_vote(db, ctx, request_id, clicker, ApprovalDecision.APPROVE, None, now)
        if not isinstance(request, ImpersonationRequest):
            return request
        approvers = _approvers_so_far(db, request.id)
        actor = Actor(slack_id=clicker.slack_id, email=clicker.email, role=_role(ctx, clicker.slack_id))
        base = dict(account=request.account.external_id, customer_user=request.customer_user.external_id, request_id=request.id)
        if len(approvers) < request.approvals_required:
            audit.append(
                db,
                EventDraft(type="approval.recorded", actor=actor, details={"approvals": len(approvers), "required": request.approvals_required}, **base),
                now=now,
            )
            outbox.enqueue_home(db, clicker.slack_id, now=now)  # it leaves the approver's queue
            return Counted(request.id, len(approvers), request.approvals_required)
        transition(
            db,
            request,
            source=RequestState.PENDING,
            target=RequestState.GRANTED,
            event=EventDraft(type="approval.granted", actor=actor, details={"approvers": approvers, "required": request.approvals_required}, **base),
            now=now,
        )
        link = issue_link(db, ctx, request, now=now)
        # Everything the approval says goes through the outbox: every
        # approver's DM and the agent's "approval needed" DM are edited to "approved", and
        # the link follows in a new DM (so that the agent is notified), rendered at delivery
        # with the link derived again from the request's id (the rows hold no token).
        messages, asked, reminded = _decision_audience(db, request.id)
        edits = enqueue_outcome(db, request, now=now, asked=asked, reminded=reminded)
        link_dm, feed = outbox.enqueue_granted(db, request, now=now)
        return Decided(
            RequestView.of(request), "approved", clicker.slack_id, now, None, messages,
            link=link, asked=asked, targets=(*edits, link_dm, feed),
        )


def deny_request(ctx: DomainContext, request_id: str, *, clicker_slack_id: str, reason: str, now: datetime | None = None) -> ClickResult:
    now = now or utcnow()
    reason = reason.strip()
    if not DENY_REASON_MIN_LENGTH <= len(reason) <= DENY_REASON_MAX_LENGTH:
        return Refused(f"Give a reason for the denial ({DENY_REASON_MIN_LENGTH}–{DENY_REASON_MAX_LENGTH} characters).")
    clicker = identify(ctx.people, clicker_slack_id)
    with ctx.sessions() as db, db.begin():
        request = _counted_vote(db, ctx, request_id, clicker, ApprovalDecision.DENY, reason, now)
        if not isinstance(request, ImpersonationRequest):
            return request
        transition(
            db,
            request,
            source=RequestState.PENDING,
            target=RequestState.DENIED,
            event=EventDraft(
                type="approval.denied",
                actor=Actor(slack_id=clicker.slack_id, email=clicker.email, role=_role(ctx, clicker.slack_id)),
                account=request.account.external_id,
                customer_user=request.customer_user.external_id,
                request_id=request.id,
                details={"reason": reason},
            ),
            now=now,
        )
        webhooks.request_denied(
            db,
            request_id=request.id,
            account=request.account.external_id,
            customer_user=request.customer_user.external_id,
            agent=request.agent_email or request.agent_slack_id,
            denied_by="approver",
            cause=None,
            now=now,
        )
        messages, asked, reminded = _decision_audience(db, request.id)
        targets = enqueue_outcome(db, request, now=now, asked=asked, reminded=reminded)
        return Decided(RequestView.of(request), "denied", clicker.slack_id, now, reason, messages, asked=asked, targets=tuple(targets))


def cancel_request(ctx: DomainContext, request_id: str, *, clicker_slack_id: str, now: datetime | None = None) -> ClickResult:
    """The agent withdraws their own pending request."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        request = _lock_request(db, request_id)
        if request is None:
            return Refused("That request no longer exists.")
        if request.agent_slack_id != clicker_slack_id:
            audit.append(
                db,
                EventDraft(
                    type="request.cancel_refused",
                    actor=Actor(slack_id=clicker_slack_id),
                    account=request.account.external_id,
                    request_id=request.id,
                    details={"cause": "not_the_agent"},
                ),
                now=now,
            )
            return Refused("Only the agent who made this request can cancel it.")
        if request.state != RequestState.PENDING.value:
            return _final_facts(db, request)
        transition(
            db,
            request,
            source=RequestState.PENDING,
            target=RequestState.CANCELLED,
            event=EventDraft(
                type="request.cancelled",
                actor=Actor.agent_of(request),
                account=request.account.external_id,
                customer_user=request.customer_user.external_id,
                request_id=request.id,
            ),
            now=now,
        )
        messages, asked, reminded = _decision_audience(db, request.id)
        targets = enqueue_outcome(db, request, now=now, asked=asked, reminded=reminded)
        return Decided(RequestView.of(request), "cancelled", clicker_slack_id, now, None, messages, asked=asked, targets=tuple(targets))


def expire_pending_request(ctx: DomainContext, request_id: str, *, now: datetime | None = None) -> Decided | None:
    """Expire one pending request past its TTL (the scheduler's notice); idempotent."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        request = _lock_request(db, request_id)
        if request is None or request.state != RequestState.PENDING.value:
            return None
        if request.pending_expires_at is None or now < request.pending_expires_at:
            return None
        return _expire_request(db, request, now)


def _refuse_if_ineligible(db: Session, ctx: DomainContext, request: ImpersonationRequest, clicker: Identity, *, action: str, now: datetime) -> Refused | None:
    cause = _refusal_cause(
        ctx, clicker, account=request.account.external_id, team_id=request.team_id, requester=_requester(request),
        escalated_to=_escalated_to(db, ctx, request, request.id),
    )
    if cause is None:
        return None
    audit.append(
        db,
        EventDraft(
            type="approval.refused",
            actor=Actor(slack_id=clicker.slack_id, email=clicker.email, role=_role(ctx, clicker.slack_id)),
            account=request.account.external_id,
            customer_user=request.customer_user.external_id,
            request_id=request.id,
            details={"cause": cause, "action": action},
        ),
        now=now,
    )
    return Refused(REFUSAL_MESSAGES[cause])


def _vote(db: Session, subject_id: str, clicker: Identity, decision: ApprovalDecision, reason: str | None, now: datetime) -> bool:
    """Record one approver's vote; False when this person already voted on this subject (the
    unique key on subject and identity). One `INSERT … ON CONFLICT DO NOTHING RETURNING`
    (bot/domain/once.py) rather than an ORM add inside a savepoint that catches the
    IntegrityError: the savepoint cost two more round trips on every click."""
    return insert_once(
        db,
        Approval,
        {
            "subject_id": subject_id,
            "approver_slack_id": clicker.slack_id,
            "approver_identity": clicker.key,
            "decision": decision.value,
            "reason": reason,
            "decided_at": now,
        },
    )


def _approvers_so_far(db: Session, subject_id: str) -> list[str]:
    return list(
        db.execute(
            select(Approval.approver_slack_id)
            .where(Approval.subject_id == subject_id, Approval.decision == ApprovalDecision.APPROVE.value)
            .order_by(Approval.id)
        ).scalars()
    )


def _role(ctx: DomainContext, slack_id: str) -> str | None:
    powers = powers_of(ctx.policy, slack_id, ctx.groups)
    return powers.role if powers else None


# ---------------------------------------------------------------- extensions


@dataclass(frozen=True)
class ExtensionAsked:
    ask: ApprovalAsk


@dataclass(frozen=True)
class ExtensionGranted:
    """Self-served within the role's cap: the session runs longer at once."""

    session: SessionView
    #: the outbox targets the extension owed (the agent's session DM, the security feed)
    targets: tuple[str, ...]


EXTENSION_REFUSALS = {
    ExtensionRefusal.NO_POWER: "Your role cannot extend sessions. Start a new request with a fresh reason.",
    ExtensionRefusal.REASON_TOO_SHORT: "Give a fresh reason (at least {reason_min} characters).",
    ExtensionRefusal.INVALID_MINUTES: "Ask for a positive number of minutes.",
    ExtensionRefusal.AT_CEILING: "This session already runs to the longest any session may ({ceiling} minutes). Start a new request instead.",
}


def request_extension(
    ctx: DomainContext, session_id: str, *, agent_slack_id: str, minutes: int, reason: str, now: datetime | None = None
) -> ExtensionAsked | ExtensionGranted | Refused:
    """An agent with `can_request_extension` asks for more time, with a fresh reason, decided
    by `policy.decide_extension_ask`: self-served within the role's cap where the role allows,
    approved otherwise — by the past-cap approvers when it passes the cap — and never past the
    policy's ceiling (`extensions.max_total_minutes`), counted from the session's start."""
    now = now or utcnow()
    reason = reason.strip()
    powers = powers_of(ctx.policy, agent_slack_id, ctx.groups)
    with ctx.sessions() as db, db.begin():
        session = db.execute(
            select(ImpersonationSession).where(ImpersonationSession.id == session_id).with_for_update(of=ImpersonationSession)
        ).unique().scalar_one_or_none()
        if session is None or session.agent_slack_id != agent_slack_id:
            return Refused("Only the agent of a live session can ask to extend it.")
        request = session.request
        base = dict(account=request.account.external_id, customer_user=request.customer_user.external_id, request_id=request.id, session_id=session.id)
        actor = Actor(slack_id=agent_slack_id, email=request.agent_email, role=powers.role if powers else None)

        def refuse(cause: str, message: str) -> Refused:
            audit.append(db, EventDraft(type="extension.refused", actor=actor, details={"cause": cause, "minutes": minutes}, **base), now=now)
            return Refused(message)

        if request.state != RequestState.ACTIVE.value or now >= session.expires_at:
            return refuse("not_live", "This session is over; start a new request instead.")
        current_total = int((session.expires_at - session.started_at).total_seconds() // 60)
        ceiling = ctx.policy.extensions.max_total_minutes
        decision = decide_extension_ask(
            powers=powers,
            current_total_minutes=current_total,
            asked_minutes=minutes,
            reason_ok=len(reason) >= ctx.policy.requests.reason_min_length,
            ceiling_minutes=ceiling,
        )
        if decision.outcome is ExtensionOutcome.REFUSE:
            assert decision.cause is not None
            message = EXTENSION_REFUSALS[decision.cause].format(reason_min=ctx.policy.requests.reason_min_length, ceiling=max(ceiling, powers.max_minutes if powers else 0))
            return refuse(decision.cause.value, message)
        pending = db.execute(select(func.count()).select_from(Extension).where(Extension.session_id == session.id, Extension.state == "pending")).scalar_one()
        if pending:
            return refuse("already_pending", "An extension for this session is already waiting for approval.")
        granted_minutes = decision.new_total_minutes - current_total  # trimmed to the ceiling
        self_served = decision.outcome is ExtensionOutcome.SELF_SERVE
        new_end = session.started_at + timedelta(minutes=decision.new_total_minutes)
        extension = Extension(
            id=str(uuid.uuid4()),
            session_id=session.id,
            requested_by=agent_slack_id,
            reason=reason[:2000],
            minutes=granted_minutes,
            state="approved" if self_served else "pending",
            approvals_required=0 if self_served else max(1, request.approvals_required),
            created_at=now,
            pending_expires_at=now if self_served else now + timedelta(minutes=ctx.policy.gating.pending_ttl_minutes),
            decided_at=now if self_served else None,
            new_expires_at=new_end if self_served else None,
        )
        db.add(extension)
        db.flush()
        db.refresh(extension)
        if self_served:
            session.expires_at = new_end
            audit.append(
                db,
                EventDraft(
                    type="extension.granted",
                    actor=actor,
                    details={
                        "extension_id": extension.id, "minutes": granted_minutes, "reason": extension.reason,
                        "self_served": True, "new_expires_at": audit.format_time(new_end),
                    },
                    **base,
                ),
                now=now,
            )
            targets = (
                outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now),
                outbox.enqueue(db, outbox.Kind.FEED, request.id, now=now),
            )
            return ExtensionGranted(SessionView.of(session), targets)
        requester = _requester(request)
        approvers = eligible_approvers(ctx, account=request.account.external_id, team_id=request.team_id, requester=requester)
        if decision.past_cap and ctx.policy.extensions.past_cap_approvers:
            # past the role's cap: only the approvers the policy names for that
            named = _expand(ctx, ctx.policy.extensions.past_cap_approvers)
            approvers = [a for a in approvers if a in named]
        audit.append(
            db,
            EventDraft(
                type="extension.requested",
                actor=actor,
                details={
                    "extension_id": extension.id, "minutes": granted_minutes, "reason": extension.reason, "asked": approvers,
                    "past_cap": decision.past_cap, "new_total_minutes": decision.new_total_minutes,
                },
                **base,
            ),
            now=now,
        )
        # Owed with the extension: every approver's DM, and the agent's
        # session DM, which shows that more time is waiting for them.
        enqueue_asks(db, extension.id, approvers, now=now)
        outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now)
        recent = recent_sessions(db, agent_slack_id=agent_slack_id, account_id=request.account_id)
        return ExtensionAsked(ApprovalAsk(RequestView.of(request), tuple(approvers), tuple(recent), ExtensionView.of(extension)))


def _lock_extension(db: Session, extension_id: str) -> Extension | None:
    return db.execute(select(Extension).where(Extension.id == extension_id).with_for_update(of=Extension)).unique().scalar_one_or_none()


def decide_extension(
    ctx: DomainContext,
    extension_id: str,
    *,
    clicker_slack_id: str,
    approve: bool,
    reason: str | None = None,
    now: datetime | None = None,
) -> ClickResult:
    now = now or utcnow()
    clicker = identify(ctx.people, clicker_slack_id)
    if not approve:
        reason = (reason or "").strip()
        if not DENY_REASON_MIN_LENGTH <= len(reason) <= DENY_REASON_MAX_LENGTH:
            return Refused(f"Give a reason for the denial ({DENY_REASON_MIN_LENGTH}–{DENY_REASON_MAX_LENGTH} characters).")
    with ctx.sessions() as db, db.begin():
        extension = _lock_extension(db, extension_id)
        if extension is None:
            return Refused("That extension request no longer exists.")
        session = extension.session
        request = session.request
        base = dict(account=request.account.external_id, customer_user=request.customer_user.external_id, request_id=request.id, session_id=session.id)
        if extension.state != "pending":
            last = db.execute(
                select(audit.AuditEvent)
                .where(audit.AuditEvent.session_id == session.id, audit.AuditEvent.type.in_(("extension.granted", "extension.denied", "extension.expired")))
                .order_by(audit.AuditEvent.seq.desc())
                .limit(1)
            ).scalar_one_or_none()
            return AlreadyDecided(extension.state, last.actor_slack_id if last else None, extension.decided_at or now)

        def finish(state: str, event_type: str, by: str | None, details: dict, reason_text: str | None) -> Decided:
            actor = Actor(slack_id=by, email=clicker.email if by else None, role=_role(ctx, by) if by else "clock")
            return _finish_extension(db, extension, state=state, event_type=event_type, actor=actor, details=details, reason_text=reason_text, now=now)

        live = _session_live(request, session, now)
        if now >= extension.pending_expires_at or not live:
            return finish("expired", "extension.expired", None, {"session_live": live}, None)
        refusal = _refusal_cause(
            ctx, clicker, account=request.account.external_id, team_id=request.team_id, requester=_requester(request),
            escalated_to=_escalated_to(db, ctx, request, extension.id),
        )
        if refusal:
            refused = EventDraft(
                type="extension.refused", actor=Actor(slack_id=clicker.slack_id, email=clicker.email), details={"cause": refusal, "extension_id": extension.id}, **base
            )
            audit.append(db, refused, now=now)
            return Refused(REFUSAL_MESSAGES[refusal])
        if not _vote(db, extension.id, clicker, ApprovalDecision.APPROVE if approve else ApprovalDecision.DENY, reason, now):
            return AlreadyCounted(extension.id)
        if not approve:
            return finish("denied", "extension.denied", clicker.slack_id, {"reason": reason}, reason)
        approvers = _approvers_so_far(db, extension.id)
        if len(approvers) < extension.approvals_required:
            outbox.enqueue_home(db, clicker.slack_id, now=now)  # it leaves the approver's queue
            return Counted(extension.id, len(approvers), extension.approvals_required)
        # The ask was decided (and trimmed to the ceiling) when it was made; the ceiling holds
        # again here, should the session have been extended meanwhile.
        agent_powers = powers_of(ctx.policy, request.agent_slack_id, ctx.groups)
        ceiling = max(ctx.policy.extensions.max_total_minutes, agent_powers.max_minutes if agent_powers else 0)
        new_end = min(session.expires_at + timedelta(minutes=extension.minutes), session.started_at + timedelta(minutes=ceiling))
        session.expires_at = new_end
        extension.new_expires_at = new_end
        return finish("approved", "extension.granted", clicker.slack_id, {"approvers": approvers, "new_expires_at": audit.format_time(new_end)}, None)


def _session_live(request: ImpersonationRequest, session: ImpersonationSession, now: datetime) -> bool:
    return request.state == RequestState.ACTIVE.value and now < session.expires_at


def _finish_extension(
    db: Session,
    extension: Extension,
    *,
    state: str,
    event_type: str,
    actor: Actor,
    details: dict,
    reason_text: str | None,
    now: datetime,
) -> Decided:
    """An extension leaves `pending` (approved, denied or expired), audited, with the outbox
    rows that edit every approver's DM and the agent's session DM (rendered at delivery)."""
    session = extension.session
    request = session.request
    base = dict(account=request.account.external_id, customer_user=request.customer_user.external_id, request_id=request.id, session_id=session.id)
    extension.state, extension.decided_at = state, now
    audit.append(db, EventDraft(type=event_type, actor=actor, details={"extension_id": extension.id, **details}, **base), now=now)
    db.flush()
    messages, asked, reminded = _decision_audience(db, extension.id)
    targets = enqueue_approver_edits(db, extension.id, now=now, asked=asked, reminded=reminded)
    targets.append(outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now))
    if state == "approved":
        # the security feed shows the new end
        targets.append(outbox.enqueue(db, outbox.Kind.FEED, request.id, now=now))
    return Decided(
        RequestView.of(request), state, actor.slack_id, now, reason_text, messages,
        extension=ExtensionView.of(extension), session=SessionView.of(session), asked=asked,
        targets=tuple(targets),
    )


def expire_pending_extension(ctx: DomainContext, extension_id: str, *, now: datetime | None = None) -> Decided | None:
    """The scheduler's notice for an ask for more time nobody decided (as
    for requests): once past its TTL, or once its session is no longer live, it is expired —
    audited `extension.expired` by the clock, every approver's DM and the agent's session DM
    edited through the outbox. Idempotent: an extension no longer pending is left alone."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        extension = _lock_extension(db, extension_id)
        if extension is None or extension.state != "pending":
            return None
        session = extension.session
        live = _session_live(session.request, session, now)
        if live and now < extension.pending_expires_at:
            return None
        return _finish_extension(
            db, extension, state="expired", event_type="extension.expired", actor=Actor.system("clock"),
            details={"session_live": live}, reason_text=None, now=now,
        )


def last_extension_outcome(ctx: DomainContext, session_id: str) -> Decided | None:
    """How the session's latest ask for more time was decided, while none is pending (the
    agent's session DM shows it, rendered by the outbox at delivery); None when there was
    none or one is pending."""
    with reading(ctx.sessions) as db:
        latest = db.execute(
            select(Extension).where(Extension.session_id == session_id).order_by(Extension.created_at.desc(), Extension.id.desc()).limit(1)
        ).scalar_one_or_none()
        if latest is None or latest.state == "pending":
            return None
        return _extension_outcome(db, latest)


def pending_extension_for(ctx: DomainContext, session_id: str) -> ExtensionView | None:
    with reading(ctx.sessions) as db:
        row = db.execute(select(Extension).where(Extension.session_id == session_id, Extension.state == "pending")).scalar_one_or_none()
        return ExtensionView.of(row) if row else None


def messages_for(ctx: DomainContext, subject_id: str) -> tuple[MessageView, ...]:
    with reading(ctx.sessions) as db:
        return _messages(db, subject_id)


# ---------------------------------------------------------------- reminders and escalation


@dataclass(frozen=True)
class Nudged:
    """What one run owed an unanswered ask: reminders sent, the escalation group asked."""

    subject_id: str
    reminded: tuple[str, ...]
    escalated: bool
    asked: tuple[str, ...]
    targets: tuple[str, ...]


def nudge_approvers(ctx: DomainContext, subject_id: str, *, now: datetime | None = None) -> Nudged | None:
    """The scheduler's reminder and escalation of a request or an extension still pending
    (`policy.approval_nudges` decides what is due): past the reminder point, every approver
    asked who has not answered gets a reminder, a new DM so that Slack notifies them
    (chat.update does not), audited `approval.reminded`; past the escalation point, the
    policy's escalation group is asked (their approver DMs), audited `approval.escalated`.
    Either edits the agent's DM, which shows who was asked. Each happens once per ask
    however many schedulers run: under the subject's row lock, a one-time claim (job_claims)
    commits with the event and the outbox rows, or none of them does. None: nothing owed."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        request = _lock_request(db, subject_id)
        extension = None
        if request is None:
            extension = _lock_extension(db, subject_id)
            if extension is None or extension.state != "pending" or not _session_live(extension.session.request, extension.session, now):
                return None
            request = extension.session.request
            asked_at, expires_at = extension.created_at, extension.pending_expires_at
        elif request.state != RequestState.PENDING.value or request.pending_expires_at is None:
            return None
        else:
            asked_at, expires_at = request.created_at, request.pending_expires_at
        requester = _requester(request)
        history = _ask_history(db, subject_id)
        escalated = claimed(db, ESCALATE_CLAIM, subject_id)
        group = escalation_members(ctx, request)
        gating = ctx.policy.gating
        answered = frozenset(db.execute(select(Approval.approver_slack_id).where(Approval.subject_id == subject_id)).scalars())
        nudges = approval_nudges(
            now=now,
            asked_at=asked_at,
            expires_at=expires_at,
            asked=_everyone_asked(history, _messages(db, subject_id)),
            answered=answered,
            escalation_named=bool(group),
            escalation=_approver_pool(ctx, group, requester=requester) if group and not escalated else (),
            reminded=claimed(db, REMIND_CLAIM, subject_id),
            escalated=escalated,
            remind_after_percent=gating.remind_after_percent,
            escalate_after_percent=gating.escalate_after_percent,
            escalate_after_minutes=gating.escalate_after_minutes,
        )
        base = dict(
            account=request.account.external_id,
            customer_user=request.customer_user.external_id,
            request_id=request.id,
            session_id=extension.session_id if extension is not None else None,
        )
        about = {"extension_id": extension.id} if extension is not None else {}
        targets: list[str] = []
        reminded: tuple[str, ...] = ()
        if nudges.remind and claim_once(db, REMIND_CLAIM, subject_id, now=now):
            reminded = nudges.remind
            audit.append(
                db,
                EventDraft(
                    type="approval.reminded",
                    actor=Actor.system("clock"),
                    details={**about, "reminded": list(reminded), "expires_at": audit.format_time(expires_at)},
                    **base,
                ),
                now=now,
            )
            targets += [outbox.enqueue(db, outbox.Kind.REMINDER, subject_id, recipient=r, now=now) for r in reminded]
        escalated_now = nudges.escalate and claim_once(db, ESCALATE_CLAIM, subject_id, now=now)
        if escalated_now:
            audit.append(
                db,
                EventDraft(
                    type="approval.escalated",
                    actor=Actor.system("clock"),
                    details={**about, "asked": list(nudges.ask), "group": list(group), "expires_at": audit.format_time(expires_at)},
                    **base,
                ),
                now=now,
            )
            targets += enqueue_asks(db, subject_id, nudges.ask, now=now)
        if not reminded and not escalated_now:
            return None
        if extension is not None:
            targets.append(outbox.enqueue(db, outbox.Kind.AGENT, request.id, recipient=request.agent_slack_id, now=now))
        else:
            targets.append(outbox.enqueue_agent_request(db, request, now=now))
        return Nudged(subject_id, reminded, escalated_now, nudges.ask if escalated_now else (), tuple(targets))


def asks_to_nudge(ctx: DomainContext, *, now: datetime) -> list[str]:
    """Requests and extensions still pending for which a reminder or an escalation may be
    due at `now` (read without locks; nudge_approvers decides under its lock)."""
    gating = ctx.policy.gating
    with reading(ctx.sessions) as db:
        pending = [
            (row.id, row.created_at, row.pending_expires_at, row.gated_by)
            for row in db.execute(
                select(ImpersonationRequest.id, ImpersonationRequest.created_at, ImpersonationRequest.pending_expires_at, ImpersonationRequest.gated_by)
                .where(ImpersonationRequest.state == RequestState.PENDING.value, ImpersonationRequest.pending_expires_at > now)
            )
        ]
        pending += [
            (row.id, row.created_at, row.pending_expires_at, row.gated_by)
            for row in db.execute(
                select(Extension.id, Extension.created_at, Extension.pending_expires_at, ImpersonationRequest.gated_by)
                .join(ImpersonationSession, ImpersonationSession.id == Extension.session_id)
                .join(ImpersonationRequest, ImpersonationRequest.id == ImpersonationSession.request_id)
                .where(Extension.state == "pending", Extension.pending_expires_at > now)
            )
        ]
        ids = [subject_id for subject_id, *_ in pending]
        claims = select(JobClaim.job, JobClaim.key).where(JobClaim.job.in_((REMIND_CLAIM, ESCALATE_CLAIM)), JobClaim.key.in_(ids))
        done = {(job, key) for job, key in db.execute(claims)} if ids else set()
    due = []
    for subject_id, asked_at, expires_at, gated_by in pending:
        gates = frozenset(g for g in gated_by.split(",") if g)
        named = bool(escalation_group(gates=gates, escalate_to=gating.escalate_to, escalate_to_by_gate=gating.escalate_to_by_gate))
        # "could anything be owed": someone unanswered to remind, a group to escalate to
        could = approval_nudges(
            now=now, asked_at=asked_at, expires_at=expires_at, asked=("?",), answered=frozenset(), escalation_named=named, escalation=(),
            reminded=(REMIND_CLAIM, subject_id) in done, escalated=(ESCALATE_CLAIM, subject_id) in done,
            remind_after_percent=gating.remind_after_percent, escalate_after_percent=gating.escalate_after_percent,
            escalate_after_minutes=gating.escalate_after_minutes,
        )
        if could.remind or could.escalate:
            due.append(subject_id)
    return due


def waiting_for(db: Session, approver_slack_id: str, *, now: datetime, limit: int) -> list[ApprovalAsk]:
    """The requests and extensions waiting for this approver, oldest first: pending, not past
    their time, asked of them (as their DMs were), and not yet voted on by them. What the
    Approve / Deny buttons then do is decided again at the click, as on the DMs."""
    voted = set(db.execute(select(Approval.subject_id).where(Approval.approver_slack_id == approver_slack_id)).scalars())
    asks: list[ApprovalAsk] = []
    pending = db.execute(
        select(ImpersonationRequest)
        .where(ImpersonationRequest.state == RequestState.PENDING.value, ImpersonationRequest.pending_expires_at > now)
        .order_by(ImpersonationRequest.created_at)
    ).unique().scalars()
    for request in pending:
        if request.id not in voted and approver_slack_id in _asked(db, request.id):
            asks.append(_ask_now(db, request, None))
    extensions = db.execute(
        select(Extension).where(Extension.state == "pending", Extension.pending_expires_at > now).order_by(Extension.created_at)
    ).unique().scalars()
    for extension in extensions:
        if extension.id not in voted and approver_slack_id in _asked(db, extension.id):
            asks.append(_ask_now(db, extension.session.request, extension))
    return asks[:limit]
