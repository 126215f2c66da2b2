"""Sessions belong to the product they were launched into.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Reviewed by hand. One nullable column on `sessions`, nothing else touched. Rows that exist
already keep NULL: they were launched before any product was named, and the product API
treats such a session as the install's only product's (docs/product-api.md, "Sessions
belong to a product"), so a single-product install goes on working unchanged.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("product", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("product")
