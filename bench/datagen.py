"""Generated history for the benchmarks: accounts, customer users, requests, links, sessions,
approvals, extensions, alerts and a hash-chained audit log, written with bulk Core inserts
(executemany), deterministic for a seed. Shapes follow a busy support team: most requests
granted at once, a fifth gated and approved after a few minutes, some denied, a few without a
ticket, re-initiated, extended or break-glass; a few accounts sensitive or regulated.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, update
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import (
    Account,
    AccountFlagSetting,
    Alert,
    Approval,
    AuditEvent,
    AuditHead,
    CustomerUser,
    Extension,
    ImpersonationRequest,
    ImpersonationSession,
    Link,
)
from bot.domain import audit
from bot.domain.anomalies import Rule

CHUNK = 5000


@dataclass(frozen=True)
class History:
    sessions: int
    requests: int
    audit_events: int
    accounts: int
    agents: int


def _chunks(rows: list[dict], size: int = CHUNK):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _bulk(db: Session, model: type, rows: list[dict]) -> None:
    for chunk in _chunks(rows):
        db.execute(insert(model.__table__), chunk)


def generate(
    sessions_factory: sessionmaker[Session],
    *,
    sessions: int,
    start: datetime,
    end: datetime,
    accounts: int = 2000,
    agents: int = 200,
    seed: int = 5,
) -> History:
    """`sessions` sessions started between `start` and `end` (plus the requests around them:
    denied, pending, lapsed), and one audit event per request, chained."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()

    account_rows, user_rows, flag_rows = [], [], []
    for n in range(1, accounts + 1):
        account_rows.append({"id": n, "external_id": f"acct-{n:05d}", "name": f"Account {n}", "created_at": start, "updated_at": start})
        user_rows.append({"id": n, "account_id": n, "external_id": f"user-{n:05d}", "email": f"user{n}@example.com", "name": f"User {n}", "protected": False, "created_at": start, "updated_at": start})
        if rng.random() < 0.05:
            flag_rows.append({"account_id": n, "flag": rng.choice(["sensitive", "regulated"]), "set_by": "UREVOPS1", "set_at": start, "note": "contract"})
    flagged = {row["account_id"] for row in flag_rows}
    agent_ids = [f"UAGENT{n:04d}" for n in range(agents)]
    # a few agents do most of the work, and each agent has a few favourite accounts
    weights = [1.0 / (1 + n) for n in range(agents)]

    request_rows, link_rows, session_rows, approval_rows, extension_rows = [], [], [], [], []
    previous_by_agent: dict[str, str] = {}
    # `sessions` requests that became sessions, and 8 % more that did not (denied, lapsed,
    # cancelled, or expired while pending), spread at random over the period
    outcomes = [rng.choice(("ended", "ended", "ended", "expired", "expired", "revoked")) for _ in range(sessions)]
    outcomes += [rng.choice(("denied", "lapsed", "cancelled", "expired_pending")) for _ in range(int(sessions * 0.08))]
    rng.shuffle(outcomes)
    for index, state in enumerate(outcomes):
        created = start + timedelta(seconds=rng.random() * span)
        agent = rng.choices(agent_ids, weights)[0]
        account_id = rng.randint(1, accounts) if rng.random() < 0.7 else (int(agent[-4:]) * 7919 % accounts) + 1
        gated = account_id in flagged or rng.random() < 0.15 or state in ("denied", "expired_pending")
        request_id = str(uuid.UUID(int=rng.getrandbits(128)))
        ticket = None if rng.random() < 0.03 else f"SUP-{index}"
        previous = previous_by_agent.get(agent) if rng.random() < 0.02 else None
        final_state = "expired" if state == "expired_pending" else state
        request_rows.append(
            {
                "id": request_id, "team_id": "T1", "agent_slack_id": agent, "agent_email": f"{agent.lower()}@corp.example",
                "agent_tz": "Europe/Paris", "agent_role": "support", "account_id": account_id, "customer_user_id": account_id,
                "reason": "customer ticket about billing", "ticket": ticket, "duration_minutes": 30, "scope": "read_only",
                "state": final_state, "gated_by": "sensitive" if gated else "", "created_at": created, "updated_at": created,
                "agent_channel": None, "agent_message_ts": None, "approvals_required": 1 if gated else 0,
                "pending_expires_at": created + timedelta(minutes=30) if gated else None, "previous_session_id": previous,
                "break_glass": (not gated) and rng.random() < 0.005,
            }
        )
        decided = created + timedelta(seconds=rng.randint(30, 1800))
        if gated and final_state not in ("cancelled", "expired"):
            approval_rows.append(
                {"subject_id": request_id, "approver_slack_id": f"UMANAGER{rng.randint(1, 9)}", "approver_identity": f"manager{index}@corp.example",
                 "decision": "deny" if final_state == "denied" else "approve", "reason": "not now" if final_state == "denied" else None, "decided_at": decided}
            )
        if final_state in ("denied", "cancelled") or state == "expired_pending":
            continue
        granted = decided if gated else created
        link_rows.append({"request_id": request_id, "token_hash": uuid.UUID(int=rng.getrandbits(128)).hex * 2, "created_at": granted, "expires_at": granted + timedelta(minutes=5), "redeemed_at": None if final_state == "lapsed" else granted + timedelta(minutes=1)})
        if final_state == "lapsed":
            continue
        started = granted + timedelta(minutes=1)
        session_id = str(uuid.UUID(int=rng.getrandbits(128)))
        previous_by_agent[agent] = session_id
        ended = started + timedelta(minutes=rng.randint(3, 30))
        session_rows.append(
            {"id": session_id, "request_id": request_id, "account_id": account_id, "agent_slack_id": agent, "started_at": started,
             "expires_at": started + timedelta(minutes=30), "ended_at": ended, "end_reason": final_state, "ended_by": agent,
             "handoff_jti": str(uuid.UUID(int=rng.getrandbits(128)))}
        )
        if rng.random() < 0.01:
            extension_rows.append(
                {"id": str(uuid.UUID(int=rng.getrandbits(128))), "session_id": session_id, "requested_by": agent, "reason": "more time", "minutes": 15,
                 "state": rng.choice(["approved", "denied", "expired"]), "approvals_required": 1, "created_at": started + timedelta(minutes=2),
                 "pending_expires_at": started + timedelta(minutes=32), "decided_at": started + timedelta(minutes=5), "new_expires_at": None}
            )

    alert_rows = [
        {"id": str(uuid.UUID(int=rng.getrandbits(128))), "rule": rng.choice(list(Rule)).value, "subject": f"s-{n}",
         "raised_at": start + timedelta(seconds=rng.random() * span), "account": None, "agent_slack_id": None,
         "request_id": None, "session_id": None, "details": "{}"}
        for n in range(1000)
    ]

    with sessions_factory() as db, db.begin():
        _bulk(db, Account, account_rows)
        _bulk(db, CustomerUser, user_rows)
        _bulk(db, AccountFlagSetting, flag_rows)
        _bulk(db, ImpersonationRequest, request_rows)
        _bulk(db, Link, link_rows)
        _bulk(db, ImpersonationSession, session_rows)
        _bulk(db, Approval, approval_rows)
        _bulk(db, Extension, extension_rows)
        _bulk(db, Alert, alert_rows)
        events = _audit_chain(db, sorted(request_rows, key=lambda r: r["created_at"]))
    return History(len(session_rows), len(request_rows), events, accounts, agents)


