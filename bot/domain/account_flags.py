"""Setting and clearing an account's contract flags (opted out, sensitive, regulated,
flagged), the one way every face does it (the CLI, and Slack for roles with
`can_flag_accounts`).

An opt-out is absolute (DESIGN.md "Who uses it"): when it is set, every session live on the
account is revoked in the same transaction as the flag — audited (`session.revoked`, source
`account_opted_out`), the agent and the security feed told through the outbox, and the
product API answering "revoked" from the commit on. Links granted earlier but not yet
redeemed are refused at redemption (bot/domain/links.py re-checks the account's flags).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.db.models import AccountFlag
from bot.domain import directory, revocation
from bot.domain.audit import Actor
from bot.domain.clock import utcnow
from bot.domain.directory import DirectoryError
from bot.domain.views import SessionView

__all__ = ["DirectoryError", "FlagChange", "change_flag"]


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
        return FlagChange(True, tuple(r.session for r in revoked), tuple(t for r in revoked for t in r.targets))
