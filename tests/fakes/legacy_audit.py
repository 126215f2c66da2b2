"""An audit event appended as releases before RFC 8785 did: hashed in the legacy encoding
(bot.domain.audit.Encoding.LEGACY, keys sorted by code point) and inserted without the
`encoding` column, which they did not know, so the database labels it (migration 0012's
server default) — as it does for every row written before that migration, and for any a
release without the column still writes during a rolling upgrade."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text

from bot.db.models import AuditEvent
from bot.domain import audit


def legacy_append(
    conn: Connection, *, occurred_at: datetime, type: str, details: dict[str, Any], account: str | None = None
) -> str:
    """Chain one legacy event onto the head in `conn`'s transaction; returns its hash."""
    head_seq, head_hash = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    stored = audit.legacy_json(details)
    fields = dict(
        seq=head_seq + 1, type=type, actor_slack_id="ULEGACY1", actor_email=None, actor_role="support",
        account=account, customer_user=None, request_id=None, session_id=None, details=stored, prev_hash=head_hash,
    )
    digest = hashlib.sha256(
        audit.encode_event(occurred_at=audit.format_time(occurred_at), encoding=audit.Encoding.LEGACY, **fields)
    ).hexdigest()
    conn.execute(
        text(
            "INSERT INTO audit_events (seq, occurred_at, type, actor_slack_id, actor_email, actor_role, account, "
            "customer_user, request_id, session_id, details, prev_hash, hash) VALUES (:seq, :occurred_at, :type, "
            ":actor_slack_id, :actor_email, :actor_role, :account, :customer_user, :request_id, :session_id, "
            ":details, :prev_hash, :hash)"
        ).bindparams(bindparam("occurred_at", type_=AuditEvent.__table__.c.occurred_at.type)),
        {**fields, "occurred_at": occurred_at, "hash": digest},
    )
    conn.execute(text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"), {"seq": head_seq + 1, "hash": digest})
    return digest