def _audit_chain(db: Session, request_rows: list[dict]) -> int:
    """One `request.created` event per request, hashed and chained exactly as audit.append
    would (bot.domain.audit.hash_event_row), then the head advanced to the last one."""
    prev = audit.GENESIS_HASH
    rows = []
    for seq, request in enumerate(request_rows, start=1):
        event = AuditEvent(
            seq=seq,
            occurred_at=request["created_at"],
            type="request.created",
            actor_slack_id=request["agent_slack_id"],
            actor_email=request["agent_email"],
            actor_role="support",
            account=f"acct-{request['account_id']:05d}",
            customer_user=f"user-{request['customer_user_id']:05d}",
            request_id=request["id"],
            session_id=None,
            details=audit.canonical_json({"state": request["state"], "ticket": request["ticket"]}),
            encoding=audit.CURRENT_ENCODING,
            prev_hash=prev,
            hash="",
        )
        event.hash = audit.hash_event_row(event)
        prev = event.hash
        rows.append({c.key: getattr(event, c.key) for c in AuditEvent.__table__.columns})
    _bulk(db, AuditEvent, rows)
    db.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=len(rows), hash=prev))
    return len(rows)


def quarter_bounds(year: int, number: int) -> tuple[datetime, datetime]:
    start = datetime(year, 3 * (number - 1) + 1, 1, tzinfo=timezone.utc)
    end = datetime(year + (number == 4), 1 if number == 4 else 3 * number + 1, 1, tzinfo=timezone.utc)
    return start, end
