"""docs/audit.md's "Checking one event by hand" works on rows as the database stores them: its
SQL (for this backend) and its Python, taken from the document itself, run against real events."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
SECTION = DOC[DOC.index("### Checking one event by hand"):]
SECTION = SECTION[: SECTION.index("\n## ")]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


def _sql_for(backend: str) -> str:
    label = {"postgresql": "-- PostgreSQL", "sqlite": "-- SQLite"}[backend]
    (block,) = [b for b in _blocks("sql") if b.startswith(label)]
    return block


def test_the_recipe_checks_stored_events_on_this_database(engine, session_factory):
    moments = [
        datetime(2026, 11, 25, 9, 0, 0, tzinfo=timezone.utc),  # no fraction: still six digits
        datetime(2026, 11, 25, 9, 0, 0, 120000, tzinfo=timezone.utc),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    ]
    drafts = [
        EventDraft(type="account.flag_changed", actor=Actor.system("cli"), account="acme", details={"flag": "sensitive", "value": True}),
        EventDraft(
            type="request.created", actor=Actor("UAGENT1", "agent1@corp.example", "support"), account="Ünïcode «acme»",
            details={"reason": 'quotes " and \\ backslash\nnewline', "emoji": "😀", "n": 3, "nested": {"b": [1, None], "a": "x"}},
        ),
        EventDraft(type="session.redeemed", request_id="r-1", session_id="s-1", details={}),
    ]
    with session_factory() as db, db.begin():
        for draft, moment in zip(drafts, moments):
            audit.append(db, draft, now=moment)

    backend = engine.dialect.name
    statement = _sql_for(backend).replace("seq = 42", "seq = %s" if backend == "postgresql" else "seq = ?")
    statement = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
    (python,) = _blocks("python")
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for seq in (1, 2, 3):
            cursor.execute(statement, (seq,))
            names = [column[0] for column in cursor.description]
            row = dict(zip(names, cursor.fetchone()))
            exec(python, {"row": row})  # the recipe's own assert
    finally:
        connection.close()


def test_the_recipe_fails_on_a_changed_event(engine, session_factory):
    with session_factory() as db, db.begin():
        audit.append(db, EventDraft(type="account.flag_changed", account="acme", details={"value": True}))
    backend = engine.dialect.name
    statement = _sql_for(backend).replace("seq = 42", "seq = 1")
    statement = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
    (python,) = _blocks("python")
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(statement)
        row = dict(zip([c[0] for c in cursor.description], cursor.fetchone()))
    finally:
        connection.close()
    row["account"] = "globex"
    try:
        exec(python, {"row": row})
    except AssertionError:
        return
    raise AssertionError("the recipe accepted an event whose account was changed")
