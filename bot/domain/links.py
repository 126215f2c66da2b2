"""One-time links: issued with a grant, shown by GET, redeemed once by POST.

Only SHA-256(token) is stored (DESIGN.md hand-off 1). The token is not random but derived:
HMAC-SHA256 over the request's id under a key derived (HKDF) from the bot's signing key, so the
outbox can re-render the link DM at delivery from ids alone, and a redelivery sends the same
link (docs/design-decisions.md, "Watching sessions"). Redemption is one conditional UPDATE
(`… WHERE token_hash = :h AND redeemed_at IS NULL AND expires_at > :now`), so of any number
of concurrent redemptions exactly one changes a row; every other attempt is refused and
audited without the token (only a short prefix of its hash, for correlation).
"""
from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from bot.db.base import table_of
from bot.db.engine import reading
from bot.db.models import Account, ImpersonationRequest, ImpersonationSession, Link, RequestState
from bot.domain import anomalies, audit, directory, outbox, webhooks
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.handoff import HandoffClaims, mint_handoff
from bot.domain.keys import SigningKey
from bot.domain.lifecycle import move
from bot.domain.policy import Powers, RedeemRefusal, powers_of, recheck_at_redemption
from bot.domain.refusals import RefusalAuditor
from bot.domain.sign_in import SignedInAgent, is_requester
from bot.domain.snapshots import RequestSnapshot, request_snapshot
from bot.domain.views import IssuedLink, RequestView, SessionView

TOKEN_BYTES = 32  # 256 bits (DESIGN.md hand-off 1): the whole HMAC-SHA256 output
TOKEN_PATTERN_LENGTH = 43  # base64url of 32 bytes, no padding

#: HKDF `info` label (RFC 5869 §3.2) binding the derived key to link tokens alone: the same
#: signing key also yields the CSRF secret (bot/wiring.py) under another label, and neither
#: derived key reveals the other or the signing key.
LINK_TOKEN_KEY_LABEL = b"impersonation-bot link-token v1"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    return len(token) == TOKEN_PATTERN_LENGTH and all(c.isalnum() or c in "-_" for c in token)


def link_token_key(signing_key: SigningKey) -> bytes:
    """The 256-bit HMAC key for link tokens: HKDF-SHA256 of the Ed25519 signing key's raw
    private bytes. Whoever holds the signing key can already mint hand-off JWTs (the very
    access a link leads to), so deriving tokens from it adds no new secret to guard."""
    raw = signing_key.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LINK_TOKEN_KEY_LABEL).derive(raw)


