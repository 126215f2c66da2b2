"""Shared fixtures. Every database test runs on SQLite and on PostgreSQL.

TEST_DATABASES (default "sqlite,postgresql") picks the backends; TEST_POSTGRES_URL (default
the local server at 127.0.0.1:5432, database `test`) says where PostgreSQL is. A backend that
is asked for but unreachable FAILS the tests rather than skipping them.
Each test gets a fresh database built with Alembic `upgrade head`: a copied SQLite file, or
its own PostgreSQL schema that is dropped afterwards (the audit table refuses DELETE, so
nothing is cleaned row by row).
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.db.engine import make_engine, make_session_factory
from bot.db.migrate import upgrade_head
from bot.domain.context import DomainContext
from bot.domain.keys import load_or_create_signing_key
from bot.domain.policy import parse_policy
from bot.domain.ports import Person, StaticPeople
from tests.fakes.groups import StaticGroups

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "slack-reference"
BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",") if b.strip()]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

TEST_POLICY = """
[links]
redeem_window_minutes = 5

[requests]
reason_min_length = 10
ticket_required = true
duration_choices = [15, 30, 60, 120]

[gating]
flags = ["sensitive", "regulated", "flagged"]
approvals_required = 1
approvals_required_by_flag = { regulated = 2 }
pending_ttl_minutes = 30

[alerts]
security_channel = "CSECURITY1"
# Tests run at any hour: working hours span the whole week here, so the off-hours rule never
# fires by accident (tests/domain/test_anomalies.py sets its own hours).
business_hours = { start = "00:00", end = "24:00", days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] }

[roles.support]
members = ["UAGENT1", "UAGENT2", "@support-team"]
max_minutes = 60
scope = "assigned"

[roles.senior]
members = ["USENIOR1"]
max_minutes = 120
scope = "any"
can_read_write = true
can_request_extension = true

[roles.manager]
members = ["UMANAGER1", "UMANAGER2", "UMANAGER3"]
max_minutes = 120
scope = "any"
can_approve = true
can_read_write = true

[roles.security]
members = ["USECURITY1"]
max_minutes = 30
scope = "any"
can_impersonate = false
can_view_log = true
can_revoke = true
can_flag_accounts = true
"""


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/slack-reference, or skip the test cleanly where it is absent."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("../shared/slack-reference is not present beside the clone")
    return SHARED_REFERENCE


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_head(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_admin():
    engine = make_engine(POSTGRES_URL, pool_size=2, max_overflow=2)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure must fail loudly
        pytest.fail(
            f"PostgreSQL is required for the [postgresql] tests but is unreachable at {POSTGRES_URL}: {exc}. "
            "Start it, set TEST_POSTGRES_URL, or run with TEST_DATABASES=sqlite.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


def _database(request, tmp_path, sqlite_template: Path | None):
    """A database of its own for one test: a copy of `sqlite_template` (an empty file when
    None), or a fresh PostgreSQL schema, migrated to head unless `sqlite_template` is None."""
    backend = request.param
    if backend == "sqlite":
        path = tmp_path / "test.db"
        if sqlite_template is not None:
            shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
    elif backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        if sqlite_template is not None:
            engine = make_engine(url, pool_size=1, max_overflow=0)
            upgrade_head(engine)
            engine.dispose()
        try:
            yield url
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    else:
        raise ValueError(f"unknown backend {backend!r} in TEST_DATABASES")


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path, sqlite_template):
    yield from _database(request, tmp_path, sqlite_template)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request, tmp_path):
    """A database with no tables at all, for tests that run the migrations themselves."""
    yield from _database(request, tmp_path, None)


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url, **({} if db_url.startswith("sqlite") else {"pool_size": 20, "max_overflow": 60}))
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    return make_session_factory(engine)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    return load_or_create_signing_key(tmp_path_factory.mktemp("keys") / "key.pem", allow_create=True)


@pytest.fixture
def policy():
    return parse_policy(TEST_POLICY, source="test-policy")


@pytest.fixture
def people():
    return StaticPeople(
        {
            "UAGENT1": Person("UAGENT1", email="agent1@corp.example", tz="Europe/Paris"),
            "UAGENT2": Person("UAGENT2", email="agent2@corp.example", tz="America/New_York"),
            "USENIOR1": Person("USENIOR1", email="senior1@corp.example", tz="UTC"),
            "UMANAGER1": Person("UMANAGER1", email="manager1@corp.example", tz="UTC"),
        }
    )


@pytest.fixture
def groups():
    return StaticGroups({"support-team": {"UGROUPIE1"}})


@pytest.fixture
def ctx(session_factory, policy, signing_key, people, groups) -> DomainContext:
    return DomainContext(
        sessions=session_factory,
        policy=policy,
        signing_key=signing_key,
        public_base_url="http://bot.test",
        product_launch_url="http://product.test/impersonation/launch",
        groups=groups,
        people=people,
    )


def allow_many_open_accesses(ctx: DomainContext) -> DomainContext:
    """Turn off the policy's one-open-access rule (`[requests] one_open_access`) for a test
    whose setup needs several open grants for one agent and customer user at once."""
    ctx.policy = ctx.policy.model_copy(update={"requests": ctx.policy.requests.model_copy(update={"one_open_access": False})})
    return ctx
