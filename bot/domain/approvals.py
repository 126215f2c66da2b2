"""Approvals: gated requests decided by approvers, exactly once, and what an ask for more
time on a session shares with them (bot/domain/extensions.py): who may decide, how a vote is
counted, what a click returns.

Every click reloads the subject under a row lock (SELECT … FOR UPDATE on PostgreSQL; SQLite
transactions hold the write lock from BEGIN IMMEDIATE) and re-checks, at click time: the clicker
still holds an approving role and is among the designated approvers, is not the requester (by
Slack id, Grid id or e-mail), and the subject is still pending and not past its TTL. The
`approvals` table's unique key on (subject, approver identity) makes a double click count once.
The final transition is the lifecycle's conditional UPDATE, so of concurrent approve and deny
clicks exactly one decides; every other click learns who decided and when. The approvers'
DMs are bot/domain/approver_dms.py's; an ask's reminders and escalation, whatever its subject,
are bot/domain/asks.py's.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bot.db.models import (
    Approval,
    ApprovalDecision,
    Extension,
    ImpersonationRequest,
    ImpersonationSession,
    RequestState,
)
from bot.domain import audit, outbox, webhooks
from bot.domain.approver_dms import (
    Audience,
    MessageView,
    approver_edits,
    ask_history,
    decision_audience,
    enqueue_asks,
    everyone_asked,
    recorded_dms,
)
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.identity import Identity, identify, requester_identity
from bot.domain.lifecycle import transition
from bot.domain.links import issue_link
from bot.domain.once import claimed, insert_once
from bot.domain.policy import escalation_group, powers_of
from bot.domain.views import IssuedLink, RequestView, SessionView

DENY_REASON_MIN_LENGTH = 5
DENY_REASON_MAX_LENGTH = 1000
#: one reminder and one escalation per ask (its request or extension id), across schedulers
#: (job_claims, bot/domain/once.py)
REMIND_CLAIM = "approval.remind"
ESCALATE_CLAIM = "approval.escalate"


@dataclass(frozen=True)
class PastSession:
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    reason: str


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
    return approver_pool(ctx, designated, requester=requester)


def approver_pool(ctx: DomainContext, members: Sequence[str] | None, *, requester: Identity) -> list[str]:
    """Holders of a `can_approve` role, narrowed to `members` (ids, @groups) when given, who
    are identified just now and are not the requester."""
    holders: set[str] = set()
    for role in ctx.policy.roles.values():
        if role.can_approve:
            holders |= expand_members(ctx, role.members)
    if members:
        holders &= expand_members(ctx, list(members))
    eligible = []
    for holder in sorted(holders):
        identity = identify(ctx.people, holder)
        if identity.resolved and not identity.same_person(requester):
            eligible.append(holder)
    return eligible


def expand_members(ctx: DomainContext, members: list[str]) -> set[str]:
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


def refusal_cause(db: Session, ctx: DomainContext, clicker: Identity, request: ImpersonationRequest, subject_id: str) -> str | None:
    """Why this clicker may not decide the ask `subject_id` (the request or more time on its
    session), or None. The escalation group's approvers, once the ask was escalated to them,
    face the same checks as the first group's."""
    requester = requester_of(request)
    if clicker.same_person(requester):
        return "self_approval"
    if not clicker.resolved:
        # Fail closed: without the clicker's Grid id and e-mail, "not the requester" is unproven.
        return "identity_unavailable"
    powers = powers_of(ctx.policy, clicker.slack_id, ctx.groups)
    if powers is None or not powers.can_approve:
        return "not_an_approver"
    if clicker.slack_id not in eligible_approvers(ctx, account=request.account.external_id, team_id=request.team_id, requester=requester):
        # Read only now (a designated approver's click needs no query for it): the
        # escalation group may decide too once the ask was escalated to it.
        group = escalation_members(ctx, request) if claimed(db, ESCALATE_CLAIM, subject_id) else ()
        if not group or clicker.slack_id not in approver_pool(ctx, group, requester=requester):
            return "not_a_designated_approver"
    return None


def requester_of(request: ImpersonationRequest) -> Identity:
    """The requester as identified at submission (never looked up again: a lookup that fails
    at click time would hide their Grid id and e-mail)."""
    return requester_identity(
        slack_id=request.agent_slack_id, email=request.agent_email, enterprise_user_id=request.agent_enterprise_user_id
    )


