"""Approvals: per-approver decisions, extensions, and refs to messages edited in place.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Reviewed by hand. New request columns get server defaults so existing rows stay valid.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("approvals_required", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("pending_expires_at", UTCDateTime()))
        batch.add_column(sa.Column("previous_session_id", sa.String(36)))
        batch.add_column(sa.Column("break_glass", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("approver_slack_id", sa.String(32), nullable=False),
        sa.Column("approver_identity", sa.String(320), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint("subject_id", "approver_identity", name="uq_approvals_subject_approver"),
    )
    op.create_index("ix_approvals_subject_id", "approvals", ["subject_id"])
    op.create_table(
        "extensions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("requested_by", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("approvals_required", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("pending_expires_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime()),
        sa.Column("new_expires_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_extensions"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_extensions_session_id_sessions"),
    )
    op.create_index("ix_extensions_session_id", "extensions", ["session_id"])
    op.create_table(
        "message_refs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_message_refs"),
    )
    op.create_index("ix_message_refs_subject", "message_refs", ["subject_id", "purpose"])


def downgrade() -> None:
    op.drop_index("ix_message_refs_subject", table_name="message_refs")
    op.drop_table("message_refs")
    op.drop_index("ix_extensions_session_id", table_name="extensions")
    op.drop_table("extensions")
    op.drop_index("ix_approvals_subject_id", table_name="approvals")
    op.drop_table("approvals")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("break_glass")
        batch.drop_column("previous_session_id")
        batch.drop_column("pending_expires_at")
        batch.drop_column("approvals_required")
