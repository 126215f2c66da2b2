"""`impersonation-bot api-keys …` and `db grants`."""
from __future__ import annotations

import re

from bot.db.base import Base
from bot.db.models import ApiKey, AuditEvent
from bot.db.roles import APP_TABLES
from tests.test_cli import on_db, rows_of, run, workdir  # noqa: F401 - fixtures


def test_create_list_revoke(on_db, capsys):
    code, out, err = run(capsys, "api-keys", "create", "--product", "app", "--by", "ops@corp.example")
    assert code == 0, err
    plaintext = re.search(r"^(ibk_[0-9a-f]{16}_[A-Za-z0-9_-]{43})$", out, re.M).group(1)
    key_id = plaintext.split("_")[1]
    (row,) = rows_of(on_db, ApiKey)
    assert plaintext not in str([getattr(row, c.key) for c in ApiKey.__table__.columns])
    events = rows_of(on_db, AuditEvent)
    assert [e.type for e in events] == ["api_key.created"] and plaintext not in events[0].details

    code, out, _ = run(capsys, "api-keys", "list")
    assert code == 0 and key_id in out and "live" in out and plaintext not in out

    code, out, _ = run(capsys, "api-keys", "revoke", key_id, "--by", "UOPS1")
    assert code == 0 and "revoked" in out
    code, _, err = run(capsys, "api-keys", "revoke", key_id, "--by", "UOPS1")
    assert code == 2 and "no live key" in err
    code, _, err = run(capsys, "api-keys", "revoke", "not-a-key", "--by", "UOPS1")
    assert code == 2 and "16 hexadecimal" in err
    assert [e.type for e in rows_of(on_db, AuditEvent)] == ["api_key.created", "api_key.revoked"]


def test_create_refuses_a_bad_product_and_writes_nothing(on_db, capsys):
    code, _, err = run(capsys, "api-keys", "create", "--product", "Bad Name!", "--by", "UOPS1")
    assert code == 2 and "product must be" in err
    assert rows_of(on_db, ApiKey) == [] and rows_of(on_db, AuditEvent) == []


def test_grants_cover_every_application_table():
    """A new table must be granted to the app role, or the app fails under least privilege."""
    protected = {"audit_events", "audit_head", "alembic_version"}
    assert set(APP_TABLES) == {t.name for t in Base.metadata.sorted_tables} - protected


def test_db_grants_print_only(workdir, capsys):  # noqa: F811
    code, out, _ = run(capsys, "db", "grants", "--schema", "impbot", "--app-role", "impbot_app", "--print-only")
    assert code == 0
    assert 'GRANT SELECT, INSERT ON "impbot"."audit_events" TO "impbot_app";' in out
    code, _, err = run(capsys, "db", "grants", "--schema", "x; drop", "--app-role", "a", "--print-only")
    assert code == 2 and "identifier" in err


def test_db_grants_refuses_sqlite(workdir, monkeypatch, capsys, tmp_path):  # noqa: F811
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    code, _, err = run(capsys, "db", "grants", "--schema", "impbot", "--app-role", "impbot_app")
    assert code == 2 and "PostgreSQL" in err
