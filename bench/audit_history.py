"""A generated history at the audit goals' size, for bench/audit_bench.py: 10,000 accounts
(5 customer users each), 1,000,000 sessions with their requests (a sixth gated and approved),
and 10,000,000 audit events over two years forming one valid hash chain.

Each session's events follow the app's own order: `request.created`, `approval.granted` when
gated, `request.granted`, `link.issued`, `session.redeemed`, the product's `action.recorded`
write actions (the session id as their context), and how it ended. Events are emitted in time
order (a small heap across overlapping sessions), chained with bot.domain.audit.encode_stored
over canonical details text, so `audit verify` accepts the chain with the reference encoder.
Account activity is skewed (Zipf, s = 0.7): the busiest account has about 2 % of all sessions.

Speed: rows are written in batches (PostgreSQL COPY, SQLite executemany on one connection in
one transaction) with the secondary indexes dropped and rebuilt afterwards from their own
definitions (sorting once beats 10 million random B-tree inserts). Inserts do not touch the
audit table's triggers, which refuse only UPDATE, DELETE and TRUNCATE. SQLite loads with
foreign-key checks off (the rows are consistent by construction); PostgreSQL checks them.

Generated databases are kept between runs, named by generator version, schema revision and
scale: a SQLite file under BENCH_CACHE_DIR (default: the temp dir), a PostgreSQL schema. A
database is marked complete only at the very end, so an interrupted build is rebuilt.
"""
from __future__ import annotations

import hashlib
import heapq
import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.common import POSTGRES_URL
from bot.db.engine import make_engine
from bot.db.migrate import upgrade_head
from bot.domain.audit import CURRENT_ENCODING, GENESIS_HASH, encode_stored

#: bump when the generated data changes shape
VERSION = 1
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
START = END - timedelta(days=730)
ACCOUNTS, SESSIONS, EVENTS = 10_000, 1_000_000, 10_000_000
USERS_PER_ACCOUNT = 5
AGENTS = 400
MANAGERS = 12
ZIPF_S = 0.7
SEED = 9
#: sessions generated between two writes
BATCH_SESSIONS = 20_000
CACHE_DIR = Path(os.environ.get("BENCH_CACHE_DIR", tempfile.gettempdir())) / "impbot-audit-bench"

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: no session's events start earlier than this before it does (approval wait + hand-off)
_LEAD_US = 30 * 60 * _US

EVENT_COLUMNS = (
    "seq", "occurred_at", "type", "actor_slack_id", "actor_email", "actor_role", "account",
    "customer_user", "request_id", "session_id", "details", "prev_hash", "hash", "encoding",
)
REQUEST_COLUMNS = (
    "id", "team_id", "agent_slack_id", "agent_email", "agent_tz", "agent_role", "account_id",
    "customer_user_id", "reason", "ticket", "duration_minutes", "scope", "state", "gated_by",
    "created_at", "updated_at", "approvals_required", "break_glass",
)
SESSION_COLUMNS = (
    "id", "request_id", "account_id", "agent_slack_id", "started_at", "expires_at", "ended_at",
    "end_reason", "ended_by", "handoff_jti",
)
APPROVAL_COLUMNS = ("subject_id", "approver_slack_id", "approver_identity", "decision", "reason", "decided_at")
ACCOUNT_COLUMNS = ("id", "external_id", "name", "created_at", "updated_at")
USER_COLUMNS = ("id", "account_id", "external_id", "email", "name", "protected", "created_at", "updated_at")
#: tables whose secondary indexes are dropped for the load and rebuilt after it
BULK_TABLES = ("audit_events", "requests", "sessions", "approvals")


