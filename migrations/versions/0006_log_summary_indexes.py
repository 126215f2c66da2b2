"""Two more indexes for `/impersonation-log`'s summary at scale.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

Reviewed by hand. Indexes only: no table, column or trigger changes, and nothing dropped.
The summary (bot/domain/log_query.py `summarise`) looks up, for each session of the period,
its request and its write actions. Measured on the generated history (bench/audit_bench.py,
the busiest account's 2,373 sessions in 90 days), these two make both lookups cheaper:
- requests (id, state, break_glass, approvals_required): what the summary reads of a
  request, from the index alone (no table row per session).
- audit_events (session_id) WHERE type = 'action.recorded': the write actions alone (in the
  generated history about half the events, and a third the size of (session_id, type),
  which stays for every other lookup by session). Appending an event of another type does
  not touch it. A query uses it only when its SQL names the type as a literal: a bound
  parameter cannot prove that the rows asked for are all in a partial index.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIONS = sa.text("type = 'action.recorded'")


def upgrade() -> None:
    op.create_index("ix_requests_id_outcome", "requests", ["id", "state", "break_glass", "approvals_required"])
    op.create_index("ix_audit_events_actions", "audit_events", ["session_id"], postgresql_where=ACTIONS, sqlite_where=ACTIONS)


def downgrade() -> None:
    op.drop_index("ix_audit_events_actions", table_name="audit_events")
    op.drop_index("ix_requests_id_outcome", table_name="requests")
