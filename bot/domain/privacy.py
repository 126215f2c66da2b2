"""Erasing a customer user's personal data, and keeping it no longer than configured
(GDPR Art. 5(1)(e), Art. 17; docs/privacy.md).

What erasing a customer user removes, in one transaction:
- every personal value the audit log refers to about them (bot/domain/personal.py): their id
  in each event written since personal values are held apart, and every reason about them;
- the copies the app reads to answer the log and the exports: the reasons of their requests,
  of those requests' extensions and of approvers' denials, and their name and e-mail in the
  directory. Their directory row is kept (the requests point at it) but holds no clear value
  and a random stand-in id, so an import that still lists them makes a new, separate row.

It is refused, and the refusal audited, for anyone whose role lacks
`can_erase_personal_data`, and while the customer user has an access open (a pending request,
a usable link or a live session: its product session must end first). The erasure itself is
audited (`privacy.erased`) with a keyed pseudonym of the person, never their id: the keyed
HMAC of account and id under a key derived from the deployment's signing key, so whoever
holds that key can answer "was this person erased, when and by whom" and nobody else can
test a guess.

Events written before personal values were held apart (before migration 0015) hold them in
the event itself; they cannot change without breaking the chain, and are not rewritten
(docs/privacy.md says what that leaves).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from bot.db.base import affected_rows
from bot.db.models import Approval, CustomerUser, Extension, ImpersonationRequest, ImpersonationSession, RequestState
from bot.domain import audit, directory, personal, webhooks
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.keys import SigningKey
from bot.domain.personal import ERASED
from bot.domain.policy import may_erase_personal_data, powers_of

log = logging.getLogger(__name__)

#: request states in which the customer user's access is still open: erasure waits for them
OPEN_STATES = (RequestState.PENDING.value, RequestState.GRANTED.value, RequestState.ACTIVE.value)
#: rows changed per transaction by the retention job (short transactions, short locks)
BATCH = 1000
_PSEUDONYM_INFO = b"impersonation-bot personal-data pseudonym v1"


@dataclass(frozen=True)
class Erased:
    #: the keyed pseudonym recorded in the audit log
    subject: str
    #: personal values of audit events deleted
    values: int
    #: requests whose reasons were erased
    requests: int
    #: whether the directory held the person (name and e-mail erased)
    in_directory: bool


@dataclass(frozen=True)
class EraseRefused:
    #: no_power | access_open
    cause: str
    message: str


def pseudonym(key: SigningKey, *, account: str, customer_user: str) -> str:
    """The keyed pseudonym of a customer user: HMAC-SHA256 (RFC 2104) of account and id under a
    key derived (HKDF, RFC 5869) from the signing key, so it is stable while that key is."""
    raw = key.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PSEUDONYM_INFO).derive(raw)
    message = f"{account}\x00{customer_user}".encode()
    return hmac.new(derived, message, hashlib.sha256).hexdigest()


def erase_customer_user(
    ctx: DomainContext, *, account: str, customer_user: str, by_slack_id: str, now: datetime | None = None
) -> Erased | EraseRefused:
    """Erase one customer user's personal data, by someone the policy gives the power to."""
    now = now or utcnow()
    powers = powers_of(ctx.policy, by_slack_id, ctx.groups)
    actor = Actor(slack_id=by_slack_id, role=powers.role if powers else None)
    subject = pseudonym(ctx.signing_key, account=account, customer_user=customer_user)
    with ctx.sessions() as db, db.begin():
        if not may_erase_personal_data(powers=powers):
            return _refuse(db, actor, account, subject, "no_power", "your role may not erase personal data (can_erase_personal_data)", now)
        found = directory.find_account(db, account)
        user = directory.find_user(db, found, customer_user) if found is not None else None
        if user is not None:
            directory.lock_user(db, user.id)  # ordered with a submission for the same person
            if _has_open_access(db, user.id):
                return _refuse(
                    db, actor, account, subject, "access_open",
                    "this customer user has a pending request, a usable link or a live session; end it first", now,
                )
        values = personal.erase_subject(db, account=account, customer_user=customer_user)
        requests = _erase_copies(db, user, now) if user is not None else 0
        notifications = webhooks.erase_customer_user(db, account=account, customer_user=customer_user, erased=ERASED)
        audit.append(
            db,
            EventDraft(
                type="privacy.erased",
                actor=actor,
                account=account,
                details={
                    "subject": subject, "key_id": ctx.signing_key.kid, "values": values, "requests": requests,
                    "notifications": notifications, "in_directory": user is not None,
                },
            ),
            now=now,
        )
    return Erased(subject, values, requests, user is not None)