def derive_token(key: bytes, request_id: str) -> str:
    """The link token of a request: base64url(HMAC-SHA256(key, "link:" + request id)),
    unpadded (43 characters, 256 bits). Keyed by the request's random UUID rather than the
    links row's integer id: integer ids start again in a re-created or restored database,
    which under the same signing key would give a new link the token of an old one."""
    mac = hmac.new(key, f"link:{request_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def link_url(ctx: DomainContext, token: str) -> str:
    return f"{ctx.public_base_url}/l/{token}"


_INSERT_LINK = insert(table_of(Link))


def issue_link(db: Session, ctx: DomainContext, request: ImpersonationRequest, *, now: datetime) -> IssuedLink:
    token = derive_token(link_token_key(ctx.signing_key), request.id)
    expires_at = now + timedelta(minutes=ctx.policy.links.redeem_window_minutes)
    # a Core INSERT, not an ORM object: nothing reads the row back in this transaction, and
    # the unit of work's flush cost more than the insert (it is on every approve click)
    db.execute(_INSERT_LINK, {"request_id": request.id, "token_hash": hash_token(token), "created_at": now, "expires_at": expires_at, "redeemed_at": None})
    audit.append(
        db,
        EventDraft.about(
            request,
            "link.issued",
            actor=Actor.system("policy"),
            details={"expires_at": audit.format_time(expires_at)},
        ),
        now=now,
    )
    return IssuedLink(url=link_url(ctx, token), expires_at=expires_at)


def reissued_link(ctx: DomainContext, link: Link) -> IssuedLink | None:
    """The link of an issued grant, derived again for a (re)delivery of its DM: the same URL
    every time. None when the token no longer matches the stored hash (the signing key was
    replaced since the grant): a different link must never be sent in its place."""
    token = derive_token(link_token_key(ctx.signing_key), link.request_id)
    if not hmac.compare_digest(hash_token(token), link.token_hash):
        return None
    return IssuedLink(url=link_url(ctx, token), expires_at=link.expires_at)


class LinkProblem(str, enum.Enum):
    UNKNOWN = "unknown"
    ALREADY_USED = "already_used"
    EXPIRED = "expired"
    NOT_GRANTED = "not_granted"
    #: the grant no longer holds: the account or the agent's powers changed since
    POLICY_CHANGED = "policy_changed"
    #: signed in with Slack as someone other than the requesting agent
    IDENTITY_MISMATCH = "identity_mismatch"


AUDIT_TYPE = {
    LinkProblem.UNKNOWN: "link.unknown_refused",
    LinkProblem.ALREADY_USED: "link.replay_refused",
    LinkProblem.EXPIRED: "link.expired",
    LinkProblem.NOT_GRANTED: "link.refused",
    LinkProblem.POLICY_CHANGED: "link.policy_refused",
    LinkProblem.IDENTITY_MISMATCH: "link.identity_mismatch",
}


class SignInRequired(RuntimeError):
    """redeem() was called without a signed-in agent under `links.require_slack_sign_in`."""


@dataclass(frozen=True)
class LinkPreview:
    """What the confirmation page shows before anything happens."""

    request: RequestView | None
    expires_at: datetime | None
    problem: LinkProblem | None


@dataclass(frozen=True)
class Redemption:
    session: SessionView
    handoff_token: str
    launch_url: str
    #: the outbox targets the redemption owed (outbox.enqueue_session_started: the agent's DM
    #: becomes the live session's, the security feed's message says so), for the deliverer
    targets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never print the bearer token
        return f"Redemption(session={self.session.id!r}, handoff_token=<redacted>)"


@dataclass(frozen=True)
class RedemptionRefused:
    problem: LinkProblem
    #: with POLICY_CHANGED: what no longer holds
    cause: RedeemRefusal | None = None


class _GrantNoLongerHolds(Exception):
    """Raised inside the redemption's transaction to roll it back (the link stays unused)."""

    def __init__(self, cause: RedeemRefusal, request: RequestSnapshot) -> None:
        super().__init__(cause.value)
        self.cause, self.request = cause, request


#: how much of a User-Agent header an audit event keeps: enough to tell a browser and its
#: platform apart ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"),
#: while the header itself (often 200+ characters, any bytes the sender likes) is kept only
#: as a digest
USER_AGENT_EXCERPT_CHARS = 64
USER_AGENT_DIGEST_HEX = 16
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]+")


def user_agent_details(user_agent: str) -> dict[str, str]:
    """A short, printable stand-in for a User-Agent header: an excerpt with every control and
    non-ASCII character replaced by one space and cut to USER_AGENT_EXCERPT_CHARS, and the
    first 64 bits of SHA-256 of the whole header, so that two events of one client still
    correlate. Nothing the sender chose can start a new line or hide text in a log or a
    terminal that shows the event."""
    excerpt = " ".join(_NOT_PRINTABLE_ASCII.sub(" ", user_agent).split())[:USER_AGENT_EXCERPT_CHARS]
    digest = hashlib.sha256(user_agent.encode("utf-8", "surrogatepass")).hexdigest()[:USER_AGENT_DIGEST_HEX]
    return {"user_agent": excerpt, "user_agent_sha256": digest}


@dataclass(frozen=True)
class ClientInfo:
    """Where a browser request came from, for the audit log (bounded, never trusted)."""

    ip: str | None = None
    user_agent: str | None = None

    def as_details(self) -> dict[str, str]:
        out = {}
        if self.ip:
            out["ip"] = _NOT_PRINTABLE_ASCII.sub("", self.ip)[:64]
        if self.user_agent:
            out.update(user_agent_details(self.user_agent))
        return out


def _problem_for(link: Link | None, now: datetime) -> LinkProblem | None:
    if link is None:
        return LinkProblem.UNKNOWN
    if link.redeemed_at is not None:
        return LinkProblem.ALREADY_USED
    if link.expires_at <= now:
        return LinkProblem.EXPIRED
    if link.request.state != RequestState.GRANTED.value:
        return LinkProblem.NOT_GRANTED
    return None


def _lookup_hash(token: str) -> str:
    """The hash to look a presented token up by. Malformed input is hashed under a prefix so
    it can never match a stored link, and is cut short so a huge path costs nothing."""
    return hash_token(token) if looks_like_token(token) else hash_token("invalid:" + token[:100])


