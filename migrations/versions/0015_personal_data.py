"""Personal data that can be erased: the personal values audit events refer to, the mark of an
erased customer user, and the justification code of a request.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

Reviewed by hand. One new table and two nullable columns, nothing dropped or rewritten.

`personal_values` holds the clear personal values (a customer user's id, a reason) that audit
events written from now on refer to by a keyed hash instead of holding them (docs/privacy.md).
Events written before this revision are NOT rewritten: they are hash-chained and the database
refuses UPDATE on them (0001's triggers), and a rewritten event would fail `audit verify`. Their
personal values stay in the log; docs/privacy.md says so and what erasure does remove for them
(the requests', extensions', approvals' and directory's copies, which the exports read).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personal_values",
        sa.Column("ref", sa.String(67), primary_key=True),
        sa.Column("account", sa.String(128), nullable=True),
        sa.Column("customer_user", sa.String(128), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_personal_values_subject", "personal_values", ["account", "customer_user"])
    op.create_index("ix_personal_values_created", "personal_values", ["created_at"])
    with op.batch_alter_table("customer_users") as batch:
        batch.add_column(sa.Column("erased_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("justification", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("justification")
    with op.batch_alter_table("customer_users") as batch:
        batch.drop_column("erased_at")
    op.drop_index("ix_personal_values_created", table_name="personal_values")
    op.drop_index("ix_personal_values_subject", table_name="personal_values")
    op.drop_table("personal_values")
