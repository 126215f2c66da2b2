"""The audit log's encoding per event: RFC 8785 (JCS) from now on, the old one kept verifiable.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Reviewed by hand. One column added to `audit_events`, nothing else touched. Events were
hashed over JSON with keys sorted by code point, which is not RFC 8785 for keys outside the
Basic Multilingual Plane (RFC 8785 §3.2.3 sorts by UTF-16 code units). New events are hashed
in RFC 8785 and say so (`encoding` 2, also inside the hashed object); every existing row is
labelled 1, the encoding it was hashed in, by the column's server default, so no row is
rewritten (the table refuses UPDATE): adding a column with a constant default changes only
the catalogue on PostgreSQL 11+ and on SQLite, and fires no UPDATE trigger.

The default stays 1 after the upgrade: a release that predates this column inserts without
it, and hashes in encoding 1.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("encoding", sa.SmallInteger(), nullable=False, server_default=sa.text("1")))


def downgrade() -> None:
    # Without the column, events hashed in RFC 8785 would be read as the old encoding and fail
    # verification: the audit log is not dropped by downgrade, nor made unverifiable by one.
    raise RuntimeError("0012 labels how each audit event was hashed; the audit log is not dropped by downgrade")
