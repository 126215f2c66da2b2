"""Engine and session setup for SQLite (embedded default) and PostgreSQL (production)."""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, exc
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
        _configure_sqlite(engine, make_url(url).database)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_idle_connections(engine, PING_AFTER_IDLE_SECONDS)
    return engine


#: a pooled PostgreSQL connection back in use within this long of its last use is not pinged
PING_AFTER_IDLE_SECONDS = 0.5
_LAST_USED = "impersonation_last_used"


def _ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Check a pooled connection is alive before handing it out, unless it was last used
    under `idle_seconds` ago.

    SQLAlchemy's `pool_pre_ping` pings at every checkout: a round trip and a statement for
    the server before every transaction, which under load cost PostgreSQL appends about a
    third of their rate (bench/audit_bench.py). A connection that just finished a
    transaction is as good as a ping that it is alive, so — as HikariCP's
    `aliveBypassWindowMs` (500 ms) does — only a connection idle for longer is pinged. A
    connection that dies inside that window fails its next statement; SQLAlchemy then marks
    it and every older pooled connection invalid ("Dealing with Disconnects", optimistic
    handling), so one request fails and the pool reconnects. A failed ping raises
    DisconnectionError, upon which the pool discards the connection and hands out a fresh
    one (PoolEvents.checkout)."""

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection, record):
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record):
        if dbapi_connection is not None:
            record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        last_used = record.info.get(_LAST_USED)
        if last_used is not None and time.monotonic() - last_used < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # the statement `pool_pre_ping` sends
            # and hand the connection out idle, as the pool keeps it: a transaction the ping
            # began would take the caller's BEGIN (and its READ ONLY, see `reading()`)
            dbapi_connection.rollback()
        except Exception as error:
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


#: SQLite memory-mapped I/O window and page cache per connection (see _configure_sqlite)
SQLITE_MMAP_BYTES = 256 * 1024 * 1024
SQLITE_CACHE_KIB = 32 * 1024

#: Execution option marking a transaction that only reads (see `reading()`).
READ_ONLY = "impersonation_read_only"


class _WriterGate:
    """Lets one writing transaction at a time reach SQLite's BEGIN IMMEDIATE.

    SQLite's busy handler waits for the file lock by sleeping (1, 2, 5 … 100 ms) and polling,
    so under load a waiter can sleep through many short transactions of another process and
    see tails of a second or more (measured: bench/http_bench.py). Queuing first on a thread
    lock (within a process) and on `flock` of a lock file beside the database (across
    processes, e.g. gunicorn workers) means a writer is woken the moment the previous one
    finishes. Re-entrant per thread, so a nested session fails as it would without the gate
    (busy timeout) instead of hanging.
    """

    def __init__(self, database: str | None) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._path = f"{database}.writelock" if database and database != ":memory:" else None
        self._fd: int | None = None
        self._pid = 0

    def acquire(self) -> None:
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1 and self._path:
            if self._fd is None or self._pid != os.getpid():  # never share an fd across fork
                self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


def _configure_sqlite(engine: Engine, database: str | None) -> None:
    # pysqlite's own transaction handling defers BEGIN and starts read transactions that
    # later fail to upgrade ("database is locked"). Take control of BEGIN as the SQLAlchemy
    # docs recommend ("Serializable isolation / Savepoints / Transactional DDL" for pysqlite)
    # and start every writing transaction with BEGIN IMMEDIATE, so writers queue instead of
    # failing, and the audit chain head is read and written under one lock.
    #
    # Writers queue on a _WriterGate before BEGIN IMMEDIATE. Read-only transactions
    # (`reading()`) use a plain deferred BEGIN: in WAL mode they see a consistent snapshot
    # and never block or wait for writers.
    writer_lock = _WriterGate(database)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Reads through memory-mapped I/O and a 32 MiB page cache per connection instead of
        # SQLite's 2 MiB default (sqlite.org/mmap.html, sqlite.org/pragma.html#pragma_cache_size):
        # the aggregate queries of the access review and the log scan tens of MiB, and each
        # page read through read() was a system call (the quarterly review over 100,000
        # sessions went from 2.1 s to 1.4 s, bench/digest_bench.py).
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
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
        # postgresql_readonly makes psycopg open the transaction with BEGIN READ ONLY, one
        # statement instead of BEGIN and SET TRANSACTION (SQLAlchemy docs, "Setting READ ONLY
        # / DEFERRABLE"); the pool resets it when the connection comes back.
        session.connection(execution_options={READ_ONLY: True, "postgresql_readonly": True})
        yield session


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session
