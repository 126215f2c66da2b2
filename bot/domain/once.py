"""Doing a piece of work exactly once across schedulers: an INSERT that only one writer can
make. `INSERT … ON CONFLICT DO NOTHING RETURNING` (PostgreSQL, and SQLite since 3.35) returns
the row only to the writer that made it; unlike catching an IntegrityError it leaves a
PostgreSQL transaction usable, so the claim and the work it guards commit together.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.base import Base, table_of
from bot.db.models import JobClaim


def insert_once(db: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """Insert `values` into `model`'s table unless a row with the same primary key exists.
    True when this call inserted it: `RETURNING` yields the row only then (the driver's row
    count is not reliable for this statement on every driver)."""
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = table_of(model)
    key = list(table.primary_key.columns)[0]
    statement = insert(table).values(**values).on_conflict_do_nothing().returning(key)
    return db.execute(statement).first() is not None


def claim_once(db: Session, job: str, key: str, *, now: datetime) -> bool:
    """Claim (job, key) inside the caller's transaction. True for exactly one caller ever:
    the one whose transaction commits the claim; the work it guards commits with it."""
    return insert_once(db, JobClaim, {"job": job, "key": key, "claimed_at": now})


def claimed(db: Session, job: str, key: str) -> bool:
    return db.get(JobClaim, (job, key)) is not None