def role_of(ctx: DomainContext, slack_id: str) -> str | None:
    powers = powers_of(ctx.policy, slack_id, ctx.groups)
    return powers.role if powers else None


def check_deny_reason(reason: str) -> Refused | None:
    """A denial needs a reason, within bounds, from the approver (of a request or more time)."""
    if DENY_REASON_MIN_LENGTH <= len(reason) <= DENY_REASON_MAX_LENGTH:
        return None
    return Refused(f"Give a reason for the denial ({DENY_REASON_MIN_LENGTH}–{DENY_REASON_MAX_LENGTH} characters).")


def vote(db: Session, subject_id: str, clicker: Identity, decision: ApprovalDecision, reason: str | None, now: datetime) -> bool:
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


def approvers_so_far(db: Session, subject_id: str) -> list[str]:
    return list(
        db.execute(
            select(Approval.approver_slack_id)
            .where(Approval.subject_id == subject_id, Approval.decision == ApprovalDecision.APPROVE.value)
            .order_by(Approval.id)
        ).scalars()
    )


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
        EventDraft.about(
            request,
            "approval.requested",
            actor=Actor.agent_of(request),
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


def ask_targets(ask: ApprovalAsk) -> list[str]:
    """The outbox targets an ask wrote (for an immediate delivery by the listener): every
    approver's DM and, for more time, the agent's session DM."""
    subject_id = ask.extension.id if ask.extension is not None else ask.request.id
    targets = [outbox.target_of(outbox.Kind.APPROVER, subject_id, approver) for approver in ask.approvers]
    if ask.extension is not None:
        targets.append(outbox.target_of(outbox.Kind.AGENT, ask.request.id, ask.request.agent_slack_id))
    return targets


#: built once (statement construction and its cache key are costly on every click)
_LOCK_REQUEST = select(ImpersonationRequest).where(ImpersonationRequest.id == bindparam("request_id")).with_for_update(of=ImpersonationRequest)


def lock_request(db: Session, request_id: str) -> ImpersonationRequest | None:
    return db.execute(_LOCK_REQUEST, {"request_id": request_id}).unique().scalar_one_or_none()


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
    audience = decision_audience(db, request.id)
    return Decided(RequestView.of(request), facts.outcome, facts.by, facts.at, reason, audience.messages, asked=audience.asked)


def ask_now(db: Session, request: ImpersonationRequest, extension: Extension | None) -> ApprovalAsk:
    """What the approvers are shown now about a pending request or more time on its session."""
    recent = recent_sessions(db, agent_slack_id=request.agent_slack_id, account_id=request.account_id)
    subject_id = extension.id if extension is not None else request.id
    history = ask_history(db, subject_id)
    return ApprovalAsk(
        RequestView.of(request),
        everyone_asked(history, recorded_dms(db, subject_id)),
        tuple(recent),
        ExtensionView.of(extension) if extension is not None else None,
        reminded_at=history.reminded_at,
        escalated_at=history.escalated_at,
        escalated_to=history.escalated,
    )


def enqueue_outcome(
    db: Session, request: ImpersonationRequest, audience: Audience, *, now: datetime, also: Sequence[outbox.Owed] = ()
) -> list[str]:
    """Outbox rows that edit every approver's DM and the agent's "approval needed"
    DM once a request is decided: expired, denied, cancelled or approved, then `also` (an
    approval also owes the new link DM: approve_request), all in one statement."""
    owed = [*approver_edits(request.id, audience), (outbox.Kind.AGENT_REQUEST, request.id, request.agent_slack_id), *also]
    return outbox.enqueue_all(db, owed, now=now)


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
        event=EventDraft.about(
            request,
            "request.expired",
            actor=Actor.system("clock"),
            details={"pending_expires_at": audit.format_time(request.pending_expires_at or now)},
        ),
        now=now,
    )
    audience = decision_audience(db, request.id)
    targets = enqueue_outcome(db, request, audience, now=now)
    return Decided(RequestView.of(request), "expired", None, now, None, audience.messages, asked=audience.asked, targets=tuple(targets))


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
    request = lock_request(db, request_id)
    if request is None:
        return Refused("That request no longer exists.")
    if request.state != RequestState.PENDING.value:
        return _final_facts(db, request)
    if request.pending_expires_at is not None and now >= request.pending_expires_at:
        return _expire_request(db, request, now)
    refusal = _refuse_if_ineligible(db, ctx, request, clicker, action=decision.value, now=now)
    if refusal:
        return refusal
    if not vote(db, request.id, clicker, decision, reason, now):
        return AlreadyCounted(request.id)
    return request


