"""Alembic is the only way the schema changes: `upgrade head` on an empty database must give
exactly the tables and columns of the models, on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from bot.db import models  # noqa: F401  (registers every table on Base.metadata)
from bot.db.base import Base
from bot.db.migrate import alembic_config, upgrade_head
from bot.domain.audit import GENESIS_HASH


def schema_diffs(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_head_gives_exactly_the_models(engine):
    # The `engine` fixture's database was built from empty by `upgrade head` (tests/conftest.py).
    assert schema_diffs(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_the_comparison_sees_a_schema_that_differs(engine):
    # Guard for the test above: an extra table and an extra column must show as differences.
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
        conn.execute(text("ALTER TABLE accounts ADD COLUMN stray_note VARCHAR(10)"))
    kinds = {(diff[0], diff[2] if diff[0] == "remove_column" else None) for diff in schema_diffs(engine)}
    assert ("remove_table", None) in kinds
    assert ("remove_column", "accounts") in kinds


def test_the_database_is_at_the_single_head(engine):
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, "migrations must not branch"
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == tuple(heads)


def test_upgrade_head_again_changes_nothing(engine):
    # The Procfile's release step runs `migrate` on every deploy.
    upgrade_head(engine)
    assert schema_diffs(engine) == []


def test_the_audit_chain_starts_at_the_genesis_hash(engine):
    with engine.connect() as conn:
        assert conn.execute(select(models.AuditHead.seq, models.AuditHead.hash)).all() == [(0, GENESIS_HASH)]


def test_the_audit_table_is_protected_by_triggers(engine):
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")
            ).scalars()
            expected = {"audit_events_no_update", "audit_events_no_delete"}
        else:
            names = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass "
                    "AND NOT tgisinternal AND tgenabled <> 'D'"
                )
            ).scalars()
            expected = {"audit_events_no_update_delete", "audit_events_no_truncate"}
    assert set(names) == expected


def test_downgrade_of_the_first_revision_is_refused(engine):
    from alembic import command

    cfg = alembic_config()
    with pytest.raises(RuntimeError, match="audit log is not dropped"), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    # the refused downgrade ran in one transaction, and none of it stuck
    assert schema_diffs(engine) == []