def refuse_csrf(
    ctx: DomainContext,
    token: str,
    *,
    cause: str,
    refusals: RefusalAuditor,
    client: ClientInfo = ClientInfo(),
    now: datetime | None = None,
) -> bool:
    """A redemption POST that failed the web face's CSRF check: nothing is redeemed, the
    attempt is audited as `link.csrf_refused` (only a prefix of the token's hash is kept).
    Anyone can send these, so they pass `refusals`' throttle (bot/domain/refusals.py): True
    when this one was written, False when it was only counted."""
    return _refuse_throttled("link.csrf_refused", token, cause=cause, refusals=refusals, client=client, now=now)


def refuse_sign_in(
    ctx: DomainContext,
    token: str | None,
    *,
    cause: str,
    refusals: RefusalAuditor,
    client: ClientInfo = ClientInfo(),
    now: datetime | None = None,
) -> bool:
    """A Sign in with Slack return that could not be verified (state, provider error, code
    exchange, id_token): nothing is redeemed, audited as `link.sign_in_refused` through the
    same throttle, since anyone can call the return address. `token` is None when the browser
    brought no sign-in cookie naming a link."""
    return _refuse_throttled("link.sign_in_refused", token, cause=cause, refusals=refusals, client=client, now=now)


def _refuse_throttled(
    event_type: str,
    token: str | None,
    *,
    cause: str,
    refusals: RefusalAuditor,
    client: ClientInfo,
    now: datetime | None,
) -> bool:
    token_hash = _lookup_hash(token) if token is not None else None

    def event(db: Session) -> EventDraft:
        link = db.execute(select(Link).where(Link.token_hash == token_hash)).scalar_one_or_none() if token_hash else None
        request = link.request if link is not None else None
        details = {"token_hash_prefix": token_hash[:12]} if token_hash else {}
        return EventDraft(
            type=event_type,
            actor=Actor(slack_id=None, role="browser"),
            account=request.account.external_id if request else None,
            customer_user=request.customer_user.external_id if request else None,
            request_id=request.id if request else None,
            details={**details, "cause": cause[:64], **client.as_details()},
        )

    return refusals.refuse(f"{event_type}:{cause[:64]}", client.ip, event, now=now)


def preview(ctx: DomainContext, token: str, *, now: datetime | None = None) -> LinkPreview:
    """GET: describe the link and change nothing (Slack's unfurler and prefetchers GET too)."""
    now = now or utcnow()
    if not looks_like_token(token):
        return LinkPreview(None, None, LinkProblem.UNKNOWN)
    with reading(ctx.sessions) as db:
        link = db.execute(select(Link).where(Link.token_hash == hash_token(token))).scalar_one_or_none()
        problem = _problem_for(link, now)
        if link is None:
            return LinkPreview(None, None, problem)
        return LinkPreview(RequestView.of(link.request), link.expires_at, problem)


#: the winning redemption: one conditional UPDATE that also says which request it was for
_REDEEM = (
    update(Link)
    .where(
        Link.token_hash == bindparam("presented_hash"),
        Link.redeemed_at.is_(None),
        Link.expires_at > bindparam("at"),
        Link.request_id.in_(select(ImpersonationRequest.id).where(ImpersonationRequest.state == RequestState.GRANTED.value)),
    )
    .values(redeemed_at=bindparam("at"))
    .returning(Link.request_id)
    .execution_options(synchronize_session=False)
)
_INSERT_SESSION = insert(table_of(ImpersonationSession))
#: the agent a presented link was granted to (read before the redemption's transaction)
_AGENT_OF_LINK = (
    select(ImpersonationRequest.agent_slack_id)
    .join(Link, Link.request_id == ImpersonationRequest.id)
    .where(Link.token_hash == bindparam("presented_hash"))
)
#: the redeemed request's account row, share-locked before its flags are read: a flag change
#: (bot/domain/account_flags.py) locks the same row for update first, so an opt-out and a
#: redemption are ordered — the opt-out either sees the new session and revokes it, or
#: commits first and the redemption reads it (on SQLite, BEGIN IMMEDIATE already orders them)
_LOCK_ACCOUNT = (
    select(Account.id)
    .where(Account.id == select(ImpersonationRequest.account_id).where(ImpersonationRequest.id == bindparam("request_id")).scalar_subquery())
    .with_for_update(read=True)
)


