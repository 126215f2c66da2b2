"""`impersonation-bot privacy erase` run in-process through `main()` on both databases: refused
(and audited) for someone without `can_erase_personal_data`, done for someone with it, after
which `audit verify` still passes and the events export shows [erased]."""
from __future__ import annotations

import json

import pytest

from bot.db.engine import make_engine, make_session_factory
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from tests.conftest import TEST_POLICY
from tests.test_cli import audit_events, run, workdir  # noqa: F401 - fixtures and helpers
from tests.test_cli_audit import DIRECTORY_JSON, deployment  # noqa: F401 - fixtures

DPO_ROLE = """
[roles.dpo]
members = ["UDPO1"]
max_minutes = 15
can_impersonate = false
can_erase_personal_data = true
"""


@pytest.fixture
def with_bob(deployment, workdir, monkeypatch, capsys, db_url):  # noqa: F811
    """The directory (acme, u-bob), a policy with a dpo role, and an event about u-bob."""
    (workdir / "policy.toml").write_text(TEST_POLICY + DPO_ROLE)
    monkeypatch.setenv("IMPERSONATION_POLICY", str(workdir / "policy.toml"))
    (workdir / "directory.json").write_text(json.dumps(DIRECTORY_JSON))
    assert run(capsys, "directory", "import", "directory.json")[0] == 0
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as db, db.begin():
            audit.append(
                db,
                EventDraft(type="request.blocked", actor=Actor("UAGENT1"), account="acme", customer_user="u-bob", details={"cause": "reason_too_short", "reason": "Bob asked about invoices"}),
            )
    finally:
        engine.dispose()


def _export(capsys) -> str:
    code, out, _ = run(capsys, "audit", "export", "--format", "jsonl")
    assert code == 0
    return out


def test_erase_without_the_power_is_refused_and_audited(with_bob, capsys, db_url):
    code, out, err = run(capsys, "privacy", "erase", "--account", "acme", "--customer-user", "u-bob", "--as", "UAGENT1")
    assert code == 2 and out == ""
    assert "refused" in err and "can_erase_personal_data" in err
    (refused,) = [e for e in audit_events(db_url) if e.type == "privacy.erase_refused"]
    assert refused.actor_slack_id == "UAGENT1" and "u-bob" not in refused.details
    assert "Bob asked about invoices" in _export(capsys)  # nothing erased


def test_erase_by_a_role_with_the_power_then_verify_passes_and_exports_show_erased(with_bob, capsys, db_url):
    assert "Bob asked about invoices" in _export(capsys)

    code, out, err = run(capsys, "privacy", "erase", "--account", "acme", "--customer-user", "u-bob", "--as", "UDPO1")

    assert (code, err) == (0, "")
    assert "erased: their name and e-mail in the directory, 2 personal value(s)" in out and "privacy.erased" in out
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and out.startswith("audit chain OK")
    exported = _export(capsys)
    assert "Bob asked about invoices" not in exported and "u-bob" not in exported and "Bob Builder" not in exported
    (blocked,) = [json.loads(line) for line in exported.splitlines() if json.loads(line)["type"] == "request.blocked"]
    assert set(blocked["personal"].values()) == {"[erased]"}


def test_erase_needs_a_slack_id(with_bob, capsys):
    code, _, err = run(capsys, "privacy", "erase", "--account", "acme", "--customer-user", "u-bob", "--as", "dpo@corp.example")
    assert code == 2 and "Slack user id" in err


def test_verify_fails_when_a_personal_value_was_changed(with_bob, capsys, db_url):
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE personal_values SET value = 'rewritten' WHERE value = 'Bob asked about invoices'")
    finally:
        engine.dispose()
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "personal values ALTERED: 1" in out
