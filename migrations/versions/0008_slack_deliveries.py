"""Slack deliveries seen in the last minutes, so that a replayed request acts once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Reviewed by hand. One new table, nothing else touched. A row is written before any listener
runs; its key is the SHA-256 of the request's signature (or of the Events API `event_id`,
which Slack keeps across retries). Rows are pruned by the scheduler after 11 minutes: Slack's
signature check accepts timestamps up to 5 minutes either side of the clock, so no replay of
an older row can pass verification.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_deliveries",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False),
    )
    op.create_index("ix_slack_deliveries_received_at", "slack_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_deliveries_received_at", table_name="slack_deliveries")
    op.drop_table("slack_deliveries")
