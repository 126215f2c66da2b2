"""Asking to impersonate: what the modal may offer an agent, and deciding a submitted request.

A refusal changes nothing but the audit log (`request.blocked` with its cause). A valid
request on a gated account is stored `pending` (approvals); any other valid request
is granted at once and issues its one-time link, all in one transaction.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import Account, CustomerUser, ImpersonationRequest, ImpersonationSession, Link, RequestState
from bot.domain import anomalies, approvals, audit, directory, links, outbox, webhooks
from bot.domain.approvals import ApprovalAsk, open_request_approval
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.identity import requester_identity
from bot.domain.links import issue_link
from bot.domain.policy import (
    REASON_MAX_LENGTH,
    BlockCause,
    Decision,
    Field_,
    Outcome,
    Powers,
    decide,
    powers_of,
)
from bot.domain.ports import Person
from bot.domain.sessions import SessionStatus, audit_not_the_agent, status_at
from bot.domain.views import IssuedLink, RequestView, minutes_between

log = logging.getLogger(__name__)

#: What the agent reads on the refused field. Plain text: the Slack face escapes it.
BLOCK_MESSAGES: dict[BlockCause, str] = {
    BlockCause.UNKNOWN_ACCOUNT: "No account with that id in the directory. Search the Account menu by name or id.",
    BlockCause.OPTED_OUT: (
        "This account has opted out of impersonation by contract. No one can impersonate its users: "
        "help the customer another way (a screen share), or ask RevOps if the contract has changed."
    ),
    BlockCause.NO_ROLE: "You have no impersonation role. Ask your manager to add you to the policy; `/impersonate help` lists what you can do.",
    BlockCause.NOT_ASSIGNED: (
        "This account is not assigned to you, and your role only covers assigned accounts. "
        "Ask your manager to assign it to you, or hand the ticket to someone it is assigned to."
    ),
    BlockCause.UNKNOWN_USER: "No such user in this account. Pick one from the Customer user menu.",
    BlockCause.PROTECTED_USER: "This user is an owner or admin of the account and cannot be impersonated. Pick another user of the account to reproduce the problem.",
    BlockCause.REASON_TOO_SHORT: "Give a longer reason (at least {min} characters).",
    BlockCause.REASON_TOO_LONG: f"Keep the reason under {REASON_MAX_LENGTH} characters.",
    BlockCause.TICKET_REQUIRED: "A ticket reference is required.",
    BlockCause.TICKET_INVALID: "A ticket reference is an id or URL without spaces, at most 200 characters.",
    BlockCause.DURATION_OVER_CAP: "Your role allows sessions of at most {max} minutes. Pick a shorter length.",
    BlockCause.SCOPE_NOT_ALLOWED: "Your role allows read-only sessions only. Choose Read-only, or ask a colleague whose role allows read and write.",
    BlockCause.BREAK_GLASS_NOT_ALLOWED: "Your role cannot break glass on gated accounts. Leave it unticked to ask for approval.",
    BlockCause.BREAK_GLASS_REASON_TOO_SHORT: "Break-glass needs a fuller reason (at least {break_glass_min} characters).",
    BlockCause.JUSTIFICATION_REQUIRED: "Choose the justification for this access from the list.",
    BlockCause.IDENTITY_UNAVAILABLE: (
        "Slack could not confirm who you are just now, and this account needs an approval. "
        "Nothing was requested: try again in a minute."
    ),
}


@dataclass(frozen=True)
class AgentIdentity:
    slack_id: str
    team_id: str | None = None


@dataclass(frozen=True)
class RequestForm:
    """What the agent submitted, already parsed from the payload (ids, not labels)."""

    account: str | None
    user: str | None
    reason: str
    ticket: str | None
    duration_minutes: int | None
    scope: str
    #: skip approval on a gated account (break-glass roles only)
    break_glass: bool = False
    #: the session whose "Start a new request" button opened the modal: only says where the
    #: request came from; whether it is a re-initiation, and of which session, the domain
    #: finds itself (`_reinitiation`)
    previous_session_id: str | None = None
    #: the justification code chosen (policy `[privacy] justifications`), beside the reason
    justification: str | None = None


@dataclass(frozen=True)
class ModalOptions:
    """What the request modal may offer this agent, from the policy."""

    role: str | None
    duration_choices: tuple[int, ...]
    default_duration: int | None
    can_read_write: bool
    reason_min_length: int
    ticket_required: bool
    can_break_glass: bool = False
    break_glass_reason_min_length: int = 0
    #: (code, label) of each justification the policy lists; empty: none is asked
    justifications: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Blocked:
    cause: BlockCause
    field: Field_
    message: str


@dataclass(frozen=True)
class Pending:
    request: RequestView
    approvals_required: int
    #: who was asked, and the agent's recent sessions on the account (for the approvers' DMs)
    ask: ApprovalAsk | None = None
    #: the outbox targets the submission owed (the agent's DM, every approver's), for an
    #: immediate delivery once the transaction has committed
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Granted:
    request: RequestView
    link: IssuedLink
    redeem_window_minutes: int
    #: gates skipped by break-glass; the security channel is told at once (an outbox row)
    bypassed: frozenset[str] = frozenset()
    #: the outbox targets the grant owed (the agent's link DM, the feed, a break-glass alert)
    targets: tuple[str, ...] = ()
    #: the approver whose click granted a gated request (shown in the link DM)
    approved_by: str | None = None


@dataclass(frozen=True)
class AlreadyOpen:
    """The agent already has an open access to this customer user: nothing new was issued."""

    request: RequestView
    #: the live session, when it was redeemed
    session_id: str | None
    #: when the open access ends by itself (the session's end, the link's or the ask's expiry)
    until: datetime | None


SubmitResult = Blocked | Pending | Granted | AlreadyOpen


def agent_powers(ctx: DomainContext, agent_slack_id: str) -> Powers | None:
    return powers_of(ctx.policy, agent_slack_id, ctx.groups)


def modal_options(ctx: DomainContext, agent_slack_id: str) -> ModalOptions:
    powers = agent_powers(ctx, agent_slack_id)
    rules = ctx.policy.requests
    # The policy's choices up to the role's cap, and the cap itself always: a 20-minute role
    # is offered 15 and 20, not 15 alone.
    choices = tuple(sorted({m for m in rules.duration_choices if m <= powers.max_minutes} | {powers.max_minutes})) if powers else ()
    return ModalOptions(
        # A role that cannot impersonate (e.g. security's) is no impersonation role here.
        role=powers.role if powers and powers.can_impersonate else None,
        duration_choices=choices,
        default_duration=choices[0] if choices else None,
        can_read_write=bool(powers and powers.can_read_write),
        reason_min_length=rules.reason_min_length,
        ticket_required=rules.ticket_required,
        can_break_glass=bool(powers and powers.can_break_glass),
        break_glass_reason_min_length=ctx.policy.break_glass.reason_min_length,
        justifications=tuple(ctx.policy.privacy.justifications.items()),
    )


def _account_label(external_id: str, name: str) -> tuple[str, str]:
    return external_id, f"{name} ({external_id})"


#: The longest typeahead query searched for. Longer ones match no account or user (ids, names
#: and e-mail addresses are shorter), and an unbounded LIKE pattern is refused by SQLite
#: ("LIKE or GLOB pattern too complex", SQLITE_MAX_LIKE_PATTERN_LENGTH) and costs PostgreSQL
#: time for nothing.
SEARCH_QUERY_MAX_LENGTH = 320


def _search_text(query: object) -> str | None:
    """The typeahead query as searched, or None when it cannot match anything."""
    if not isinstance(query, str):
        return None
    query = query.strip()
    return query if len(query) <= SEARCH_QUERY_MAX_LENGTH else None


def account_choices(ctx: DomainContext, query: object, *, limit: int) -> list[tuple[str, str]]:
    """(account id, label) pairs for the account typeahead; none for a query that cannot match."""
    text = _search_text(query)
    if text is None:
        return []
    with reading(ctx.sessions) as db:
        return [_account_label(*pair) for pair in directory.account_labels(db, text, limit=limit)]


def named_account(ctx: DomainContext, text: str, *, max_length: int) -> tuple[str, str] | None:
    """(account id, label) of the account `/impersonate <text>` names by its id, ignoring case
    (a prefix or a name is not enough: the modal's typeahead is there for searching)."""
    wanted = text.strip()
    if not wanted or len(wanted) > max_length:
        return None
    with reading(ctx.sessions) as db:
        pair = directory.account_label_named(db, wanted)
    return _account_label(*pair) if pair is not None else None


def user_choices(ctx: DomainContext, account_external_id: str | None, query: object, *, limit: int) -> list[tuple[str, str]]:
    """(user id, label) pairs for the customer-user typeahead of the chosen account; none for a
    query that cannot match."""
    text = _search_text(query)
    if not account_external_id or not isinstance(account_external_id, str) or text is None:
        return []
    with reading(ctx.sessions) as db:
        account = directory.find_account(db, account_external_id)
        if account is None:
            return []
        return [
            (u.external_id, f"{u.name} <{u.email}>" + (" · protected" if u.protected else ""))
            for u in directory.search_users(db, account, text, limit=limit)
        ]


def submit_request(
    ctx: DomainContext, agent: AgentIdentity, form: RequestForm, *, now: datetime | None = None
) -> SubmitResult:
    now = now or utcnow()
    result = _decide_and_store(ctx, agent, form, now=now)
    # Anomaly rules are checked at every request, once it has committed, so
    # that a failing check can never undo or hide the request; the sweep looks again anyway.
    anomalies.check_request(ctx, agent=agent.slack_id, account=form.account, now=now)
    return result


@dataclass(frozen=True)
class _Asker:
    """Who submitted, as the directory and the policy see them at submission."""

    agent: AgentIdentity
    person: Person
    powers: Powers | None

    @property
    def actor(self) -> Actor:
        return Actor(slack_id=self.agent.slack_id, email=self.person.email, role=self.powers.role if self.powers else None)


@dataclass(frozen=True)
class _Target:
    """Whom the form names, as found in the directory, and whether asking for them now
    re-initiates one of the agent's sessions with them."""

    account: Account | None
    user: CustomerUser | None
    again: Reinitiation | None


def _decide_and_store(ctx: DomainContext, agent: AgentIdentity, form: RequestForm, *, now: datetime) -> SubmitResult:
    """The policy's decision on a submission, and what it stores and owes, in one transaction:
    a refusal (audited), the open access the agent already has, or a new request, pending
    its approvals or granted at once."""
    asker = _Asker(agent, ctx.people.person(agent.slack_id), agent_powers(ctx, agent.slack_id))
    with ctx.sessions() as db, db.begin():
        target = _find_target(db, ctx, asker, form, now=now)
        decision = _decide(db, ctx, asker, form, target)
        if decision.outcome is Outcome.BLOCK:
            return _blocked(db, ctx, asker, form, decision, account_known=target.account is not None, now=now)
        assert target.account is not None and target.user is not None and asker.powers is not None
        if ctx.policy.requests.one_open_access:
            # The customer user's row is locked first (PostgreSQL), so two submissions for the
            # same user are ordered and the second sees the first (SQLite: BEGIN IMMEDIATE).
            directory.lock_user(db, target.user.id)
            open_access = _open_access(db, agent.slack_id, target.user.id, now)
            if open_access is not None:
                _audit_already_open(db, asker.actor, form, open_access, now=now)
                return open_access
        request = _store_request(db, ctx, asker, form, target, decision, now=now)
        if decision.outcome is Outcome.NEEDS_APPROVAL:
            return _ask_approval(db, ctx, asker, request, decision, now=now)
        return _grant(db, ctx, asker, request, decision, now=now)


def _find_target(db: Session, ctx: DomainContext, asker: _Asker, form: RequestForm, *, now: datetime) -> _Target:
    account = directory.find_account(db, form.account) if form.account else None
    user = directory.find_user(db, account, form.user) if account is not None and form.user else None
    again = (
        _reinitiation(db, agent_slack_id=asker.agent.slack_id, customer_user_id=user.id, now=now, window_minutes=ctx.policy.reinitiation.window_minutes)
        if user is not None
        else None
    )
    return _Target(account, user, again)


def _decide(db: Session, ctx: DomainContext, asker: _Asker, form: RequestForm, target: _Target) -> Decision:
    rules, gating = ctx.policy.requests, ctx.policy.gating
    account, user = target.account, target.user
    return decide(
        powers=asker.powers,
        account_flags=account.flag_names() if account is not None else None,
        assigned=account is not None and directory.is_assigned(db, asker.agent.slack_id, account.id),
        user_known=user is not None,
        user_protected=bool(user and user.protected),
        reason=form.reason,
        ticket=form.ticket,
        duration_minutes=form.duration_minutes or 0,
        scope=form.scope,
        reason_min_length=rules.reason_min_length,
        ticket_required=rules.ticket_required,
        gated_flags=frozenset(gating.flags),
        approvals_required=gating.approvals_required,
        approvals_required_by_flag={flag: n for flag, n in gating.approvals_required_by_flag.items()},
        break_glass=form.break_glass,
        break_glass_reason_min_length=ctx.policy.break_glass.reason_min_length,
        requester_identified=asker.person.resolved,
        reinitiation_ordinal=target.again.ordinal if target.again is not None else 0,
        reinitiation_approval_from=ctx.policy.reinitiation.require_approval_from,
        justification=form.justification,
        justification_codes=frozenset(ctx.policy.privacy.justifications),
    )


def _blocked(
    db: Session, ctx: DomainContext, asker: _Asker, form: RequestForm, decision: Decision, *, account_known: bool, now: datetime
) -> Blocked:
    _audit_blocked(db, decision, asker.actor, form, account_known=account_known, now=now)
    assert decision.cause is not None and decision.field is not None
    message = BLOCK_MESSAGES[decision.cause].format(
        min=ctx.policy.requests.reason_min_length,
        max=asker.powers.max_minutes if asker.powers else 0,
        break_glass_min=ctx.policy.break_glass.reason_min_length,
    )
    return Blocked(decision.cause, decision.field, message)


def _store_request(
    db: Session, ctx: DomainContext, asker: _Asker, form: RequestForm, target: _Target, decision: Decision, *, now: datetime
) -> ImpersonationRequest:
    """The new request, pending or granted as decided, audited `request.created` (and
    `request.reinitiated` when it follows one of the agent's sessions)."""
    assert target.account is not None and target.user is not None and asker.powers is not None
    pending = decision.outcome is Outcome.NEEDS_APPROVAL
    again, person = target.again, asker.person
    request = ImpersonationRequest(
        id=str(uuid.uuid4()),
        team_id=asker.agent.team_id,
        agent_slack_id=asker.agent.slack_id,
        agent_email=person.email,
        agent_enterprise_user_id=person.enterprise_user_id,
        agent_tz=person.tz,
        agent_role=asker.powers.role,
        account_id=target.account.id,
        customer_user_id=target.user.id,
        reason=form.reason.strip(),
        justification=form.justification,
        ticket=(form.ticket or "").strip() or None,
        duration_minutes=form.duration_minutes or 0,
        scope=form.scope,
        state=(RequestState.PENDING if pending else RequestState.GRANTED).value,
        gated_by=",".join(sorted(decision.gated_by or decision.bypassed)),
        created_at=now,
        updated_at=now,
        approvals_required=decision.approvals_required if pending else 0,
        pending_expires_at=now + timedelta(minutes=ctx.policy.gating.pending_ttl_minutes) if pending else None,
        previous_session_id=again.previous_session_id if again is not None else None,
        reinitiation_ordinal=again.ordinal if again is not None else 0,
        previous_session_ended_at=again.previous_ended_at if again is not None else None,
        break_glass=bool(decision.bypassed),
    )
    db.add(request)
    db.flush()
    db.refresh(request)
    created = {
        "reason": request.reason,
        "justification": request.justification,
        "ticket": request.ticket,
        "duration_minutes": request.duration_minutes,
        "scope": request.scope,
        "state": request.state,
        "account_flags": sorted(target.account.flag_names()),
        "gated_by": sorted(decision.gated_by),
        "previous_session_id": request.previous_session_id,
        "reinitiation_ordinal": request.reinitiation_ordinal,
    }
    audit.append(db, EventDraft.about(request, "request.created", actor=asker.actor, details=created), now=now)
    if again is not None:
        details = again.details(now, ctx.policy.reinitiation.window_minutes, form)
        audit.append(db, EventDraft.about(request, "request.reinitiated", actor=asker.actor, details=details), now=now)
    return request


def _ask_approval(db: Session, ctx: DomainContext, asker: _Asker, request: ImpersonationRequest, decision: Decision, *, now: datetime) -> Pending:
    person = asker.person
    requester = requester_identity(slack_id=asker.agent.slack_id, email=person.email, enterprise_user_id=person.enterprise_user_id)
    # The agent's DM is owed first, so that it is sent ahead of the approvers' asks.
    agent_dm = outbox.enqueue_agent_request(db, request, now=now)
    ask = open_request_approval(db, ctx, request, requester=requester, now=now)
    return Pending(RequestView.of(request), decision.approvals_required, ask, targets=(agent_dm, *approvals.ask_targets(ask)))


def _grant(db: Session, ctx: DomainContext, asker: _Asker, request: ImpersonationRequest, decision: Decision, *, now: datetime) -> Granted:
    """Granted by the policy, or by break-glass past the gates (audited `approval.bypassed`);
    the one-time link is issued and its DM owed with the grant: the row holds the request's
    id, the token is derived again when the DM is rendered. Break-glass also owes the
    security channel's alert."""
    if decision.bypassed:
        bypassed = {"break_glass": True, "gates": sorted(decision.bypassed)}
        audit.append(db, EventDraft.about(request, "approval.bypassed", actor=asker.actor, details=bypassed), now=now)
    else:
        audit.append(db, EventDraft.about(request, "request.granted", actor=Actor.system("policy"), details={"by": "policy"}), now=now)
    link = issue_link(db, ctx, request, now=now)
    if decision.bypassed:
        targets = outbox.enqueue_break_glass(db, request, now=now)
    else:
        targets = outbox.enqueue_granted(db, request, now=now)
    return Granted(RequestView.of(request), link, ctx.policy.links.redeem_window_minutes, decision.bypassed, tuple(targets))


def _open_access(db: Session, agent_slack_id: str, customer_user_id: int, now: datetime) -> AlreadyOpen | None:
    """The agent's open access to this customer user, if any: a pending request still inside
    its TTL, a grant whose link can still be redeemed, or a session still live. States the
    scheduler has not yet tidied (a lapsed link, an expired session) do not count."""
    r, link, session = ImpersonationRequest, Link, ImpersonationSession
    row = db.execute(
        select(r.id, r.state, r.pending_expires_at, link.expires_at.label("link_expires_at"), session.id.label("session_id"), session.expires_at.label("session_expires_at"))
        .outerjoin(link, (link.request_id == r.id) & link.redeemed_at.is_(None))
        .outerjoin(session, (session.request_id == r.id) & session.ended_at.is_(None))
        .where(
            r.agent_slack_id == agent_slack_id,
            r.customer_user_id == customer_user_id,
            or_(
                (r.state == RequestState.PENDING.value) & (r.pending_expires_at > now),
                (r.state == RequestState.GRANTED.value) & (link.expires_at > now),
                (r.state == RequestState.ACTIVE.value) & (session.expires_at > now),
            ),
        )
        .order_by(r.created_at.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    request = db.get(ImpersonationRequest, row.id)
    assert request is not None
    until = {RequestState.PENDING.value: row.pending_expires_at, RequestState.GRANTED.value: row.link_expires_at}.get(row.state, row.session_expires_at)
    return AlreadyOpen(RequestView.of(request), row.session_id if row.state == RequestState.ACTIVE.value else None, until)


def _audit_already_open(db: Session, actor: Actor, form: RequestForm, open_access: AlreadyOpen, *, now: datetime) -> None:
    """A refusal like any other (`request.blocked`), naming the open access it pointed to."""
    audit.append(
        db,
        EventDraft(
            type="request.blocked",
            actor=actor,
            account=open_access.request.account,
            customer_user=open_access.request.customer_user,
            request_id=open_access.request.id,
            session_id=open_access.session_id,
            details={
                "cause": "already_open",
                "open_state": open_access.request.state,
                "duration_minutes": form.duration_minutes,
                "scope": form.scope[:32],
                "ticket": (form.ticket or "")[:200] or None,
                "reason": form.reason[:2000],
            },
        ),
        now=now,
    )


def _audit_blocked(
    db: Session, decision: Decision, actor: Actor, form: RequestForm, *, account_known: bool, now: datetime
) -> None:
    details: dict[str, object] = {
        "cause": decision.cause.value if decision.cause else None,
        "user": (form.user or "")[:128] or None,
        "justification": (form.justification or "")[:64] or None,
        "duration_minutes": form.duration_minutes,
        "scope": form.scope[:32],
        "ticket": (form.ticket or "")[:200] or None,
        "reason": form.reason[:2000],
    }
    if not account_known:
        details["account_requested"] = (form.account or "")[:128] or None
    audit.append(
        db,
        EventDraft(
            type="request.blocked",
            actor=actor,
            account=form.account if account_known else None,
            customer_user=form.user if account_known else None,
            details=details,
        ),
        now=now,
    )
    if account_known and decision.cause in webhooks.POLICY_DENIALS and form.account and form.user:
        webhooks.request_denied(
            db,
            request_id=None,
            account=form.account,
            customer_user=form.user,
            agent=actor.email or actor.slack_id or "unknown",
            denied_by="policy",
            cause=decision.cause.value,
            now=now,
        )


@dataclass(frozen=True)
class Reinitiation:
    """A request's place in a chain of re-initiations: the session it follows, when that
    ended, and how many re-initiations in a row it makes (1 after a fresh request's session)."""

    previous_session_id: str
    previous_ended_at: datetime
    ordinal: int

    def details(self, now: datetime, window_minutes: int, form: RequestForm) -> dict[str, object]:
        """The `request.reinitiated` event's details. `via`: "button" when the modal was opened
        from this very session's "Start a new request", else "command" (`/impersonate`)."""
        return {
            "previous_session_id": self.previous_session_id,
            "ordinal": self.ordinal,
            "previous_ended_at": audit.format_time(self.previous_ended_at),
            "minutes_since_end": minutes_between(self.previous_ended_at, now),
            "window_minutes": window_minutes,
            "via": "button" if form.previous_session_id == self.previous_session_id else "command",
        }


def _reinitiation(db: Session, *, agent_slack_id: str, customer_user_id: int, now: datetime, window_minutes: int) -> Reinitiation | None:
    """Whether a request by this agent for this customer user, made `now`, re-initiates one of
    the agent's sessions with that user: none of them is still live, and the one that ended
    last (ended, expired or revoked; a session past its end that the scheduler has not tidied
    yet ended at its end) ended at most `window_minutes` ago. The chain's ordinal carries on
    from the request that session came from; a request that led to no session (denied,
    cancelled, lapsed) does not move it, since it gave no access. Where the agent came from
    (the button or the command) does not matter: the same facts decide."""
    r, s = ImpersonationRequest, ImpersonationSession
    since = now - timedelta(minutes=window_minutes)
    # only the sessions that matter: live ones, and those that ended within the window
    recent = db.execute(
        select(s.id, s.ended_at, s.expires_at, r.reinitiation_ordinal)
        .join(r, r.id == s.request_id)
        .where(
            s.agent_slack_id == agent_slack_id,
            r.customer_user_id == customer_user_id,
            s.started_at <= now,
            or_(s.ended_at >= since, s.ended_at.is_(None) & (s.expires_at >= since)),
        )
    ).all()
    ended = [(row.ended_at if row.ended_at is not None else row.expires_at, row.reinitiation_ordinal or 0, row.id) for row in recent]
    if not ended or any(end > now for end, _, _ in ended):
        return None  # nothing ended in the window, or one is still live: not after a session
    end, ordinal, session_id = max(ended)
    return Reinitiation(session_id, end, ordinal + 1)


@dataclass(frozen=True)
class NewRequestModal:
    """What "Start a new request" on a session's DM opens: the request modal, pre-filled with
    the account of the clicker's own session, carrying that session's id once it is over."""

    options: ModalOptions
    #: the clicker's own session's request (its account pre-fills the modal), or None
    request: RequestView | None = None
    #: the session the modal came from, when it is the clicker's own and over (ids only)
    session_id: str | None = None


def new_request_from_session(
    ctx: DomainContext, session_id: str, *, agent_slack_id: str, now: datetime | None = None
) -> NewRequestModal | AlreadyOpen:
    """A click on "Start a new request" (the session-over DM, or the live one's). The button's
    value names a session; it is reloaded and re-checked now: someone else's session (a forged
    value) pre-fills nothing and is audited (`session.reinitiation_refused`); the clicker's own
    session still open, while one open access is the rule, shows that access instead of a
    modal whose submission would only be refused. Whatever the modal then carries, the
    submission decides again whether the new request re-initiates a session
    (`_reinitiation`)."""
    now = now or utcnow()
    options = modal_options(ctx, agent_slack_id)
    with ctx.sessions() as db, db.begin():
        session = db.get(ImpersonationSession, session_id) if session_id else None
        if session is None:
            return NewRequestModal(options)
        if session.agent_slack_id != agent_slack_id:
            audit_not_the_agent(db, session, event_type="session.reinitiation_refused", actor_slack_id=agent_slack_id, now=now)
            return NewRequestModal(options)
        request = RequestView.of(session.request)
        if ctx.policy.requests.one_open_access:
            open_access = _open_access(db, agent_slack_id, session.request.customer_user_id, now)
            if open_access is not None:
                return open_access
        over = status_at(session, now) is not SessionStatus.LIVE
        return NewRequestModal(options, request, session.id if over else None)


def link_message_state(ctx: DomainContext, request_id: str, *, now: datetime | None = None) -> Granted | RequestView | None:
    """What the agent's link DM should show now (the outbox renders it at delivery):
    the grant with its link, derived again (the same link at every delivery), while the
    request is granted and its link unopened and within its window; the request alone once
    that window has passed unopened (the DM says the link expired); None in any other state
    (the session's and the outcome's renderers take over) or when the link cannot be derived
    again (the signing key changed): never a different link."""
    now = now or utcnow()
    with reading(ctx.sessions) as db:
        request = db.get(ImpersonationRequest, request_id)
        if request is None or request.state != RequestState.GRANTED.value:
            return None
        link = db.execute(select(Link).where(Link.request_id == request_id)).scalar_one_or_none()
        if link is None or link.redeemed_at is not None:
            return None
        view = RequestView.of(request)
        if link.expires_at <= now:
            return view
        issued = links.reissued_link(ctx, link)
        if issued is None:
            log.warning("request %s: its link cannot be derived again (the signing key changed since the grant); no link is sent", request_id)
            return None
        return Granted(
            view,
            issued,
            # the window the link was issued with, whatever the policy says today
            round((link.expires_at - link.created_at).total_seconds() / 60),
            bypassed=view.gated_by if view.break_glass else frozenset(),
            approved_by=approvals.approved_by(db, request),
        )


def record_agent_message(ctx: DomainContext, request_id: str, *, channel: str, ts: str) -> None:
    """Remember the agent's DM about this request so later changes edit it in place."""
    with ctx.sessions() as db, db.begin():
        request = db.get(ImpersonationRequest, request_id)
        if request is not None:
            request.agent_channel, request.agent_message_ts = channel, ts


def load_request(ctx: DomainContext, request_id: str) -> RequestView | None:
    with reading(ctx.sessions) as db:
        request = db.get(ImpersonationRequest, request_id)
        return RequestView.of(request) if request is not None else None
