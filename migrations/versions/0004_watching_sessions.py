"""Watching sessions: the Slack outbox, channel pacing, job claims and alerts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Reviewed by hand. New tables, and two indexes on existing tables; no existing column changes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("target", sa.String(96), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claim_token", sa.String(32)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("merged_into", sa.Integer),
        sa.Column("last_error", sa.String(64)),
        sa.Column("finished_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_state_due", "outbox", ["state", "due_at"])
    op.create_index("ix_outbox_target", "outbox", ["target", "id"])
    op.create_table(
        "channel_pace",
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("next_post_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name="pk_channel_pace"),
    )
    op.create_table(
        "job_claims",
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("key", sa.String(96), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job", "key", name="pk_job_claims"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("raised_at", UTCDateTime(), nullable=False),
        sa.Column("account", sa.String(128)),
        sa.Column("agent_slack_id", sa.String(32)),
        sa.Column("request_id", sa.String(36)),
        sa.Column("session_id", sa.String(36)),
        sa.Column("details", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_raised_at", "alerts", ["raised_at"])
    op.create_table(
        "alert_marks",
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("last_raised_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "subject", name="pk_alert_marks"),
    )
    # digests and sweeps read requests, sessions and grants by time range
    op.create_index("ix_requests_created_at", "requests", ["created_at"])
    op.create_index("ix_sessions_started_at", "sessions", ["started_at"])
    # anomaly rules count grants (one link each) in the last 24 hours at every request
    op.create_index("ix_links_created_at", "links", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_links_created_at", table_name="links")
    op.drop_index("ix_sessions_started_at", table_name="sessions")
    op.drop_index("ix_requests_created_at", table_name="requests")
    op.drop_table("alert_marks")
    op.drop_index("ix_alerts_raised_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("job_claims")
    op.drop_table("channel_pace")
    op.drop_index("ix_outbox_target", table_name="outbox")
    op.drop_index("ix_outbox_state_due", table_name="outbox")
    op.drop_table("outbox")