def redeem(
    ctx: DomainContext,
    token: str,
    *,
    client: ClientInfo = ClientInfo(),
    signed_in: SignedInAgent | None = None,
    now: datetime | None = None,
) -> Redemption | RedemptionRefused:
    """POST: redeem once. The transaction holds only what must be atomic — the conditional
    UPDATE, the session row, the messages owed and the state move with its audit event (taken
    last: on PostgreSQL the audit head's row lock is then held only until the commit) — and
    the hand-off JWT is signed after the commit, outside any lock (bench/http_bench.py).

    `signed_in`: who signed in with Slack first (bot/domain/sign_in.py); required when the
    policy says `links.require_slack_sign_in`, and when given it must be the requesting agent."""
    now = now or utcnow()
    launch_url = ctx.product_launch_url
    if not launch_url:
        raise RuntimeError("PRODUCT_LAUNCH_URL is not set; links cannot be redeemed")
    if signed_in is None and ctx.policy.links.require_slack_sign_in:
        raise SignInRequired("the policy requires Sign in with Slack before a link is redeemed")
    token_hash = _lookup_hash(token)
    # The agent's powers are asked before the write transaction: a role given through a user
    # group may need a Slack call, which must not run while the transaction holds its locks.
    with reading(ctx.sessions) as db:
        agent = db.execute(_AGENT_OF_LINK, {"presented_hash": token_hash}).scalar_one_or_none()
    powers = powers_of(ctx.policy, agent, ctx.groups) if agent is not None else None
    try:
        return _redeem(ctx, token_hash, client, signed_in, powers, now, launch_url)
    except _GrantNoLongerHolds as refused:
        return _refuse_changed_grant(ctx, refused, token_hash, client, now)


def _redeem(
    ctx: DomainContext, token_hash: str, client: ClientInfo, signed_in: SignedInAgent | None, powers: Powers | None, now: datetime, launch_url: str
) -> Redemption | RedemptionRefused:
    with ctx.sessions() as db, db.begin():
        if signed_in is not None and (mismatch := _refuse_other_agent(db, token_hash, signed_in, client, now)):
            return mismatch
        request_id = db.execute(_REDEEM, {"presented_hash": token_hash, "at": now}).scalar_one_or_none()
        if request_id is None:
            return _refuse_redemption(db, token_hash, client, now)
        db.execute(_LOCK_ACCOUNT, {"request_id": request_id})
        # read as a snapshot (one Core SELECT), not an ORM object: bot/domain/snapshots.py
        request = request_snapshot(db, request_id)
        if request is None:  # the UPDATE above matched it in this transaction
            raise RuntimeError(f"redeemed link names request {request_id}, which cannot be read")
        # The grant was decided minutes ago: ask again, in this transaction, what may have
        # changed since (the account's flags, the agent's role and assignment).
        cause = _grant_still_holds(ctx, db, request, powers)
        if cause is not None:
            raise _GrantNoLongerHolds(cause, request)
        session = SessionView(
            id=str(uuid.uuid4()),
            request=request.view,
            started_at=now,
            expires_at=now + timedelta(minutes=request.view.duration_minutes),
            ended_at=None,
            end_reason=None,
            ended_by=None,
            product=ctx.policy.product.for_account(request.view.account),
        )
        jti = str(uuid.uuid4())
        db.execute(
            _INSERT_SESSION,
            {
                "id": session.id,
                "request_id": request.id,
                "account_id": request.account_id,
                "agent_slack_id": request.agent_slack_id,
                "started_at": session.started_at,
                "expires_at": session.expires_at,
                "ended_at": None,
                "end_reason": None,
                "ended_by": None,
                "handoff_jti": jti,
                "product": session.product,
            },
        )
        targets = outbox.enqueue_session_started(db, request.id, request.agent_slack_id, now=now)
        move(
            db,
            request.id,
            source=RequestState.GRANTED,
            target=RequestState.ACTIVE,
            event=EventDraft(
                type="session.redeemed",
                actor=Actor.agent_of(request),
                account=request.view.account,
                customer_user=request.view.customer_user,
                request_id=request.id,
                session_id=session.id,
                details={
                    "expires_at": audit.format_time(session.expires_at),
                    "scope": request.view.scope,
                    "jti": jti,
                    **({"product": session.product} if session.product else {}),
                    **client.as_details(),
                },
            ),
            now=now,
        )
        webhooks.session_started(
            db,
            session_id=session.id,
            request_id=request.id,
            account=request.view.account,
            customer_user=request.view.customer_user,
            agent=request.agent_email or request.agent_slack_id,
            scope=request.view.scope,
            reason=request.view.reason,
            ticket=request.view.ticket,
            started_at=session.started_at,
            expires_at=session.expires_at,
            now=now,
        )
        session = replace(session, request=replace(session.request, state=RequestState.ACTIVE.value))
    token_out = mint_handoff(
        ctx.signing_key,
        HandoffClaims(
            issuer=ctx.issuer,
            audience=launch_url,
            customer_user=session.request.customer_user,
            agent=request.agent_email or request.agent_slack_id,
            session_id=session.id,
            account=session.request.account,
            scope=session.request.scope,
            issued_at=now,
            expires_at=session.expires_at,
            jti=jti,
            account_name=session.request.account_name,
            customer_user_name=session.request.customer_user_name,
            reason=session.request.reason,
            ticket=session.request.ticket,
        ),
    )
    return Redemption(session=session, handoff_token=token_out, launch_url=launch_url, targets=tuple(targets))


