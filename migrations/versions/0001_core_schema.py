"""Core schema: directory, requests, links, sessions, and the append-only audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Reviewed by hand. The audit table is protected by triggers on both databases: UPDATE and
DELETE are refused on SQLite and PostgreSQL, TRUNCATE too on PostgreSQL: an
append-only log is what makes its hash chain and signed checkpoints (docs/audit.md) worth
anything.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.base import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("external_id", name="uq_accounts_external_id"),
    )
    op.create_table(
        "account_flags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("flag", sa.String(32), nullable=False),
        sa.Column("set_by", sa.String(255), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_flags"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_account_flags_account_id_accounts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("account_id", "flag", name="uq_account_flags_account_flag"),
        sa.CheckConstraint(
            "flag IN ('opted_out', 'sensitive', 'regulated', 'flagged')", name="ck_account_flags_known_flag"
        ),
    )
    op.create_table(
        "customer_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("protected", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer_users"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_customer_users_account_id_accounts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("account_id", "external_id", name="uq_customer_users_account_external"),
    )
    op.create_index("ix_customer_users_account_id", "customer_users", ["account_id"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("agent_slack_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_assignments"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_assignments_account_id_accounts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("agent_slack_id", "account_id", name="uq_assignments_agent_account"),
    )
    op.create_index("ix_assignments_agent_slack_id", "assignments", ["agent_slack_id"])
    op.create_table(
        "requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("team_id", sa.String(32)),
        sa.Column("agent_slack_id", sa.String(32), nullable=False),
        sa.Column("agent_email", sa.String(320)),
        sa.Column("agent_tz", sa.String(64)),
        sa.Column("agent_role", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("customer_user_id", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("ticket", sa.String(128)),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("gated_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("agent_channel", sa.String(32)),
        sa.Column("agent_message_ts", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_requests_account_id_accounts"),
        sa.ForeignKeyConstraint(
            ["customer_user_id"], ["customer_users.id"], name="fk_requests_customer_user_id_customer_users"
        ),
    )
    op.create_index("ix_requests_account_created", "requests", ["account_id", "created_at"])
    op.create_index("ix_requests_state", "requests", ["state"])
    op.create_index("ix_requests_agent_slack_id", "requests", ["agent_slack_id"])
    op.create_table(
        "links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("redeemed_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_links"),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name="fk_links_request_id_requests"),
        sa.UniqueConstraint("request_id", name="uq_links_request_id"),
        sa.UniqueConstraint("token_hash", name="uq_links_token_hash"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("agent_slack_id", sa.String(32), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("end_reason", sa.String(16)),
        sa.Column("ended_by", sa.String(32)),
        sa.Column("handoff_jti", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name="fk_sessions_request_id_requests"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_sessions_account_id_accounts"),
        sa.UniqueConstraint("request_id", name="uq_sessions_request_id"),
        sa.UniqueConstraint("handoff_jti", name="uq_sessions_handoff_jti"),
    )
    op.create_index("ix_sessions_account_started", "sessions", ["account_id", "started_at"])
    op.create_index("ix_sessions_agent_slack_id", "sessions", ["agent_slack_id"])
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("actor_slack_id", sa.String(32)),
        sa.Column("actor_email", sa.String(320)),
        sa.Column("actor_role", sa.String(64)),
        sa.Column("account", sa.String(128)),
        sa.Column("customer_user", sa.String(128)),
        sa.Column("request_id", sa.String(36)),
        sa.Column("session_id", sa.String(36)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        sa.UniqueConstraint("hash", name="uq_audit_events_hash"),
    )
    op.create_index("ix_audit_events_account_time", "audit_events", ["account", "occurred_at"])
    op.create_index("ix_audit_events_type", "audit_events", ["type"])
    op.create_index("ix_audit_events_request_id", "audit_events", ["request_id"])
    op.create_index("ix_audit_events_session_id", "audit_events", ["session_id"])
    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: {verb} refused'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()"
        )
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect!r}")


def downgrade() -> None:
    # The audit log is never dropped by a downgrade: an auditor's evidence outlives schemas.
    raise RuntimeError("0001 is the first revision; the audit log is not dropped by downgrade")
