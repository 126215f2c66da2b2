"""SQL statements per request on the hot paths, counted over real HTTP through the whole app:
a regression guard, not a timing assertion. A change that makes a path run more statements
fails here until the table below is raised on purpose (and said why in its commit); one that
saves statements fails until the table is lowered, so the guard stays tight.

Only statements run by the thread that answers the request are counted: what a change owes
Slack is sent afterwards by the background deliverer (bot/web/background.py), and the
scheduler's jobs run elsewhere too."""
from __future__ import annotations

import re
import threading
from html import unescape

import pytest
import requests
from sqlalchemy import event, select

from bot.db.models import ImpersonationRequest
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.e2e.conftest import link_in
from tests.slack.listeners.flow import request_state
from tests.slack.signed import block_action, slash_command, view_submission

#: statements each path runs, per backend, transaction starts included (SQLite's BEGIN
#: IMMEDIATE is a statement the app sends; PostgreSQL appends an audit event and moves the
#: chain's head in one statement where SQLite needs three). An event about a customer user
#: also flushes the personal values it refers to (one INSERT into personal_values per flush,
#: bot/domain/personal.py): two on a grant and on a deciding approval, one on a redemption.
EXPECTED = {
    "slash command ack": {"sqlite": 4, "postgresql": 2},
    "grant (modal submitted)": {"sqlite": 31, "postgresql": 25},
    "landing page": {"sqlite": 3, "postgresql": 2},
    "redemption": {"sqlite": 15, "postgresql": 10},
    "approve click (deciding)": {"sqlite": 17, "postgresql": 12},
}


class StatementLog:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, _conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if "process_request_thread" in threading.current_thread().name:  # werkzeug's request threads
            with self._lock:
                self.statements.append(" ".join(statement.split())[:160])

    def take(self) -> list[str]:
        with self._lock:
            taken, self.statements = self.statements, []
        return taken


@pytest.fixture
def counted(running_bot):
    log = StatementLog()
    engine = running_bot.container.engine
    event.listen(engine, "before_cursor_execute", log)
    try:
        yield running_bot, log
    finally:
        event.remove(engine, "before_cursor_execute", log)


class Counts:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.ran: dict[str, list[str]] = {}

    def __call__(self, path: str, statements: list[str]) -> None:
        self.ran[path] = statements

    def check(self) -> None:
        counted = {path: len(statements) for path, statements in self.ran.items()}
        expected = {path: EXPECTED[path][self.backend] for path in self.ran}
        shown = "\n".join(f"{path}: {len(st)}\n  " + "\n  ".join(st) for path, st in self.ran.items() if len(st) != expected[path])
        assert counted == expected, f"SQL statements per path on {self.backend} differ from the table:\n{shown}"


def backend_of(bot) -> str:
    return bot.container.engine.dialect.name


def test_statements_per_request_on_the_hot_paths(counted, session_factory):
    bot, log = counted
    check = Counts(backend_of(bot))
    warm = bot.send(slash_command("acme", trigger_id=bot.fake.issue_trigger_id()))  # first request: caches (policy, statements) warm up
    assert warm.status == 200
    bot.delivered()
    log.take()

    assert bot.send(slash_command("acme", trigger_id=bot.fake.issue_trigger_id())).status == 200
    check("slash command ack", log.take())

    granted = bot.send(view_submission(request_state(), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    assert granted.status == 200 and "errors" not in granted.body
    check("grant (modal submitted)", log.take())
    bot.delivered()
    (dm,) = [c for c in bot.fake.calls_to("chat.postMessage") if c.args["channel"] == "UAGENT1"]
    link = bot.local(link_in(dm.args["blocks"]))
    log.take()

    browser = requests.Session()
    page = browser.get(link, timeout=10)
    assert page.status_code == 200
    check("landing page", log.take())
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert browser.post(link, data={"csrf": unescape(csrf)}, timeout=10).status_code == 200
    check("redemption", log.take())
    bot.delivered()
    log.take()

    pending = bot.send(view_submission(request_state(account="globex", user="u-carol"), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    assert pending.status == 200
    bot.delivered()
    with session_factory() as db:
        request_id = db.execute(select(ImpersonationRequest.id).where(ImpersonationRequest.state == "pending")).scalar_one()
    (approver_dm,) = [c for c in bot.fake.calls_to("chat.postMessage") if c.args["channel"] == "UMANAGER1"]
    log.take()
    click = block_action(
        ActionId.APPROVE_REQUEST.value, request_id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id="UMANAGER1",
        channel=approver_dm.response["channel"], message_ts=approver_dm.response["ts"],
    )
    assert bot.send(click).status == 200
    check("approve click (deciding)", log.take())
    bot.delivered()
    with session_factory() as db:
        assert db.get(ImpersonationRequest, request_id).state == "granted"
    check.check()
