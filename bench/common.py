"""Shared bench plumbing: database set-up on both backends, latency statistics, machine facts."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from bot.db.engine import make_engine
from bot.db.migrate import upgrade_head

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="impbot-bench-") as folder:
            url = f"sqlite:///{folder}/bench.db"
            engine = make_engine(url)
            upgrade_head(engine)
            engine.dispose()
            yield url
        return
    if backend != "postgresql":
        raise ValueError(backend)
    admin = make_engine(POSTGRES_URL, pool_size=1, max_overflow=0)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        upgrade_head(engine)
        engine.dispose()
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    throughput: float

    @classmethod
    def of(cls, seconds: list[float], wall: float) -> Latency:
        ordered = sorted(seconds)
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        return cls(len(ordered), cuts[49] * 1000, cuts[98] * 1000, ordered[-1] * 1000, len(ordered) / wall)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pg = "psql not found"
    import sqlite3

    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {pg}"
    )
