"""Personal values in the audit log, by reference (docs/privacy.md).

The audit log is append-only and hash-chained: an event can never change, so a personal value
written into one could never be erased (GDPR Art. 17) without breaking `audit verify`. Events
therefore hold a *reference* in place of each personal value about a customer user — the
customer user's id (the `customer_user` column) and the free text of `reason` and `user` in
`details` — and the value itself is a row of `personal_values`, which can be deleted.

A reference is "pd:" and the HMAC-SHA256 (RFC 2104) of the value under a random 256-bit key
kept in the value's row. So:
- the chain's hash covers the reference, which commits to the value: a value changed in its
  row no longer matches (`check`), and `audit verify` says so;
- once the row is deleted (erasure, retention), key and value are gone together, and the
  reference is a random-looking string that no guess of the value can be tested against —
  unlike a plain or shared-key hash of a short value such as a user id or an e-mail;
- the chain's hashes never change, so erasure leaves `audit verify` passing.

Everything that shows an event's values resolves references here (`resolve`): a reference
whose row is gone reads ERASED. Values that are not about a customer user (staff ids and
e-mails, accounts, tickets, durations) stay in the event itself.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from bot.db.base import affected_rows
from bot.db.models import PersonalValue

if TYPE_CHECKING:
    from bot.domain.audit import EventDraft

#: what every export, log answer and message shows in place of an erased value
ERASED = "[erased]"
REF_PREFIX = "pd:"
REF = re.compile(r"pd:[0-9a-f]{64}")
#: `details` keys whose string values are personal data about the event's customer user: the
#: free-text reasons (requests, extensions, denials) and the user id an agent typed
PERSONAL_DETAILS = ("reason", "user")


def is_ref(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and REF.fullmatch(value) is not None


def reference(key: str, value: str) -> str:
    return REF_PREFIX + hmac.new(bytes.fromhex(key), value.encode("utf-8"), hashlib.sha256).hexdigest()


def subject_of(draft: EventDraft) -> tuple[str | None, str] | None:
    """(account, customer user) the event is about, or None when it names no customer user
    (then it holds no personal value of a customer's and is written as it is)."""
    user = draft.customer_user or draft.details.get("user")
    if not isinstance(user, str) or not user:
        return None
    account = draft.account or draft.details.get("account_requested")
    return (account if isinstance(account, str) and account else None), user


def seal(db: Session, draft: EventDraft, *, now: datetime) -> EventDraft:
    """`draft` with each personal value replaced by a reference, the values stored in the
    caller's transaction (they commit with the event or not at all). The caller's draft is
    left as it was."""
    subject = subject_of(draft)
    if subject is None:
        return draft
    account, user = subject
    rows: list[PersonalValue] = []

    def stored(value: str) -> str:
        key = secrets.token_hex(32)
        ref = reference(key, value)
        rows.append(PersonalValue(ref=ref, account=account, customer_user=user, key=key, value=value, created_at=now))
        return ref

    details = dict(draft.details)
    for name in PERSONAL_DETAILS:
        if isinstance(details.get(name), str) and details[name]:
            details[name] = stored(details[name])
    customer_user = stored(draft.customer_user) if draft.customer_user else None
    if not rows:
        return draft
    # added to the unit of work, not inserted now: the transaction's values are flushed
    # together (one INSERT for all of them where nothing reads in between)
    db.add_all(rows)
    return replace(draft, customer_user=customer_user, details=details)


def refs_in(customer_user: str | None, details: Mapping[str, Any]) -> list[str]:
    """The references one event holds."""
    found = [customer_user] if is_ref(customer_user) else []
    return found + [details[name] for name in PERSONAL_DETAILS if is_ref(details.get(name))]


def resolve(db: Session, refs: Iterable[str]) -> dict[str, str]:
    """Each reference's value; ERASED for one whose value was erased, and for one whose row no
    longer matches it (a value changed behind the log's back is not shown as recorded)."""
    wanted = sorted(set(refs))
    values = dict.fromkeys(wanted, ERASED)
    for start in range(0, len(wanted), 500):  # bound the IN list
        for row in db.execute(select(PersonalValue.ref, PersonalValue.key, PersonalValue.value).where(PersonalValue.ref.in_(wanted[start:start + 500]))):
            if check(row.ref, row.key, row.value):
                values[row.ref] = row.value
    return values


def shown(value: str | None, values: Mapping[str, str]) -> str | None:
    """An event's field as it is shown: a reference resolved, anything else as it is."""
    return values.get(value, ERASED) if is_ref(value) else value


def check(ref: str, key: str, value: str) -> bool:
    return hmac.compare_digest(ref, reference(key, value))


def altered(db: Session) -> list[str]:
    """References whose stored value no longer matches (for `audit verify`)."""
    return [
        row.ref
        for row in db.execute(select(PersonalValue.ref, PersonalValue.key, PersonalValue.value).execution_options(yield_per=2000))
        if not check(row.ref, row.key, row.value)
    ]


def erase_subject(db: Session, *, account: str, customer_user: str) -> int:
    """Delete every personal value held about one customer user (their own id as a reference,
    and every reason about them); returns how many. A refused request whose agent typed the
    user's id but no account is about them too (such a value names no account)."""
    return affected_rows(
        db,
        delete(PersonalValue).where(
            PersonalValue.customer_user == customer_user, or_(PersonalValue.account == account, PersonalValue.account.is_(None))
        ),
    )


def erase_before(db: Session, cutoff: datetime, *, limit: int) -> int:
    """Delete up to `limit` personal values recorded before `cutoff` (retention)."""
    refs = db.execute(select(PersonalValue.ref).where(PersonalValue.created_at < cutoff).order_by(PersonalValue.created_at).limit(limit)).scalars().all()
    if refs:
        db.execute(delete(PersonalValue).where(PersonalValue.ref.in_(refs)))
    return len(refs)
