"""Someone with direct write access to the database (the SQLite file, or a PostgreSQL owner
role) who switches off the audit table's triggers to rewrite history. The hash chain, not
the triggers, must then catch them (`audit verify`)."""
from __future__ import annotations

from sqlalchemy import Engine, text


def disable_audit_triggers(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))


def rewrite(engine: Engine, statement: str, **params: object) -> None:
    """Run one raw statement against the audit table with its triggers off."""
    disable_audit_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text(statement), params)