@dataclass(frozen=True)
class Scale:
    """The issue's sizes times `factor` (BENCH_AUDIT_SCALE; 1 = the full size)."""

    factor: float

    @classmethod
    def from_env(cls) -> Scale:
        return cls(float(os.environ.get("BENCH_AUDIT_SCALE", "1")))

    @property
    def accounts(self) -> int:
        # BENCH_AUDIT_ACCOUNTS: fewer accounts at a small scale give the busiest account the
        # full size's number of sessions (for developing the log query's plan)
        override = os.environ.get("BENCH_AUDIT_ACCOUNTS")
        return int(override) if override else max(30, round(ACCOUNTS * self.factor))

    @property
    def sessions(self) -> int:
        return max(500, round(SESSIONS * self.factor))

    @property
    def events(self) -> int:
        return max(self.sessions * 8, round(EVENTS * self.factor))

    @property
    def key(self) -> str:
        return f"v{VERSION}_{self.accounts}a_{self.sessions}s_{self.events}e"


def account_name(number: int) -> str:
    return f"acct-{number:05d}"


# ------------------------------------------------------------------------------ time text


class _Clock:
    """Microseconds since the epoch → 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), the text SQLAlchemy
    stores in SQLite; the date part is cached (strftime per event would cost more)."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def text(self, us: int) -> str:
        day, rem = divmod(us, 86_400 * _US)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
        seconds, micro = divmod(rem, _US)
        hours, seconds = divmod(seconds, 3600)
        minutes, seconds = divmod(seconds, 60)
        return f"{prefix} {hours:02d}:{minutes:02d}:{seconds:02d}.{micro:06d}"


def _us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


# ------------------------------------------------------------------------------ sinks


def _timed(step: Callable[[], object], label: str) -> None:
    """Run one slow loading step and say how long it took (a full-size build takes minutes)."""
    began = time.perf_counter()
    step()
    print(f"[audit history] {time.perf_counter() - began:6.1f} s  {' '.join(label.split())[:90]}", flush=True)


class Sink:
    """Where generated rows go. Times arrive as SQLite's text; None is NULL."""

    def begin(self) -> None: ...
    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None: ...
    def finish(self, head_seq: int, head_hash: str) -> None: ...


class SQLiteSink(Sink):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        # No journal while loading: a failed build is thrown away whole (the `.partial` file),
        # and a 10M-row transaction would otherwise pass through a WAL file as large as the data.
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2000000", "temp_store=MEMORY", "foreign_keys=OFF"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.indexes: list[tuple[str, str]] = []

    def begin(self) -> None:
        placeholders = ",".join("?" * len(BULK_TABLES))
        self.indexes = self.conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({placeholders})",
            BULK_TABLES,
        ).fetchall()
        for name, _ in self.indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        self.conn.execute("BEGIN")

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        self.conn.executemany(
            f"INSERT INTO {table} ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})", rows
        )

    def finish(self, head_seq: int, head_hash: str) -> None:
        self.conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (head_seq, head_hash))
        self.conn.execute("COMMIT")
        for _, sql in self.indexes:
            _timed(lambda: self.conn.execute(sql), sql)
        # sampled statistics (SQLite ≥ 3.32): a full ANALYZE reads every index of 10M rows
        self.conn.execute("PRAGMA analysis_limit = 2000")
        _timed(lambda: self.conn.execute("ANALYZE"), "ANALYZE")
        self.conn.execute("PRAGMA journal_mode=WAL")  # as bot/db/engine.py runs it
        self.conn.close()


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)


