"""`/impersonation-log` in the domain: checking and resolving a query's options, who may
look, the summary and the sessions, paging, and the audit event of every lookup. (How the
command's text becomes options: tests/slack/test_command_text.py.)"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, text

from bot.domain import log_query
from bot.domain.log_query import (
    LogOptions,
    LogPage,
    LogQuery,
    LogRefused,
    QueryError,
    UnknownAccount,
    iter_entries,
    parse_token,
    resolve,
)
from tests.fakes.log_history import NOW, build_history, open_session, record_actions, set_acme_sensitive
from tests.slack.conftest import audit_events
from tests.conftest import allow_many_open_accesses

UTC = timezone.utc
#: sessions per page, as a face would ask for them
PAGE_SIZE = 10


def look_up(ctx, viewer: str, asked: LogOptions | QueryError, *, text: str = "", now=NOW):
    return log_query.look_up(ctx, viewer, asked, text=text, page_size=PAGE_SIZE, now=now)


def look_up_page(ctx, viewer: str, token: object, *, now=NOW):
    return log_query.look_up_page(ctx, viewer, token, page_size=PAGE_SIZE, now=now)


# --- the query's options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (LogOptions("acme"), LogQuery("acme", NOW - timedelta(days=90), NOW, None, "the last 90 days")),
        (LogOptions("acme", since="7d"), LogQuery("acme", NOW - timedelta(days=7), NOW, None, "the last 7 days")),
        (
            LogOptions("acme", agent="U0AGENT1", since="2026-01-01", until="2026-01-31"),
            LogQuery("acme", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "U0AGENT1"),
        ),
        (LogOptions("acme.eu", agent="W0GRID1"), LogQuery("acme.eu", NOW - timedelta(days=90), NOW, "W0GRID1", "the last 90 days")),
        (LogOptions("acme", agent="U0AGENT1", until="2099-01-01"), LogQuery("acme", NOW - timedelta(days=90), NOW, "U0AGENT1")),
    ],
)
def test_options_that_resolve(options, expected):
    assert resolve(options, now=NOW) == expected


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (LogOptions(None), "say which account"),
        (LogOptions("<!channel>"), "is not an account id"),
        (LogOptions("acme", agent="bob"), "agent: must mention a person"),
        (LogOptions("acme", agent="<@U0AGENT1>"), "agent: must mention a person"),  # an id, not Slack's markup
        (LogOptions("acme", since="yesterday"), "since: takes a number of days"),
        (LogOptions("acme", since="2026-02-30"), "since: takes a number of days"),
        (LogOptions("acme", since="99999d"), "since: takes a number of days"),
        (LogOptions("acme", until="x"), "until: takes a number of days"),
        (LogOptions("acme", since="2026-03-01", until="2026-02-01"), "since: must be before until:"),
    ],
)
def test_bad_options_say_what_is_wrong(options, problem):
    result = resolve(options, now=NOW)
    assert isinstance(result, QueryError)
    assert problem in result.problem


def test_a_period_of_dates_reads_as_dates():
    query = resolve(LogOptions("acme", since="2026-01-01", until="2026-01-31"), now=NOW)
    assert query.period == "between 1 Jan 2026 and 31 Jan 2026"


def test_a_token_carries_only_ids_times_and_a_page_and_round_trips():
    query = resolve(LogOptions("acme", agent="U0AGENT1", since="2026-01-01"), now=NOW)
    token = query.token(2)
    assert token == "l1|acme|U0AGENT1|20260101T000000000000Z|20260310T120000000000Z|2"
    parsed, page = parse_token(token)
    assert (parsed.account, parsed.agent, parsed.since, parsed.until, page) == (query.account, query.agent, query.since, query.until, 2)


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "l1|acme||20260101T000000000000Z|20260310T120000000000Z",
        "l2|acme||20260101T000000000000Z|20260310T120000000000Z|0",
        "l1|<!channel>||20260101T000000000000Z|20260310T120000000000Z|0",
        "l1|acme|bob|20260101T000000000000Z|20260310T120000000000Z|0",
        "l1|acme||20260310T120000000000Z|20260101T000000000000Z|0",
        "l1|acme||2026-01-01|20260310T120000000000Z|0",
        "l1|acme||20260101T000000000000Z|20260310T120000000000Z|-1",
        "l1|acme||20260101T000000000000Z|20260310T120000000000Z|²",
    ],
)
def test_tokens_we_did_not_make_are_refused(token):
    assert parse_token(token) is None


# --- who may look ------------------------------------------------------------------------------


def test_someone_without_can_view_log_is_refused_and_the_attempt_is_audited(ctx, session_factory, tmp_path):
    build_history(ctx, tmp_path)
    result = look_up(ctx, "UAGENT1", LogOptions("acme", since="30d"))
    assert isinstance(result, LogRefused)
    assert audit_events(session_factory, "log.viewed") == []
    (refused,) = audit_events(session_factory, "log.refused")
    assert (refused.actor_slack_id, refused.actor_email, refused.actor_role, refused.account) == ("UAGENT1", "agent1@corp.example", "support", "acme")
    details = json.loads(refused.details)
    assert details["cause"] == "no_log_power"
    assert details["query"]["account"] == "acme" and details["query"]["since"] == "2026-02-08T12:00:00.000000Z"


def test_someone_with_no_role_at_all_is_refused_even_with_bad_syntax(ctx, session_factory):
    assert isinstance(look_up(ctx, "UNOBODY1", QueryError("`<!channel>` is not one of account:"), text="<!channel> hello"), LogRefused)
    (refused,) = audit_events(session_factory, "log.refused")
    assert json.loads(refused.details) == {"cause": "no_log_power", "text": "<!channel> hello"}
    assert refused.actor_role is None and refused.account is None


def test_bad_syntax_from_a_viewer_gets_the_usage_line_and_reads_nothing(ctx, session_factory):
    result = look_up(ctx, "USECURITY1", LogOptions("acme", since="soon"))
    assert isinstance(result, QueryError)
    assert audit_events(session_factory, "log.viewed") == audit_events(session_factory, "log.refused") == []


def test_a_role_lost_since_the_answer_refuses_the_next_page(ctx, session_factory, tmp_path):
    build_history(ctx, tmp_path)
    page = look_up(ctx, "USECURITY1", LogOptions("acme"))
    assert isinstance(page, LogPage)
    roles = dict(ctx.policy.roles)
    roles["security"] = roles["security"].model_copy(update={"can_view_log": False})
    ctx.policy = ctx.policy.model_copy(update={"roles": roles})
    assert isinstance(look_up_page(ctx, "USECURITY1", page.query.token(0)), LogRefused)
    (refused,) = audit_events(session_factory, "log.refused")
    assert json.loads(refused.details)["page"] == 1


# --- the answer ----------------------------------------------------------------------------------


def test_the_summary_and_the_sessions_newest_first(ctx, session_factory, tmp_path):
    history = build_history(ctx, tmp_path)
    page = look_up(ctx, "USECURITY1", LogOptions("acme"))
    assert isinstance(page, LogPage)
    assert page.account_name == "ACME Corp" and (page.page, page.pages) == (0, 1)
    summary = page.summary
    assert (summary.sessions, summary.agents, summary.approved_sessions, summary.approvers, summary.break_glass, summary.write_actions) == (4, 2, 2, 2, 1, 2)
    assert summary.outcomes == {"ended": 1, "expired": 1, "revoked": 1, "live": 1}
    assert [e.session_id for e in page.entries] == [history.break_glass_live, history.revoked, history.approved_expired, history.ended]
    live, revoked, expired, ended = page.entries
    assert (live.outcome, live.ended_at, live.break_glass, live.granted_by, live.approvers) == ("live", None, True, "break_glass", ())
    assert (revoked.outcome, revoked.ended_at) == ("revoked", NOW - timedelta(days=1, minutes=-5))
    assert [a.slack_id for a in revoked.approvers] == ["UMANAGER2"]
    # Approved, then left to run out: expired by the clock although nothing tidied it.
    assert (expired.outcome, expired.ended_at, expired.granted_by) == ("expired", NOW - timedelta(days=2, minutes=-30), "approval")
    assert [(a.slack_id, a.name) for a in expired.approvers] == [("UMANAGER1", "manager1@corp.example")]
    assert (ended.outcome, ended.ended_at, ended.write_actions, ended.granted_by) == ("ended", NOW - timedelta(days=3, minutes=-10), 2, "policy")
    assert (ended.agent_slack_id, ended.agent_email, ended.customer_user, ended.customer_user_name, ended.customer_user_email) == (
        "UAGENT1", "agent1@corp.example", "u-bob", "Bob Builder", "bob@acme.example"
    )
    assert (ended.reason, ended.ticket, ended.scope) == ("Customer cannot see the invoice page", "SUP-1", "read_only")


def test_the_summary_counts_each_approver_once_and_only_the_periods_approvals_and_actions(ctx, tmp_path):
    """The summary's approvers and write actions are looked up per session of the period
    (bot.domain.log_query.summarise): nothing from outside the period, the agent filter or
    the account leaks in, and an approver of several sessions counts once."""
    history = build_history(ctx, tmp_path)
    set_acme_sensitive(ctx, True)
    again = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=4), approver="UMANAGER1")
    set_acme_sensitive(ctx, False)
    record_actions(ctx, again, 3, at=NOW - timedelta(days=4, minutes=-5))
    record_actions(ctx, history.too_old, 5, at=NOW - timedelta(days=100, minutes=-5))
    # recorded with account "acme" but in globex's session: counted by session, so not acme's
    record_actions(ctx, history.other_account, 7, at=NOW - timedelta(days=1, minutes=-5))

    def summary(options: LogOptions) -> tuple[int, int, int, int]:
        s = look_up(ctx, "USECURITY1", options).summary
        return s.sessions, s.approved_sessions, s.approvers, s.write_actions

    assert summary(LogOptions("acme")) == (5, 3, 2, 5)
    assert summary(LogOptions("acme", agent="UAGENT1")) == (3, 2, 2, 5)
    assert summary(LogOptions("acme", agent="USENIOR1")) == (2, 1, 1, 0)
    assert summary(LogOptions("acme", agent="UAGENT1", since="200d")) == (4, 2, 2, 10)
    assert summary(LogOptions("acme", since="5d", until="3d")) == (1, 1, 1, 3)
    assert summary(LogOptions("globex")) == (1, 0, 0, 7)


def test_every_lookup_is_audited_with_its_query(ctx, session_factory, tmp_path):
    build_history(ctx, tmp_path)
    look_up(ctx, "USECURITY1", LogOptions("acme", agent="UAGENT1", since="2026-03-01"))
    (viewed,) = audit_events(session_factory, "log.viewed")
    assert (viewed.actor_slack_id, viewed.actor_role, viewed.account) == ("USECURITY1", "security", "acme")
    assert json.loads(viewed.details) == {
        "query": {"account": "acme", "agent": "UAGENT1", "since": "2026-03-01T00:00:00.000000Z", "until": "2026-03-10T12:00:00.000000Z"},
        "page": 1,
        "sessions": 2,
        "known_account": True,
    }


def test_the_agent_filter_and_the_period(ctx, tmp_path):
    history = build_history(ctx, tmp_path)
    page = look_up(ctx, "USECURITY1", LogOptions("acme", agent="UAGENT1", since="200d"))
    assert [e.session_id for e in page.entries] == [history.revoked, history.ended, history.too_old]
    assert page.summary.agents == 1
    page = look_up(ctx, "USECURITY1", LogOptions("acme", since="2d", until="1d"))
    assert [e.session_id for e in page.entries] == [history.approved_expired]


def test_an_unknown_account_is_said_so_and_still_audited(ctx, session_factory, tmp_path):
    build_history(ctx, tmp_path)
    assert look_up(ctx, "USECURITY1", LogOptions("nowhere")) == UnknownAccount("nowhere")
    (viewed,) = audit_events(session_factory, "log.viewed")
    assert json.loads(viewed.details)["known_account"] is False and viewed.account == "nowhere"


def test_pages_are_stable_and_each_page_is_audited(ctx, session_factory, tmp_path):
    build_history(ctx, tmp_path)
    start = NOW - timedelta(days=40)
    for n in range(2 * PAGE_SIZE + 3 - 4):  # with the history's 4: 23 sessions, 3 pages
        open_session(ctx, "UAGENT1", at=start + timedelta(days=n))
    first = look_up(ctx, "USECURITY1", LogOptions("acme"))
    assert (first.pages, len(first.entries), first.has_previous, first.has_next) == (3, PAGE_SIZE, False, True)
    # A session started after the first answer does not shift the pages of that answer.
    open_session(ctx, "UAGENT1", at=NOW + timedelta(minutes=5))
    later = NOW + timedelta(minutes=10)
    second = look_up_page(ctx, "USECURITY1", first.query.token(1), now=later)
    third = look_up_page(ctx, "USECURITY1", first.query.token(2), now=later)
    assert (second.page, third.page, len(third.entries), third.has_next, third.has_previous) == (1, 2, 3, False, True)
    seen = [e.session_id for p in (first, second, third) for e in p.entries]
    assert len(seen) == len(set(seen)) == 23
    starts = [e.started_at for p in (first, second, third) for e in p.entries]
    assert starts == sorted(starts, reverse=True)
    # A page past the end shows the last page.
    assert look_up_page(ctx, "USECURITY1", first.query.token(9), now=later).page == 2
    assert [json.loads(e.details)["page"] for e in audit_events(session_factory, "log.viewed")] == [1, 2, 3, 3]


def test_a_forged_token_gets_the_usage_line(ctx):
    assert look_up_page(ctx, "USECURITY1", "l1|acme||x|y|0") == log_query.EXPIRED_TOKEN


def test_the_page_is_read_with_a_fixed_number_of_queries(ctx, engine, tmp_path):
    """Aggregates in SQL: the page costs the same queries however many sessions there are."""
    build_history(ctx, tmp_path)

    def count_queries(options: LogOptions) -> int:
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, …)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            look_up(ctx, "USECURITY1", options)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    small = count_queries(LogOptions("acme", since="2d"))
    everything = count_queries(LogOptions("acme", since="200d"))
    assert small == everything


def test_iter_entries_reads_in_keyset_batches_across_equal_start_times(ctx, session_factory, tmp_path):
    build_history(ctx, tmp_path)
    allow_many_open_accesses(ctx)
    same = NOW - timedelta(days=5)
    for _ in range(5):
        open_session(ctx, "UAGENT1", at=same)  # five sessions started in the same microsecond
    query = resolve(LogOptions("acme"), now=NOW)
    with session_factory() as db:
        account_id = db.execute(text("SELECT id FROM accounts WHERE external_id = 'acme'")).scalar_one()
        batched = [e.session_id for e in iter_entries(db, account_id, query, now=NOW, batch=2)]
        whole = [e.session_id for e in iter_entries(db, account_id, query, now=NOW)]
    assert batched == whole and len(whole) == 9 == len(set(whole))
