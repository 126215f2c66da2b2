"""Re-initiation: the ordinal of a request in a chain of re-initiations, and when the session
it follows ended.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Reviewed by hand. Two new request columns, nothing else touched. `reinitiation_ordinal` gets a
server default of 0 so existing rows stay valid (a request linked to a session before this
revision keeps 0: how far into a chain it was is not known). `previous_session_ended_at` is
kept on the request because the approvers' DM and the audit event say how soon after that
end the agent came back, and a later change to the session (none is expected once it is
over) must not change what the request was decided on.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("reinitiation_ordinal", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("previous_session_ended_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("previous_session_ended_at")
        batch.drop_column("reinitiation_ordinal")
