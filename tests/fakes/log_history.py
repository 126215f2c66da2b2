"""A history of impersonation sessions on `acme` (and one elsewhere), made through the real
domain services at fixed times, for the /impersonation-log and export tests."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from freezegun import freeze_time
from sqlalchemy import update

from bot.db.models import ImpersonationRequest, ImpersonationSession
from bot.domain import approvals, audit, directory, links, requests, sessions
from bot.domain.audit import Actor, EventDraft
from bot.domain.context import DomainContext
from bot.domain.exports import AccessExport, ExportFormat, access_export
from bot.domain.log_query import LogOptions, UnknownAccount, resolve
from bot.domain.requests import AgentIdentity, RequestForm
from bot.reports.exports import access_file
from tests.conftest import allow_many_open_accesses
from tests.fakes.directory_data import load_directory

#: the moment the log is read in these tests
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
REASON = "Customer cannot see the invoice page"
BREAK_GLASS_REASON = "P1 outage: the customer's payroll run fails and no manager can be reached tonight (INC-77)"


@dataclass(frozen=True)
class History:
    ended: str
    approved_expired: str
    break_glass_live: str
    revoked: str
    other_account: str
    too_old: str


def open_session(
    ctx: DomainContext,
    agent: str,
    *,
    at: datetime,
    account: str = "acme",
    user: str = "u-bob",
    reason: str = REASON,
    ticket: str | None = "SUP-1",
    minutes: int = 30,
    break_glass: bool = False,
    approver: str | None = None,
) -> str:
    """A request submitted, granted (approved by `approver` when gated) and redeemed at `at`;
    returns the session id. Histories are built in any order of time, so the policy's
    one-open-access rule (which reads "open" at the submission's time) is off for them."""
    allow_many_open_accesses(ctx)
    with freeze_time(at):
        form = RequestForm(account=account, user=user, reason=reason, ticket=ticket, duration_minutes=minutes, scope="read_only", break_glass=break_glass)
        result = requests.submit_request(ctx, AgentIdentity(agent), form)
        if isinstance(result, requests.Pending):
            assert approver is not None, "this request needs an approver"
            decided = approvals.approve_request(ctx, result.request.id, clicker_slack_id=approver)
            assert isinstance(decided, approvals.Decided) and decided.link is not None, decided
            url = decided.link.url
        else:
            assert isinstance(result, requests.Granted), result
            url = result.link.url
        redemption = links.redeem(ctx, url.rsplit("/", 1)[1])
        assert isinstance(redemption, links.Redemption), redemption
        return redemption.session.id


def record_actions(ctx: DomainContext, session_id: str, count: int, *, at: datetime) -> None:
    """Write actions the product reported in a session (as bot.domain.product_api records them)."""
    with ctx.sessions() as db, db.begin():
        for n in range(count):
            audit.append(
                db,
                EventDraft(type="action.recorded", actor=Actor(slack_id="UAGENT1"), account="acme", session_id=session_id, details={"n": n}),
                now=at,
            )


def set_acme_sensitive(ctx: DomainContext, on: bool) -> None:
    with ctx.sessions() as db, db.begin():
        directory.set_flag(db, account_external_id="acme", flag=directory.AccountFlag.SENSITIVE, on=on, actor=Actor(slack_id="UREVOPS1", role="revops"), note="contract")


def allow_break_glass(ctx: DomainContext, role: str = "senior") -> None:
    roles = dict(ctx.policy.roles)
    roles[role] = roles[role].model_copy(update={"can_break_glass": True})
    ctx.policy = ctx.policy.model_copy(update={"roles": roles})


def revoke(ctx: DomainContext, session_id: str, *, at: datetime) -> None:
    """What a revocation leaves in the tables (written directly: bot/domain/revocation.py is tested on its own)."""
    with ctx.sessions() as db, db.begin():
        session = db.get(ImpersonationSession, session_id)
        db.execute(update(ImpersonationRequest).where(ImpersonationRequest.id == session.request_id).values(state="revoked", updated_at=at))
        db.execute(update(ImpersonationSession).where(ImpersonationSession.id == session_id).values(ended_at=at, end_reason="revoked", ended_by="USECURITY1"))


def build_history(ctx: DomainContext, tmp_path: Path) -> History:
    """Newest first, as the log lists them (all on acme unless said otherwise):
    - break_glass_live: USENIOR1, break-glass, 1 hour before NOW, still live at NOW (120 min)
    - revoked:         UAGENT1, 1 day before NOW, revoked after 5 minutes
    - approved_expired: USENIOR1, approved by UMANAGER1, 2 days before, left to expire
    - ended:           UAGENT1, 3 days before, ended after 10 minutes; 2 write actions
    - other_account:   UAGENT1 on globex, 1 day before (never in acme's log)
    - too_old:         UAGENT1, 100 days before (outside the default 90 days)
    acme is sensitive (gated) from the approved session to the break-glass one, not after.
    """
    load_directory(ctx.sessions, tmp_path)
    allow_break_glass(ctx)
    too_old = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=100))
    ended = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=3))
    record_actions(ctx, ended, 2, at=NOW - timedelta(days=3, minutes=-5))
    sessions.end_session(ctx, ended, actor_slack_id="UAGENT1", now=NOW - timedelta(days=3, minutes=-10))
    set_acme_sensitive(ctx, True)
    approved_expired = open_session(ctx, "USENIOR1", at=NOW - timedelta(days=2), approver="UMANAGER1")
    revoked = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=1), approver="UMANAGER2")
    revoke(ctx, revoked, at=NOW - timedelta(days=1, minutes=-5))
    other = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=1), account="globex", user="u-carol", approver="UMANAGER1")
    break_glass_live = open_session(ctx, "USENIOR1", at=NOW - timedelta(hours=1), minutes=120, reason=BREAK_GLASS_REASON, break_glass=True)
    set_acme_sensitive(ctx, False)  # later sessions in a test need no approval
    return History(ended, approved_expired, break_glass_live, revoked, other, too_old)


#: the actor of the CLI's exports in these tests
CLI = Actor(email="auditor@corp.example", role="cli")


def access_export_of(ctx: DomainContext, fmt: ExportFormat, options: LogOptions = LogOptions("acme"), **kwargs) -> AccessExport | UnknownAccount:
    """One account's sessions exported as the CLI does, at NOW (audited)."""
    return access_export(ctx.sessions, resolve(options, now=NOW), fmt, actor=CLI, via="cli", now=NOW, **kwargs)


def file_bytes(export: AccessExport) -> bytes:
    """The export rendered into its file, whole."""
    return b"".join(access_file(export).chunks)
