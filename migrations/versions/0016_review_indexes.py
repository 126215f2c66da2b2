"""Indexes that let the access review (bot/domain/digests.py `build_report`) read a period's
requests, sessions and blocked attempts from indexes alone.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

Reviewed by hand. Indexes only: no table, column or trigger changes. Three single-column
indexes are replaced by composite ones that start with the same column, so every query that
used them (ranges on the time, equality on the type) can use the new ones the same way:
- requests (created_at, state, approvals_required, ticket, previous_session_id, break_glass,
  id) for requests (created_at): the review counts a period's requests by outcome, with and
  without a ticket, re-initiated and break-glass, and finds the gated ones to time their
  decisions, without reading a table row per request.
- sessions (started_at, account_id, agent_slack_id) for sessions (started_at): the review
  counts a period's sessions per (account, agent) from the index alone.
- audit_events (type, occurred_at) for audit_events (type): the review counts one type's
  events in a period (blocked requests) as a range of the index, not every event of the type.
Measured on the generated quarter of 100,000 sessions (bench/digest_bench.py).
"""
from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

REQUESTS_PERIOD = ["created_at", "state", "approvals_required", "ticket", "previous_session_id", "break_glass", "id"]


def upgrade() -> None:
    op.create_index("ix_requests_period", "requests", REQUESTS_PERIOD)
    op.drop_index("ix_requests_created_at", table_name="requests")
    op.create_index("ix_sessions_period", "sessions", ["started_at", "account_id", "agent_slack_id"])
    op.drop_index("ix_sessions_started_at", table_name="sessions")
    op.create_index("ix_audit_events_type_time", "audit_events", ["type", "occurred_at"])
    op.drop_index("ix_audit_events_type", table_name="audit_events")


def downgrade() -> None:
    op.create_index("ix_audit_events_type", "audit_events", ["type"])
    op.drop_index("ix_audit_events_type_time", table_name="audit_events")
    op.create_index("ix_sessions_started_at", "sessions", ["started_at"])
    op.drop_index("ix_sessions_period", table_name="sessions")
    op.create_index("ix_requests_created_at", "requests", ["created_at"])
    op.drop_index("ix_requests_period", table_name="requests")
