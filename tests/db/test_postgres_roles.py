"""Issue 4 point 2: under the documented grants, the app's PostgreSQL role can append to and
read the audit log but cannot change, remove or truncate a row, nor disable the triggers."""
from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.db.engine import make_engine
from bot.db.migrate import alembic_config
from bot.db.roles import app_role_grants
from bot.domain import audit
from bot.domain.audit import EventDraft
from tests.conftest import BACKENDS, POSTGRES_URL

pytestmark = pytest.mark.skipif("postgresql" not in BACKENDS, reason="TEST_DATABASES excludes postgresql")


@pytest.fixture
def roles(postgres_admin):
    suffix = uuid.uuid4().hex[:8]
    owner, app, schema = f"impbot_owner_{suffix}", f"impbot_app_{suffix}", f"roles_{suffix}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{owner}" NOLOGIN'))
        conn.execute(text(f'CREATE ROLE "{app}" NOLOGIN'))
        conn.execute(text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"'))
    engine = make_engine(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", pool_size=1, max_overflow=0)
    try:
        yield engine, owner, app, schema
    finally:
        engine.dispose()
        with postgres_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(text(f'DROP OWNED BY "{app}"'))
            conn.execute(text(f'DROP ROLE "{app}"'))
            conn.execute(text(f'DROP OWNED BY "{owner}"'))
            conn.execute(text(f'DROP ROLE "{owner}"'))


def test_app_role_can_append_and_read_but_never_change_the_audit_log(roles):
    engine, owner, app, schema = roles
    # The schema owner migrates and grants: Alembic on a connection whose role is the owner.
    with engine.begin() as conn:
        conn.execute(text(f'SET LOCAL ROLE "{owner}"'))
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        for statement in app_role_grants(schema=schema, app_role=app):
            conn.execute(text(statement))

    with Session(engine) as db, db.begin():
        db.execute(text(f'SET LOCAL ROLE "{app}"'))
        audit.append(db, EventDraft(type="test.appended", details={"n": 1}))
    with engine.connect() as conn:
        conn.execute(text(f'SET ROLE "{app}"'))
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 1
        conn.rollback()

    attacks = [
        "UPDATE audit_events SET type = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_events_no_update_delete ON audit_events",
        "DROP TABLE audit_events",
    ]
    for statement in attacks:
        with engine.connect() as conn:
            conn.execute(text(f'SET ROLE "{app}"'))
            with pytest.raises(DBAPIError) as refused:
                conn.execute(text(statement))
            assert "permission denied" in str(refused.value.orig).lower() or "must be owner" in str(refused.value.orig).lower()
            conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT type FROM audit_events")).scalars().all() == ["test.appended"]


def test_grants_refuse_odd_identifiers():
    with pytest.raises(ValueError):
        app_role_grants(schema="public; DROP TABLE x", app_role="app")