class PostgresSink(Sink):
    """COPY … FROM STDIN in text format. Generated values hold no tab, newline or backslash,
    so only NULL and booleans need spelling; times get their '+00'."""

    def __init__(self, url: str) -> None:
        import psycopg

        parsed = make_url(url)
        options = parsed.query.get("options")
        self.conn = psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
            dbname=parsed.database, options=options if isinstance(options, str) else None,
        )
        self.conn.execute("SET maintenance_work_mem = '512MB'")
        self.restore: list[str] = []
        self.time_columns: dict[str, set[int]] = {}
        # COPYs run on one background thread, in order (requests before the sessions that
        # refer to them), so generating the next batch overlaps the server loading this one
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Future[None]] = []

    def _submit(self, job: Callable[..., None], *args: object) -> None:
        while len(self.pending) >= 3:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(job, *args))

    def _drain(self) -> None:
        while self.pending:
            self.pending.pop(0).result()
        self.pool.shutdown()

    def begin(self) -> None:
        tables = list(BULK_TABLES)
        constraints = self.conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "WHERE c.contype = 'u' AND c.conrelid::regclass::text = ANY(%s)",
            (tables,),
        ).fetchall()
        indexes = self.conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            (tables,),
        ).fetchall()
        for table, name, definition in constraints:
            self.conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            self.restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in indexes:
            self.conn.execute(f"DROP INDEX {name}")
            self.restore.append(definition)

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if rows:
            self._submit(self._copy, table, columns, list(rows))

    def _copy(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        times = self.time_columns.get(table)
        if times is None:
            times = self.time_columns[table] = {
                i for i, c in enumerate(columns) if c.endswith("_at") or c in ("created_at", "updated_at")
            }
        lines = []
        for row in rows:
            lines.append(
                "\t".join(
                    (_copy_text(v) + "+00" if i in times and v is not None else _copy_text(v)) for i, v in enumerate(row)
                )
            )
        with self.conn.cursor().copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")

    def write_events(self, rows: list[tuple]) -> None:
        if rows:
            self._submit(self._copy_events, list(rows))

    def _copy_events(self, rows: list[tuple]) -> None:
        # the hot table: times are column 1, the encoding (an int) last, the rest strings or NULL
        lines = [
            "\t".join((str(r[0]), r[1] + "+00", *("\\N" if v is None else v for v in r[2:-1]), str(r[-1])))
            for r in rows
        ]
        with self.conn.cursor().copy(f"COPY audit_events ({','.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")

    def finish(self, head_seq: int, head_hash: str) -> None:
        self._drain()
        self.conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (head_seq, head_hash))
        self.conn.commit()
        for statement in self.restore:
            _timed(lambda: self.conn.execute(statement), statement)
            self.conn.commit()
        self.conn.autocommit = True
        # VACUUM sets the visibility map, so counts over the new indexes read the index alone
        # (this schema's tables only: a bare VACUUM would visit every schema in the database)
        tables = ", ".join((*BULK_TABLES, "accounts", "customer_users", "audit_head"))
        _timed(lambda: self.conn.execute(f"VACUUM ANALYZE {tables}"), f"VACUUM ANALYZE {tables}")
        self.conn.close()


# ------------------------------------------------------------------------------ the history


@dataclass(frozen=True)
class Generated:
    accounts: int
    sessions: int
    events: int
    head_hash: str


