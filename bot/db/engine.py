"""Engine and session setup for SQLite (embedded default) and PostgreSQL (production)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` (Heroku style) mean psycopg 3 here."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


#: Execution option marking a transaction that only reads (see `reading()`).
READ_ONLY = "impersonation_read_only"


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and starts read transactions that
    # later fail to upgrade ("database is locked"). Take control of BEGIN as the SQLAlchemy
    # docs recommend ("Serializable isolation / Savepoints / Transactional DDL" for pysqlite)
    # and start every writing transaction with BEGIN IMMEDIATE, so writers queue instead of
    # failing, and the audit chain head is read and written under one lock.
    #
    # Writers of one process also queue on a Python lock before BEGIN IMMEDIATE: SQLite's
    # busy handler waits by sleeping (1, 2, 5 … 100 ms), so many threads contending for the
    # file lock make long tails; with the lock, at most one writer per process waits on the
    # file. Read-only transactions (`reading()`) use a plain deferred BEGIN: in WAL mode they
    # see a consistent snapshot and never block or wait for writers.
    writer_lock = threading.RLock()  # re-entrant: a nested session in one thread fails as before, never hangs

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        writer_lock.acquire()
        conn.info["holds_writer_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn) -> None:
        if conn.info.pop("holds_writer_lock", False):
            writer_lock.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for a transaction that only reads. On SQLite it neither takes nor waits for
    the write lock; on PostgreSQL the transaction is READ ONLY, so a mistaken write fails."""
    with factory() as session:
        connection = session.connection(execution_options={READ_ONLY: True})
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        yield session


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session
