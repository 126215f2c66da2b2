"""Indexes for `/impersonation-log` at scale (bench/audit_bench.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Reviewed by hand. Three indexes are replaced by wider ones that begin with the same columns,
so every query the old ones served is still served, and the log's summary of a busy account
is answered from the indexes instead of one table row per session:
- sessions (account_id, started_at) → (account_id, started_at, request_id, agent_slack_id,
  expires_at, id): the period's sessions with what the summary reads. Measured on generated
  history, PostgreSQL otherwise preferred scanning `ix_sessions_started_at` (which follows
  the table's physical order) and filtering every account's sessions of the period.
- audit_events (session_id) → (session_id, type): write actions per session
  (`type = 'action.recorded'`, bot/domain/log_query.py).
- approvals (subject_id) → (subject_id, decision, approver_identity): distinct approvers of
  the period's approved sessions.
No table or column changes; the audit table's triggers are untouched.
"""
from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_sessions_account_period",
        "sessions",
        ["account_id", "started_at", "request_id", "agent_slack_id", "expires_at", "id"],
    )
    op.drop_index("ix_sessions_account_started", table_name="sessions")
    op.create_index("ix_audit_events_session_type", "audit_events", ["session_id", "type"])
    op.drop_index("ix_audit_events_session_id", table_name="audit_events")
    op.create_index("ix_approvals_subject_decision", "approvals", ["subject_id", "decision", "approver_identity"])
    op.drop_index("ix_approvals_subject_id", table_name="approvals")


def downgrade() -> None:
    op.create_index("ix_approvals_subject_id", "approvals", ["subject_id"])
    op.drop_index("ix_approvals_subject_decision", table_name="approvals")
    op.create_index("ix_audit_events_session_id", "audit_events", ["session_id"])
    op.drop_index("ix_audit_events_session_type", table_name="audit_events")
    op.create_index("ix_sessions_account_started", "sessions", ["account_id", "started_at"])
    op.drop_index("ix_sessions_account_period", table_name="sessions")