def generate(scale: Scale, sinks: Sequence[Sink]) -> Generated:
    rng = random.Random(SEED)
    clock = _Clock()
    for sink in sinks:
        sink.begin()
    start_text = clock.text(_us(START))

    accounts = [(n, account_name(n), f"Account {n}", start_text, start_text) for n in range(1, scale.accounts + 1)]
    users = [
        ((n - 1) * USERS_PER_ACCOUNT + u, n, f"user-{n:05d}-{u}", f"user{u}@acct{n}.example", f"User {u} of Account {n}", False, start_text, start_text)
        for n in range(1, scale.accounts + 1)
        for u in range(1, USERS_PER_ACCOUNT + 1)
    ]
    for sink in sinks:
        sink.write("accounts", ACCOUNT_COLUMNS, accounts)
        sink.write("customer_users", USER_COLUMNS, users)

    count = scale.sessions
    cumulative, total = [], 0.0
    for n in range(1, scale.accounts + 1):
        total += 1.0 / n**ZIPF_S
        cumulative.append(total)
    picks = rng.choices(range(1, scale.accounts + 1), cum_weights=cumulative, k=count)
    first_us, last_us = _us(START) + _LEAD_US, _us(END) - 3600 * _US
    starts = sorted(rng.randrange(first_us, last_us) for _ in range(count))
    gated = [rng.random() < 0.16 for _ in range(count)]
    # every session has 5 events (6 when gated); the rest of the budget is write actions
    base = 5 * count + sum(gated)
    actions = [0] * count
    for index in rng.choices(range(count), k=max(0, scale.events - base)):
        actions[index] += 1

    heap: list[tuple] = []
    tiebreak = 0
    seq, prev = 0, GENESIS_HASH
    events: list[tuple] = []
    requests: list[tuple] = []
    session_rows: list[tuple] = []
    approvals: list[tuple] = []

    def emit_until(limit_us: int) -> None:
        nonlocal seq, prev
        while heap and heap[0][0] < limit_us:
            us, _, type_, slack_id, email, role, account, user, request_id, session_id, details = heapq.heappop(heap)
            seq += 1
            stored = clock.text(us)
            canonical = stored[:10] + "T" + stored[11:] + "Z"
            digest = hashlib.sha256(
                encode_stored(
                    seq=seq, occurred_at=canonical, type=type_, actor_slack_id=slack_id, actor_email=email,
                    actor_role=role, account=account, customer_user=user, request_id=request_id,
                    session_id=session_id, details=details, prev_hash=prev, encoding=CURRENT_ENCODING,
                )
            ).hexdigest()
            events.append(
                (seq, stored, type_, slack_id, email, role, account, user, request_id, session_id, details, prev, digest, CURRENT_ENCODING.value)
            )
            prev = digest

    def flush() -> None:
        for sink in sinks:
            sink.write("requests", REQUEST_COLUMNS, requests)
            sink.write("sessions", SESSION_COLUMNS, session_rows)
            sink.write("approvals", APPROVAL_COLUMNS, approvals)
            if isinstance(sink, PostgresSink):
                sink.write_events(events)
            else:
                sink.write("audit_events", EVENT_COLUMNS, events)
        for rows in (requests, session_rows, approvals, events):
            rows.clear()

    def push(us: int, *fields: object) -> None:
        nonlocal tiebreak
        tiebreak += 1
        heapq.heappush(heap, (us, tiebreak, *fields))

    for i in range(count):
        start = starts[i]
        emit_until(start - _LEAD_US)
        account_number = picks[i]
        account = account_name(account_number)
        user_number = rng.randint(1, USERS_PER_ACCOUNT)
        user_id = (account_number - 1) * USERS_PER_ACCOUNT + user_number
        user = f"user-{account_number:05d}-{user_number}"
        agent_number = min(int(rng.paretovariate(1.2)), AGENTS)
        agent = f"UAGENT{agent_number:04d}"
        email = f"agent{agent_number}@corp.example"
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        jti = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        minutes = rng.randint(3, 30)
        outcome = rng.choices(("ended", "expired", "revoked"), (6, 3, 1))[0]
        end_us = start + (30 * 60 * _US if outcome == "expired" else minutes * 60 * _US)
        granted_us = start - 59 * _US
        created_us = granted_us - _US - (rng.randint(30, 1500) * _US if gated[i] else 0)
        ticket = f"SUP-{i + 1}"
        break_glass = not gated[i] and rng.random() < 0.003

        requests.append(
            (request_id, "T0BENCH", agent, email, "Europe/Paris", "support", account_number, user_id,
             "customer ticket about billing", ticket, 30, "read_only", outcome, "sensitive" if gated[i] else "",
             clock.text(created_us), clock.text(end_us), 1 if gated[i] else 0, break_glass)
        )
        session_rows.append(
            (session_id, request_id, account_number, agent, clock.text(start), clock.text(start + 30 * 60 * _US),
             clock.text(end_us), outcome, agent if outcome == "ended" else None, jti)
        )
        push(created_us, "request.created", agent, email, "support", account, user, request_id, None,
             '{"duration_minutes":30,"reason":"customer ticket about billing","scope":"read_only","ticket":"' + ticket + '"}')
        if gated[i]:
            manager = rng.randint(1, MANAGERS)
            approvals.append((request_id, f"UMANAGER{manager:02d}", f"email:manager{manager}@corp.example", "approve", None, clock.text(granted_us - _US // 2)))
            push(granted_us - _US // 2, "approval.granted", f"UMANAGER{manager:02d}", f"manager{manager}@corp.example", "manager",
                 account, user, request_id, None, '{"approvals":1,"required":1}')
        push(granted_us, "request.granted", None, None, "policy", account, user, request_id, None,
             '{"break_glass":' + ("true" if break_glass else "false") + ',"gated_by":"' + ("sensitive" if gated[i] else "") + '"}')
        push(granted_us + 1, "link.issued", None, None, "policy", account, user, request_id, None, '{"expires_in_seconds":300}')
        push(start, "session.redeemed", agent, email, "support", account, user, request_id, session_id, '{"scope":"read_only"}')
        span = end_us - start
        for n in range(actions[i]):
            push(start + 1 + rng.randrange(span - 2), "action.recorded", agent, email, "support", account, user, request_id,
                 session_id, '{"action":"invoice.updated","product":"billing","target":"inv-' + str(i) + "-" + str(n) + '"}')
        ender = {"ended": (agent, email, "support"), "expired": (None, None, "clock"), "revoked": ("USECURITY1", "security1@corp.example", "security")}[outcome]
        push(end_us, f"session.{outcome}", *ender, account, user, request_id, session_id, '{"minutes":' + str(minutes) + "}")
        if len(session_rows) >= BATCH_SESSIONS:
            flush()
    emit_until(2**62)
    flush()
    for sink in sinks:
        sink.finish(seq, prev)
    return Generated(scale.accounts, count, seq, prev)


# ------------------------------------------------------------------------------ the cache


def _sqlite_path(scale: Scale, revision: str) -> Path:
    return CACHE_DIR / f"history_{scale.key}_{revision}.db"


def _schema(scale: Scale, revision: str) -> str:
    return f"bench_audit_{scale.key}_{revision}".lower()


def _pg_url(schema: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from bot.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    # and the migrations' text: a revision edited during development changes the key too
    folder = Path(__file__).resolve().parents[1] / "migrations" / "versions"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*.py")))).hexdigest()[:8]
    return f"{(head or 'none').split('_')[0]}_{digest}"


def history_databases(backends: Iterable[str], scale: Scale) -> dict[str, str]:
    """A database URL per backend holding the generated history, built when not cached."""
    revision = head_revision()
    urls: dict[str, str] = {}
    sinks: list[Sink] = []
    finishers = []
    for backend in backends:
        if backend == "sqlite":
            path = _sqlite_path(scale, revision)
            urls[backend] = f"sqlite:///{path}"
            if path.exists():
                continue
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm"), Path(f"{partial}.writelock")):
                leftover.unlink(missing_ok=True)
            engine = make_engine(f"sqlite:///{partial}")
            upgrade_head(engine)
            engine.dispose()
            sinks.append(SQLiteSink(partial))
            finishers.append(lambda partial=partial, path=path: (partial.rename(path), Path(f"{partial}.writelock").unlink(missing_ok=True)))
        elif backend == "postgresql":
            schema = _schema(scale, revision)
            urls[backend] = _pg_url(schema)
            admin = make_engine(POSTGRES_URL, pool_size=1, max_overflow=0)
            with admin.begin() as conn:
                done = conn.execute(
                    text("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = :s"), {"s": schema}
                ).scalar_one_or_none()
                if done == "complete":
                    admin.dispose()
                    continue
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            engine = make_engine(urls[backend], pool_size=1, max_overflow=0)
            upgrade_head(engine)
            engine.dispose()
            sinks.append(PostgresSink(urls[backend]))

            def mark(admin=admin, schema=schema) -> None:
                with admin.begin() as conn:
                    conn.execute(text(f"COMMENT ON SCHEMA \"{schema}\" IS 'complete'"))
                admin.dispose()

            finishers.append(mark)
        else:
            raise ValueError(backend)
    if sinks:
        generate(scale, sinks)
        for finish in finishers:
            finish()
    return urls
