"""SQLite connection settings (bot/db/engine.py): every connection the app opens gets them."""
from __future__ import annotations

from sqlalchemy import text

from bot.db.engine import SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES, make_engine


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
