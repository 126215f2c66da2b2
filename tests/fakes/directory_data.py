"""A small directory used by many tests (the demo product's customers), loaded through the real importer."""
from __future__ import annotations

import json
from pathlib import Path

from bot.domain import directory
from bot.domain.audit import Actor
from bot.local import demo

RECORDS = [
    *demo.CUSTOMERS,
    {"kind": "assignment", "account": "acme", "agent": "UAGENT1"},
    {"kind": "assignment", "account": "globex", "agent": "UAGENT1"},
    {"kind": "assignment", "account": "initech", "agent": "UAGENT1"},
]


def load_directory(session_factory, tmp_path: Path, *, flags: dict[str, list[str]] | None = None) -> None:
    """Import RECORDS, then set flags, e.g. {"globex": ["sensitive"], "initech": ["opted_out"]}."""
    path = tmp_path / "directory.json"
    path.write_text(json.dumps(RECORDS, indent=1))
    with session_factory() as db, db.begin():
        directory.import_directory(db, path, actor=Actor.system("test"))
        for account, names in (flags or {}).items():
            for name in names:
                directory.set_flag(
                    db,
                    account_external_id=account,
                    flag=directory.AccountFlag(name),
                    on=True,
                    actor=Actor(slack_id="UREVOPS1", role="revops"),
                    note="contract",
                )
