"""Who opened the app's Home tab, so that it is published again when what it shows changes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

Reviewed by hand. One new table, nothing else touched: a row per person who opened the Home
tab (their Slack id, when, and whether it shows security's view). The outbox owes a Home
publish only to these people; nobody else's Home is ever published unasked.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "home_tabs",
        sa.Column("slack_id", sa.String(32), primary_key=True),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("sees_security", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("home_tabs")