def _grant_still_holds(ctx: DomainContext, db: Session, request: RequestSnapshot, powers: Powers | None) -> RedeemRefusal | None:
    view = request.view
    assigned = powers is not None and powers.scope == "assigned" and directory.is_assigned(db, view.agent_slack_id, request.account_id)
    return recheck_at_redemption(
        powers=powers,
        account_flags=view.account_flags,
        assigned=assigned,
        scope=view.scope,
        duration_minutes=view.duration_minutes,
        granted_gates=view.gated_by,
        gated_flags=frozenset(ctx.policy.gating.flags),
    )


def _refuse_changed_grant(
    ctx: DomainContext, refused: _GrantNoLongerHolds, token_hash: str, client: ClientInfo, now: datetime
) -> RedemptionRefused:
    """The redemption was rolled back: the link stays unused, and the refusal is audited in a
    transaction of its own with what no longer holds."""
    view = refused.request.view
    with ctx.sessions() as db, db.begin():
        audit.append(
            db,
            EventDraft(
                type=AUDIT_TYPE[LinkProblem.POLICY_CHANGED],
                actor=Actor(slack_id=view.agent_slack_id, role="browser"),
                account=view.account,
                customer_user=view.customer_user,
                request_id=view.id,
                details={"cause": refused.cause.value, "token_hash_prefix": token_hash[:12], **client.as_details()},
            ),
            now=now,
        )
    return RedemptionRefused(LinkProblem.POLICY_CHANGED, refused.cause)


def _refuse_other_agent(
    db: Session, token_hash: str, signed_in: SignedInAgent, client: ClientInfo, now: datetime
) -> RedemptionRefused | None:
    """Someone signed in with Slack as another person than the link's agent: refused and
    audited with who it was, and the link is left as it was — still redeemable by its agent
    within its window, so whoever holds a leaked link cannot use it up either. A request's
    agent never changes, so checking before the conditional UPDATE races with nothing."""
    request = db.execute(
        select(ImpersonationRequest).join(Link, Link.request_id == ImpersonationRequest.id).where(Link.token_hash == token_hash)
    ).scalar_one_or_none()
    if request is None or is_requester(
        signed_in,
        agent_slack_id=request.agent_slack_id,
        agent_enterprise_user_id=request.agent_enterprise_user_id,
        team_id=request.team_id,
    ):
        return None  # an unknown link is refused by the UPDATE, as without sign-in
    audit.append(
        db,
        EventDraft.about(
            request,
            AUDIT_TYPE[LinkProblem.IDENTITY_MISMATCH],
            actor=Actor(slack_id=signed_in.user_id, role="browser"),
            details={
                "token_hash_prefix": token_hash[:12],
                "signed_in_user": signed_in.user_id,
                "signed_in_team": signed_in.team_id,
                "requester": request.agent_slack_id,
                **client.as_details(),
            },
        ),
        now=now,
    )
    # the security channel hears of it at once, through the alert path (stored, audited, outbox)
    finding = anomalies.link_identity_mismatch(
        request_id=request.id,
        agent=request.agent_slack_id,
        account=request.account.external_id,
        signed_in_user=signed_in.user_id,
        signed_in_team=signed_in.team_id,
    )
    anomalies.raise_alert(db, finding, window=anomalies.ONCE, now=now)
    return RedemptionRefused(LinkProblem.IDENTITY_MISMATCH)


def _refuse_redemption(db: Session, token_hash: str, client: ClientInfo, now: datetime) -> RedemptionRefused:
    """Not redeemed — unknown, already used, expired or no longer granted: audited with a
    prefix of the token's hash, never the token."""
    link = db.execute(select(Link).where(Link.token_hash == token_hash)).scalar_one_or_none()
    problem = _problem_for(link, now) or LinkProblem.ALREADY_USED
    request = link.request if link is not None else None
    audit.append(
        db,
        EventDraft(
            type=AUDIT_TYPE[problem],
            actor=Actor(slack_id=None, role="browser"),
            account=request.account.external_id if request else None,
            customer_user=request.customer_user.external_id if request else None,
            request_id=request.id if request else None,
            details={"token_hash_prefix": token_hash[:12], **client.as_details()},
        ),
        now=now,
    )
    return RedemptionRefused(problem)
