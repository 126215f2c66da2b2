"""Stores of hand-off `jti`s already accepted (a copied form post must not open a second
session) and of sessions ended by a push (webhook or the End button).

`add(jti, until)` must be atomic: True exactly once per jti. The in-memory store serves one
process; a product with several workers or hosts needs a shared one: `SqliteJtiStore` here
(one host), or the same two operations on its database — a table with a primary key on
`jti` and `INSERT`, treating the unique violation as "seen" — or Redis:
`SET impersonation:jti:<jti> 1 NX EXAT <until>` (seen when it answers nil) and
`SET impersonation:ended:<sid> 1 EXAT <until>` / `EXISTS`.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from typing import Protocol


class JtiStore(Protocol):
    def add(self, jti: str, until: float, *, now: float | None = None) -> bool: ...
    def mark_ended(self, session_id: str, until: float) -> None: ...
    def is_ended(self, session_id: str) -> bool: ...


class MemoryJtiStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jtis: dict[str, float] = {}
        self._ended: dict[str, float] = {}

    def add(self, jti: str, until: float, *, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            for table in (self._jtis, self._ended):
                for key in [k for k, v in table.items() if v < now]:
                    del table[key]
            if jti in self._jtis:
                return False
            self._jtis[jti] = until
            return True

    def mark_ended(self, session_id: str, until: float) -> None:
        with self._lock:
            self._ended[session_id] = until

    def is_ended(self, session_id: str) -> bool:
        return session_id in self._ended


class SqliteJtiStore:
    """Shared by every process on one host through one SQLite file (WAL mode)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS impersonation_jti (jti TEXT PRIMARY KEY, until REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS impersonation_ended (session_id TEXT PRIMARY KEY, until REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def add(self, jti: str, until: float, *, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        db = self._connect()
        db.execute("DELETE FROM impersonation_jti WHERE until < ?", (now,))
        try:
            db.execute("INSERT INTO impersonation_jti (jti, until) VALUES (?, ?)", (jti, until))
        except sqlite3.IntegrityError:  # the primary key: another request accepted it first
            return False
        return True

    def mark_ended(self, session_id: str, until: float) -> None:
        self._connect().execute(
            "INSERT INTO impersonation_ended (session_id, until) VALUES (?, ?) ON CONFLICT (session_id) DO NOTHING", (session_id, until)
        )

    def is_ended(self, session_id: str) -> bool:
        row = self._connect().execute("SELECT 1 FROM impersonation_ended WHERE session_id = ?", (session_id,)).fetchone()
        return row is not None
