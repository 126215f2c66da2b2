"""bot/db/engine.py: SQLite's connection settings, and when PostgreSQL connections are pinged."""
from __future__ import annotations

import pytest
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.db.engine import PING_AFTER_IDLE_SECONDS, SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES, make_engine, make_session_factory, reading
from tests.conftest import BACKENDS, POSTGRES_URL


def test_every_sqlite_connection_gets_the_app_s_settings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30000
            assert pragma("synchronous") == 1  # NORMAL: durable at checkpoints, safe with WAL
            assert pragma("mmap_size") == SQLITE_MMAP_BYTES
            assert pragma("cache_size") == -SQLITE_CACHE_KIB
    finally:
        engine.dispose()


# --- PostgreSQL: pooled connections are pinged only after sitting idle ------------------

postgresql_only = pytest.mark.skipif("postgresql" not in BACKENDS, reason="TEST_DATABASES excludes postgresql")


@pytest.fixture
def pg_engine(postgres_admin, monkeypatch):
    engine = make_engine(POSTGRES_URL, pool_size=1, max_overflow=0)
    pings = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    yield engine, pings
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def terminate(postgres_admin, pid: int) -> None:
    with postgres_admin.begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


@postgresql_only
def test_a_connection_back_in_use_within_the_window_is_not_pinged(pg_engine):
    engine, pings = pg_engine
    with freeze_time("2026-11-25 12:00:00") as clock:
        first = backend_pid(engine)  # a new connection has just proved itself
        clock.tick(PING_AFTER_IDLE_SECONDS / 2)
        assert backend_pid(engine) == first and pings == []
        clock.tick(PING_AFTER_IDLE_SECONDS * 2)
        assert backend_pid(engine) == first and pings == [1]


@postgresql_only
def test_a_connection_that_died_while_idle_is_replaced_before_it_is_used(pg_engine, postgres_admin):
    engine, pings = pg_engine
    with freeze_time("2026-11-25 12:00:00") as clock:
        first = backend_pid(engine)
        terminate(postgres_admin, first)
        clock.tick(PING_AFTER_IDLE_SECONDS * 2)
        assert backend_pid(engine) != first and pings == [1]


@postgresql_only
def test_a_connection_that_died_within_the_window_fails_once_then_the_pool_reconnects(pg_engine, postgres_admin):
    # The trade-off of not pinging a connection used moments ago (bot/db/engine.py).
    engine, _ = pg_engine
    with freeze_time("2026-11-25 12:00:00"):
        first = backend_pid(engine)
        terminate(postgres_admin, first)
        with pytest.raises(DBAPIError) as failure:
            backend_pid(engine)
        assert failure.value.connection_invalidated
        assert backend_pid(engine) != first


@postgresql_only
def test_a_reading_transaction_refuses_writes_and_leaves_the_connection_writable(pg_engine):
    engine, pings = pg_engine
    sessions = make_session_factory(engine)
    with freeze_time("2026-11-25 12:00:00") as clock:
        for idle in (0, PING_AFTER_IDLE_SECONDS * 2):  # handed out as is, then after a ping
            clock.tick(idle)
            with reading(sessions) as db:
                assert db.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
                with pytest.raises(DBAPIError, match="read-only transaction"):
                    db.execute(text("CREATE TEMPORARY TABLE scratch (n integer)"))
            with sessions() as db, db.begin():  # the same pooled connection
                assert db.execute(text("SHOW transaction_read_only")).scalar_one() == "off"
        assert pings == [1]