def approve_request(ctx: DomainContext, request_id: str, *, clicker_slack_id: str, now: datetime | None = None) -> ClickResult:
    now = now or utcnow()
    clicker = identify(ctx.people, clicker_slack_id)
    with ctx.sessions() as db, db.begin():
        request = _counted_vote(db, ctx, request_id, clicker, ApprovalDecision.APPROVE, None, now)
        if not isinstance(request, ImpersonationRequest):
            return request
        approvers = approvers_so_far(db, request.id)
        actor = Actor(slack_id=clicker.slack_id, email=clicker.email, role=role_of(ctx, clicker.slack_id))
        if len(approvers) < request.approvals_required:
            audit.append(
                db,
                EventDraft.about(request, "approval.recorded", actor=actor, details={"approvals": len(approvers), "required": request.approvals_required}),
                now=now,
            )
            outbox.enqueue_home(db, clicker.slack_id, now=now)  # it leaves the approver's queue
            return Counted(request.id, len(approvers), request.approvals_required)
        transition(
            db,
            request,
            source=RequestState.PENDING,
            target=RequestState.GRANTED,
            event=EventDraft.about(request, "approval.granted", actor=actor, details={"approvers": approvers, "required": request.approvals_required}),
            now=now,
        )
        link = issue_link(db, ctx, request, now=now)
        # Everything the approval says goes through the outbox: every
        # approver's DM and the agent's "approval needed" DM are edited to "approved", and
        # the link follows in a new DM (so that the agent is notified), rendered at delivery
        # with the link derived again from the request's id (the rows hold no token).
        audience = decision_audience(db, request.id)
        targets = enqueue_outcome(db, request, audience, now=now, also=outbox.granted(request))
        return Decided(
            RequestView.of(request), "approved", clicker.slack_id, now, None, audience.messages,
            link=link, asked=audience.asked, targets=tuple(targets),
        )


def deny_request(ctx: DomainContext, request_id: str, *, clicker_slack_id: str, reason: str, now: datetime | None = None) -> ClickResult:
    now = now or utcnow()
    reason = reason.strip()
    refused = check_deny_reason(reason)
    if refused:
        return refused
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
            event=EventDraft.about(
                request,
                "approval.denied",
                actor=Actor(slack_id=clicker.slack_id, email=clicker.email, role=role_of(ctx, clicker.slack_id)),
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
        audience = decision_audience(db, request.id)
        targets = enqueue_outcome(db, request, audience, now=now)
        return Decided(RequestView.of(request), "denied", clicker.slack_id, now, reason, audience.messages, asked=audience.asked, targets=tuple(targets))


def cancel_request(ctx: DomainContext, request_id: str, *, clicker_slack_id: str, now: datetime | None = None) -> ClickResult:
    """The agent withdraws their own pending request."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        request = lock_request(db, request_id)
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
            event=EventDraft.about(
                request,
                "request.cancelled",
                actor=Actor.agent_of(request),
            ),
            now=now,
        )
        audience = decision_audience(db, request.id)
        targets = enqueue_outcome(db, request, audience, now=now)
        return Decided(RequestView.of(request), "cancelled", clicker_slack_id, now, None, audience.messages, asked=audience.asked, targets=tuple(targets))


def expire_pending_request(ctx: DomainContext, request_id: str, *, now: datetime | None = None) -> Decided | None:
    """Expire one pending request past its TTL (the scheduler's notice); idempotent."""
    now = now or utcnow()
    with ctx.sessions() as db, db.begin():
        request = lock_request(db, request_id)
        if request is None or request.state != RequestState.PENDING.value:
            return None
        if request.pending_expires_at is None or now < request.pending_expires_at:
            return None
        return _expire_request(db, request, now)


def _refuse_if_ineligible(db: Session, ctx: DomainContext, request: ImpersonationRequest, clicker: Identity, *, action: str, now: datetime) -> Refused | None:
    cause = refusal_cause(db, ctx, clicker, request, request.id)
    if cause is None:
        return None
    audit.append(
        db,
        EventDraft.about(
            request,
            "approval.refused",
            actor=Actor(slack_id=clicker.slack_id, email=clicker.email, role=role_of(ctx, clicker.slack_id)),
            details={"cause": cause, "action": action},
        ),
        now=now,
    )
    return Refused(REFUSAL_MESSAGES[cause])
