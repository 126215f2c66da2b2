"""Setting and clearing an account's contract flags (opted out, sensitive, regulated,
flagged), the one way every face does it (the CLI, and Slack for roles with
`can_flag_accounts`).

An opt-out is absolute (DESIGN.md "Who uses it"): when it is set, every session live on the
account is revoked in the same transaction as the flag — audited (`session.revoked`, source
`account_opted_out`), the agent and the security feed told through the outbox, and the
product API answering "revoked" from the commit on — and the security channel is told of the
opt-out itself (an `account_opted_out` alert: who, why, how many sessions it ended). Links granted earlier but not yet
redeemed are refused at redemption (bot/domain/links.py re-checks the account's flags).
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import AccountFlag
from bot.domain import anomalies, audit, directory, revocation
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.directory import DirectoryError
from bot.domain.policy import REASON_MAX_LENGTH, TICKET_MAX_LENGTH, TICKET_PATTERN, powers_of
from bot.domain.views import SessionView

#: how much of the change's note the security channel's alert repeats (the audit event keeps it whole)
NOTE_SHOWN = 300

__all__ = ["DirectoryError", "FlagChange", "FlagChanged", "FlagForm", "FlagRefused", "change_flag", "change_flag_from_slack", "flag_form"]


@dataclass(frozen=True)
class FlagChange:
    #: False when the flag already had that value (nothing written)
    changed: bool
    #: sessions revoked because the account opted out
    revoked: tuple[SessionView, ...] = ()
    #: the outbox targets those revocations owe (for an immediate delivery)
    targets: tuple[str, ...] = ()


def change_flag(
    sessions: Callable[[], Session],
    *,
    account_external_id: str,
    flag: AccountFlag,
    on: bool,
    actor: Actor,
    note: str,
    now: datetime | None = None,
) -> FlagChange:
    """Set (`on`) or clear one flag, audited as `account.flag_changed` with who and why.
    Raises DirectoryError for an unknown account or an empty note (nothing changed)."""
    now = now or utcnow()
    with sessions() as db, db.begin():
        directory.lock_account(db, account_external_id)  # ordered with redemptions on it
        changed = directory.set_flag(db, account_external_id=account_external_id, flag=flag, on=on, actor=actor, note=note, now=now)
        if not (changed and on and flag is AccountFlag.OPTED_OUT):
            return FlagChange(changed)
        account = directory.find_account(db, account_external_id)
        assert account is not None  # set_flag found it in this transaction
        revoked = revocation.revoke_live_sessions_on_account(db, account.id, actor=actor, source="account_opted_out", now=now)
        # The security channel is told of the opt-out itself (with who, why and what it ended),
        # whether or not a session was live: an alert, owed through the outbox with the change.
        told = anomalies.Finding(
            anomalies.Rule.ACCOUNT_OPTED_OUT,
            subject=account_external_id,
            facts={"by": actor.slack_id or actor.email or actor.role or "?", "note": note.strip()[:NOTE_SHOWN], "revoked": len(revoked)},
            account=account_external_id,
        )
        anomalies.raise_alert(db, told, window=anomalies.EVERY_TIME, now=now)
        return FlagChange(True, tuple(r.session for r in revoked), tuple(t for r in revoked for t in r.targets))


# ---------------------------------------------------------------------------- from Slack

#: what a person without `can_flag_accounts` reads, wherever they try (plain text)
NOT_PERMITTED = (
    "You do not hold a role that can change account flags. RevOps and security can; "
    "`/impersonate help` lists what you can do."
)
#: the longest contract or ticket reference and reason kept in the audit event's note
REFERENCE_MAX_LENGTH = TICKET_MAX_LENGTH
FLAG_REASON_MAX_LENGTH = REASON_MAX_LENGTH
FLAG_REASON_MIN_LENGTH = 10


class FlagField(str, enum.Enum):
    """Which answer of the flag form a refusal is about (the modal shows it there)."""

    ACCOUNT = "account"
    FLAG = "flag"
    REFERENCE = "reference"
    REASON = "reason"


@dataclass(frozen=True)
class FlagForm:
    """What the flag modal's submission says; nothing in it is trusted (decided here)."""

    account: str | None
    flag: str | None
    on: bool | None
    reference: str
    reason: str


@dataclass(frozen=True)
class FlagRefused:
    message: str
    field: FlagField | None = None


@dataclass(frozen=True)
class FlagChanged:
    account: str
    account_name: str
    flag: AccountFlag
    on: bool
    change: FlagChange

    @property
    def targets(self) -> tuple[str, ...]:
        return self.change.targets


@dataclass(frozen=True)
class FlagFormView:
    """What the flag modal shows a person allowed to change flags: the account named (if
    any) and the flags it carries now."""

    account: tuple[str, str] | None
    current: frozenset[str] = frozenset()


