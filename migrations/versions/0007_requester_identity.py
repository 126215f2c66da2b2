"""The requester's Enterprise Grid id, kept on the request.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Reviewed by hand. One nullable column, nothing dropped. Self-approval checks compare the
approver with the requester as they were identified at submission (Slack id, e-mail and
`enterprise_user.id` from `users.info`), so a failed lookup at click time can no longer make
the requester look like somebody else. Requests stored before this revision have no Grid id;
their e-mail (`agent_email`) was already stored.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("agent_enterprise_user_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("agent_enterprise_user_id")
