"""Notification webhooks: who subscribed to which events, and each event's exact body.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Reviewed by hand. Two new tables, nothing else touched.

- `webhook_subscriptions`: an endpoint (a product or a customer's admin system), the event
  types it wants, optionally one account, and its signing secret. The secret must be stored:
  Standard Webhooks signatures are HMACs, so the sender needs the key itself (as for the Slack
  signing secret). A removed subscription keeps its row (`removed_at`) so that the audit log's
  references to it stay resolvable; it gets nothing more.
- `webhook_events`: one row per event raised while at least one subscription wanted it, with
  the body exactly as it is sent. Every retry sends these bytes again under the same
  `webhook-id` (the event's id), which is what lets a receiver deduplicate.

Deliveries are outbox rows (kind `webhook`, subject = event id, recipient = subscription id):
no table of their own, the outbox already claims, retries and audits failures.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("event_types", sa.String(255), nullable=False),
        sa.Column("account", sa.String(128), nullable=True),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("account", sa.String(128), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_webhook_events_created_at", "webhook_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_created_at", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_table("webhook_subscriptions")
