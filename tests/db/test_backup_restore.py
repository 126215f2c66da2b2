"""docs/operations.md "Backup and restore": a backup taken the documented way (SQLite's online
backup API; pg_dump / pg_restore) restores to a database whose audit chain verifies, against
the checkpoints signed before the backup, with `impersonation-bot audit verify`."""
from __future__ import annotations

import sqlite3
import subprocess
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot import cli
from tests.conftest import POSTGRES_URL


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False).split("?")[0]


@pytest.fixture
def restore_into(db_url, tmp_path, request):
    """A function that backs the test's database up and restores it elsewhere; its URL."""
    created: list[str] = []

    def _restore() -> str:
        if db_url.startswith("sqlite"):
            source = sqlite3.connect(make_url(db_url).database)
            target_path = tmp_path / "restored.db"
            target = sqlite3.connect(target_path)
            with target:
                source.backup(target)  # consistent while the bot keeps writing
            source.close()
            target.close()
            return f"sqlite:///{target_path}"
        schema = make_url(db_url).query["options"].split("=", 1)[1]
        dump = tmp_path / "backup.dump"
        subprocess.run(
            ["pg_dump", "--format=custom", f"--schema={schema}", f"--file={dump}", _libpq(POSTGRES_URL)],
            check=True, capture_output=True, timeout=120,
        )
        database = f"restore_{uuid.uuid4().hex[:10]}"
        admin = request.getfixturevalue("postgres_admin")
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        created.append(database)
        restored = make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)
        subprocess.run(["pg_restore", "--exit-on-error", f"--dbname={_libpq(restored)}", str(dump)], check=True, capture_output=True, timeout=120)
        return f"{restored}?options=-csearch_path%3D{schema}"

    yield _restore
    if created:
        admin = request.getfixturevalue("postgres_admin")
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for database in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def test_a_restored_backup_verifies_against_the_checkpoints_signed_before_it(db_url, restore_into, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DATABASE_URL": db_url, "IMPERSONATION_ENV": "dev", "SIGNING_KEY_FILE": str(tmp_path / "key.pem"),
        "AUDIT_CHECKPOINT_FILE": str(tmp_path / "checkpoints.jsonl"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MIGRATION_DATABASE_URL", raising=False)
    assert cli.main(["api-keys", "create", "--product", "acme-web", "--by", "ops@corp.example"]) == 0
    assert cli.main(["audit", "checkpoint"]) == 0
    assert cli.main(["api-keys", "create", "--product", "globex-web", "--by", "ops@corp.example"]) == 0
    assert cli.main(["audit", "checkpoint"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("DATABASE_URL", restore_into())
    assert cli.main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "2 checkpoint" in out, out
