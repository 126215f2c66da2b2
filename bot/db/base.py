"""The one declarative Base and the column types every model shares."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, DateTime, Dialect, Executable, MetaData, Table
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

# Stable constraint names so Alembic revisions can refer to them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    PostgreSQL stores `timestamptz`; SQLite has no time zones and returns naive values, so
    we refuse naive input and re-attach UTC on the way out. Every datetime the app sees is
    aware and in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def table_of(model: type[Base]) -> Table:
    """The Core Table a model maps, for Core statements (`insert(table_of(Model))` is a plain
    INSERT, not the ORM's bulk insert). DeclarativeBase types `__table__` as any FromClause,
    since a class may map a join or a subquery; every model here maps one Table."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} maps {table!r}, not a Table")
    return table


def affected_rows(db: Session, statement: Executable, parameters: Mapping[str, Any] | None = None) -> int:
    """Run an UPDATE or DELETE and return how many rows it matched (the conditional UPDATEs
    read it to know whether they won). `Session.execute` is typed to return a Result; for a
    DML statement without RETURNING it is a CursorResult, which carries `rowcount`
    (SQLAlchemy's docs: "Getting Affected Row Count from UPDATE, DELETE")."""
    return cast(CursorResult[Any], db.execute(statement, parameters)).rowcount
