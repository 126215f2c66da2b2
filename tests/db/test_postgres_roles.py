"""Under the documented grants, the app's PostgreSQL role can append to and
read the audit log but cannot change, remove or truncate a row, nor disable the triggers."""
from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
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


@pytest.fixture
def login_roles(postgres_admin):
    """An owner and an app role that log in (the server trusts local connections), and a
    schema the owner owns, as docs/postgresql.md sets them up."""
    suffix = uuid.uuid4().hex[:8]
    owner, app, schema = f"impbot_owner_{suffix}", f"impbot_app_{suffix}", f"split_{suffix}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{owner}" LOGIN'))
        conn.execute(text(f'CREATE ROLE "{app}" LOGIN'))
        conn.execute(text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"'))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{make_url(POSTGRES_URL).database}" TO "{owner}", "{app}"'))

    def url(role: str) -> str:
        return make_url(POSTGRES_URL).set(username=role, query={"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    try:
        yield url(owner), url(app), owner, app, schema
    finally:
        with postgres_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            for role in (app, owner):
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))


def test_migrate_uses_the_owner_role_from_migration_database_url_and_the_app_role_runs(login_roles, monkeypatch, tmp_path, capsys):
    from bot import cli

    owner_url, app_url, owner, app, schema = login_roles
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMPERSONATION_ENV", "dev")
    monkeypatch.setenv("SIGNING_KEY_FILE", str(tmp_path / "key.pem"))
    monkeypatch.setenv("DATABASE_URL", app_url)
    # the app role alone cannot migrate: it may not create anything in the owner's schema
    monkeypatch.delenv("MIGRATION_DATABASE_URL", raising=False)
    assert cli.main(["migrate"]) == 1
    assert "database error" in capsys.readouterr().err

    # the Procfile's release step: the same environment plus the owner's URL
    monkeypatch.setenv("MIGRATION_DATABASE_URL", owner_url)
    assert cli.main(["migrate"]) == 0
    assert cli.main(["db", "grants", "--schema", schema, "--app-role", app]) == 0
    capsys.readouterr()
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            owners = conn.execute(
                text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars().all()
    finally:
        admin.dispose()
    assert owners == [owner]

    # web and clock: only DATABASE_URL, the app role, which writes audited changes
    monkeypatch.delenv("MIGRATION_DATABASE_URL")
    assert cli.main(["api-keys", "create", "--product", "acme-web", "--by", "ops@corp.example"]) == 0
    assert cli.main(["audit", "verify"]) == 0
    engine = make_engine(app_url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError):
            conn.execute(text("DELETE FROM audit_events"))
    finally:
        engine.dispose()


def test_the_containers_release_role_migrates_as_the_owner_and_grants_the_app_role(login_roles, tmp_path):
    """scripts/container-entrypoint's `release` (compose.yaml's release service) with the real
    CLI: then the app role alone runs an audited command and verifies the chain."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    owner_url, app_url, owner, app, schema = login_roles
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "MIGRATION_", "DB_", "IMPERSONATION_"))}
    env.update(
        PATH=f"{os.path.dirname(sys.executable)}:{env['PATH']}", IMPERSONATION_ENV="dev",
        SIGNING_KEY_FILE=str(tmp_path / "key.pem"), DATABASE_URL=app_url,
    )
    entrypoint = str(REPO_ROOT / "scripts" / "container-entrypoint")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([entrypoint, *args], env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    release = run("release", MIGRATION_DATABASE_URL=owner_url, DB_SCHEMA=schema, DB_APP_ROLE=app)
    assert release.returncode == 0, release.stderr
    assert "migrated from an empty database" in release.stdout and "GRANT" in release.stdout
    created = run("api-keys", "create", "--product", "acme-web", "--by", "ops@corp.example")
    assert created.returncode == 0, created.stderr
    verified = run("audit", "verify")
    assert verified.returncode == 0, verified.stderr