def _refuse(db: Session, actor: Actor, account: str, subject: str, cause: str, message: str, now: datetime) -> EraseRefused:
    audit.append(
        db,
        EventDraft(type="privacy.erase_refused", actor=actor, account=account, details={"subject": subject, "cause": cause}),
        now=now,
    )
    return EraseRefused(cause, message)


def _has_open_access(db: Session, customer_user_id: int) -> bool:
    return db.execute(
        select(ImpersonationRequest.id)
        .where(ImpersonationRequest.customer_user_id == customer_user_id, ImpersonationRequest.state.in_(OPEN_STATES))
        .limit(1)
    ).first() is not None


def _erase_copies(db: Session, user: CustomerUser, now: datetime) -> int:
    """ERASED over the person's name and e-mail, and the reasons about them in requests,
    extensions and denials; a random stand-in id (the unique key stays unique)."""
    request_ids = select(ImpersonationRequest.id).where(ImpersonationRequest.customer_user_id == user.id)
    requests = affected_rows(
        db,
        update(ImpersonationRequest).where(ImpersonationRequest.customer_user_id == user.id).values(reason=ERASED)
    ) or 0
    _erase_linked_reasons(db, request_ids)
    user.name = user.email = ERASED
    user.external_id = "erased-" + secrets.token_hex(16)
    user.erased_at = user.updated_at = now
    return int(requests)


def _erase_linked_reasons(db: Session, request_ids: Select[Any]) -> None:
    """The reasons of the extensions of these requests' sessions and of the denials of either."""
    extension_ids = select(Extension.id).join(ImpersonationSession, ImpersonationSession.id == Extension.session_id).where(
        ImpersonationSession.request_id.in_(request_ids)
    )
    db.execute(update(Extension).where(Extension.id.in_(extension_ids)).values(reason=ERASED))
    db.execute(
        update(Approval)
        .where(Approval.reason.is_not(None), or_(Approval.subject_id.in_(request_ids), Approval.subject_id.in_(extension_ids)))
        .values(reason=ERASED)
    )


@dataclass(frozen=True)
class Expired:
    values: int
    requests: int
    #: webhook event bodies whose reasons were erased
    notifications: int = 0


def erase_expired(ctx: DomainContext, *, now: datetime | None = None) -> Expired:
    """Retention (policy `privacy.personal_data_retention_days`): erase the personal values
    recorded before the period, and the reasons of requests made before it that are no longer
    open. Nothing when the period is 0. One `privacy.retention_applied` event per run that
    erased something."""
    days = ctx.policy.privacy.personal_data_retention_days
    if not days:
        return Expired(0, 0)
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    values = requests = 0
    while True:
        with ctx.sessions() as db, db.begin():
            erased = personal.erase_before(db, cutoff, limit=BATCH)
        values += erased
        if erased < BATCH:
            break
    while True:
        with ctx.sessions() as db, db.begin():
            ids = db.execute(
                select(ImpersonationRequest.id)
                .where(
                    ImpersonationRequest.created_at < cutoff,
                    ImpersonationRequest.state.not_in(OPEN_STATES),
                    ImpersonationRequest.reason != ERASED,
                )
                .limit(BATCH)
            ).scalars().all()
            if ids:
                db.execute(update(ImpersonationRequest).where(ImpersonationRequest.id.in_(ids)).values(reason=ERASED))
                _erase_linked_reasons(db, select(ImpersonationRequest.id).where(ImpersonationRequest.id.in_(ids)))
        requests += len(ids)
        if len(ids) < BATCH:
            break
    with ctx.sessions() as db, db.begin():
        notifications = webhooks.erase_reasons_before(db, cutoff, erased=ERASED)
    if values or requests or notifications:
        with ctx.sessions() as db, db.begin():
            audit.append(
                db,
                EventDraft(
                    type="privacy.retention_applied",
                    actor=Actor.system("scheduler"),
                    details={
                        "before": audit.format_time(cutoff), "days": days, "values": values, "requests": requests,
                        "notifications": notifications,
                    },
                ),
                now=now,
            )
        log.info("retention: erased %d personal values and the reasons of %d requests older than %d days", values, requests, days)
    return Expired(values, requests, notifications)
