"""The signing keys' public halves, for rotation without downtime.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Reviewed by hand. One new table, nothing else touched. Each row is the public half of a key
that signs (or signed) hand-off tokens and audit checkpoints: the JWKS publishes the ones not
yet retired, and `audit verify` checks checkpoints against all of them. No private key is
stored in the database.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("x", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.Column("published_until", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