def _actor(ctx: DomainContext, slack_id: str) -> tuple[Actor, bool]:
    powers = powers_of(ctx.policy, slack_id, ctx.groups)
    person = ctx.people.person(slack_id)
    return Actor(slack_id=slack_id, email=person.email, role=powers.role if powers else None), bool(powers and powers.can_flag_accounts)


def may_flag(ctx: DomainContext, slack_id: str) -> bool:
    """Whether this person may change flags now (the flag modal's account typeahead offers
    accounts only then; the submission is decided again)."""
    powers = powers_of(ctx.policy, slack_id, ctx.groups)
    return bool(powers and powers.can_flag_accounts)


def _refuse(ctx: DomainContext, actor: Actor, *, cause: str, account: str | None, now: datetime) -> None:
    with ctx.sessions() as db, db.begin():
        audit.append(
            db,
            EventDraft(type="account.flag_refused", actor=actor, account=(account or "")[:200] or None, details={"cause": cause}),
            now=now,
        )


def flag_form(ctx: DomainContext, slack_id: str, account_text: str, *, now: datetime | None = None) -> FlagFormView | FlagRefused:
    """The flag modal for this person (`/impersonate flag <account>`, the Home tab's button):
    refused, audited, without `can_flag_accounts`; else the account the text names by its id
    (none: the modal lets them search) with its current flags."""
    now = now or utcnow()
    actor, allowed = _actor(ctx, slack_id)
    if not allowed:
        _refuse(ctx, actor, cause="not_permitted", account=account_text.strip() or None, now=now)
        return FlagRefused(NOT_PERMITTED)
    wanted = account_text.strip()
    if not wanted:
        return FlagFormView(None)
    with reading(ctx.sessions) as db:
        named = directory.account_label_named(db, wanted)
        account = directory.find_account(db, named[0]) if named is not None else None
        if account is None:
            return FlagFormView(None)
        return FlagFormView((account.external_id, account.name), account.flag_names())


def _checked(form: FlagForm) -> tuple[AccountFlag, bool, str] | tuple[str, FlagRefused]:
    """The flag, its new value and the audit note, or why the form is refused (its cause)."""
    if not form.account:
        return "no_account", FlagRefused("Choose an account.", FlagField.ACCOUNT)
    try:
        flag = AccountFlag(form.flag or "")
    except ValueError:
        return "no_flag", FlagRefused("Choose one of the four flags.", FlagField.FLAG)
    if form.on is None:
        return "no_value", FlagRefused("Choose whether to set or clear the flag.", FlagField.FLAG)
    reference = form.reference.strip()
    if not TICKET_PATTERN.match(reference):
        message = f"A contract or ticket reference is required: an id or URL without spaces, at most {REFERENCE_MAX_LENGTH} characters."
        return "reference_invalid", FlagRefused(message, FlagField.REFERENCE)
    reason = form.reason.strip()
    if not FLAG_REASON_MIN_LENGTH <= len(reason) <= FLAG_REASON_MAX_LENGTH:
        return "reason_invalid", FlagRefused(f"Say why in {FLAG_REASON_MIN_LENGTH} to {FLAG_REASON_MAX_LENGTH} characters.", FlagField.REASON)
    return flag, form.on, f"{reference}: {reason}"


def change_flag_from_slack(ctx: DomainContext, slack_id: str, form: FlagForm, *, now: datetime | None = None) -> FlagChanged | FlagRefused:
    """A flag set or cleared from Slack's flag modal: `can_flag_accounts` checked now, a
    contract or ticket reference and a reason required (kept as the audit event's note,
    "reference: reason"), then the one path every face takes (`change_flag`: audited as
    `account.flag_changed`, an opt-out revoking the account's live sessions in the same
    transaction). Every refusal is audited as `account.flag_refused` with its cause."""
    now = now or utcnow()
    actor, allowed = _actor(ctx, slack_id)
    if not allowed:
        _refuse(ctx, actor, cause="not_permitted", account=form.account, now=now)
        return FlagRefused(NOT_PERMITTED, FlagField.ACCOUNT)
    checked = _checked(form)
    if isinstance(checked[1], FlagRefused):
        _refuse(ctx, actor, cause=str(checked[0]), account=form.account, now=now)
        return checked[1]
    flag, on, note = checked
    assert form.account is not None  # _checked refuses a form without one
    try:
        change = change_flag(ctx.sessions, account_external_id=form.account, flag=flag, on=on, actor=actor, note=note, now=now)
    except DirectoryError:
        _refuse(ctx, actor, cause="unknown_account", account=form.account, now=now)
        return FlagRefused("No account with that id in the directory.", FlagField.ACCOUNT)
    with reading(ctx.sessions) as db:
        account = directory.find_account(db, form.account)
        name = account.name if account is not None else form.account
    return FlagChanged(form.account, name, flag, on, change)
