"""Access reviews (bot/domain/digests.py): periods, the figures counted in
SQL on both databases, the audit of each generation and the scheduler's once-per-period
claim (the renderings: tests/reports/test_digests.py)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain import anomalies, approvals, digests, links, outbox, requests, sessions
from bot.domain.audit import Actor
from bot.domain.digests import PeriodError
from bot.domain.policy import parse_policy
from bot.domain.requests import AgentIdentity, RequestForm
from tests.conftest import TEST_POLICY
from tests.fakes.directory_data import load_directory

UTC = timezone.utc
MONDAY = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026Q3", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026Q1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026Q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("last-7d", MONDAY - timedelta(days=7), MONDAY),
        (" last-30d ", MONDAY - timedelta(days=30), MONDAY),
    ],
)
def test_periods_the_cli_accepts(text, start, end):
    period = digests.parse_period(text, now=MONDAY)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize("text", ["2026Q5", "2026Q0", "26Q1", "last-0d", "last-400d", "last-7", "Q3", "", "2026-07"])
def test_periods_it_refuses_say_what_is_accepted(text):
    with pytest.raises(PeriodError, match="2026Q3.*last-7d"):
        digests.parse_period(text, now=MONDAY)


POLICY = parse_policy(TEST_POLICY)  # weekly "mon 09:00", quarterly at 09:00


@pytest.mark.parametrize(
    ("now", "week_end"),
    [
        (MONDAY, MONDAY),  # exactly at the slot
        (MONDAY - timedelta(minutes=1), MONDAY - timedelta(days=7)),
        (MONDAY + timedelta(days=2, hours=5), MONDAY),
        (MONDAY + timedelta(days=6, hours=23), MONDAY),
    ],
)
def test_the_weekly_period_ends_at_the_latest_slot(now, week_end):
    period = digests.weekly_period(POLICY, now)
    assert (period.start, period.end, period.key) == (week_end - timedelta(days=7), week_end, f"week-{week_end:%Y-%m-%d}")
    assert digests.period_of_key(POLICY, period.key) == period


@pytest.mark.parametrize(
    ("now", "key"),
    [
        (datetime(2030, 1, 7, tzinfo=UTC), "2029Q4"),
        (datetime(2030, 1, 1, 8, 59, tzinfo=UTC), "2029Q3"),
        (datetime(2030, 1, 1, 9, 0, tzinfo=UTC), "2029Q4"),
        (datetime(2030, 7, 15, tzinfo=UTC), "2030Q2"),
    ],
)
def test_the_quarterly_review_covers_the_quarter_just_ended(now, key):
    assert digests.quarterly_period(POLICY, now).key == key


def test_the_scheduler_owes_each_period_once(ctx):
    assert digests.run_due(ctx, now=MONDAY) == ["week-2030-01-07", "2029Q4"]
    assert digests.run_due(ctx, now=MONDAY + timedelta(hours=3)) == []
    assert [r.subject_id for r in outbox.rows(ctx, kinds=[outbox.Kind.DIGEST])] == ["week-2030-01-07", "2029Q4"]
    assert digests.run_due(ctx, now=MONDAY + timedelta(days=7)) == ["week-2030-01-14"]


def test_a_scheduler_back_after_downtime_owes_every_review_it_missed_once_oldest_first(ctx):
    assert digests.run_due(ctx, now=MONDAY) == ["week-2030-01-07", "2029Q4"]
    # down from just after that Monday until the Tuesday three weeks later
    back = MONDAY + timedelta(days=22)
    assert digests.run_due(ctx, now=back) == ["week-2030-01-14", "week-2030-01-21", "week-2030-01-28"]
    assert digests.run_due(ctx, now=back + timedelta(minutes=1)) == []
    # down for over two quarters: both quarters' reviews, and at most CATCH_UP_MAX weeks
    later = datetime(2030, 7, 8, 9, 0, tzinfo=timezone.utc)  # a Monday, after Q2's review time
    owed = digests.run_due(ctx, now=later)
    weeks = [k for k in owed if k.startswith("week-")]
    assert len(weeks) == digests.CATCH_UP_MAX["weekly"] and weeks[-1] == "week-2030-07-08" and weeks == sorted(weeks)
    assert [k for k in owed if not k.startswith("week-")] == ["2030Q1", "2030Q2"]


def test_the_reviews_due_at_a_later_moment_can_be_owed_now(ctx):
    before = MONDAY - timedelta(days=2)
    assert digests.run_due(ctx, now=before, as_of=MONDAY) == ["week-2030-01-07", "2029Q4"]
    assert {r.due_at.replace(tzinfo=UTC) for r in outbox.rows(ctx, kinds=[outbox.Kind.DIGEST])} == {before}
    assert digests.run_due(ctx, now=MONDAY) == []  # owed once, however early


def test_a_new_install_owes_only_the_latest_reviews(ctx):
    assert digests.run_due(ctx, now=MONDAY + timedelta(days=70)) == ["week-2030-03-18", "2029Q4"]


# ---------------------------------------------------------------------------- the figures


def form(account, user, *, ticket="SUP-1", minutes=15, previous=None) -> RequestForm:
    return RequestForm(account=account, user=user, reason="customer ticket about billing", ticket=ticket, duration_minutes=minutes, scope="read_only", previous_session_id=previous)


def redeem(ctx, granted) -> str:
    return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session.id


@pytest.fixture
def week(ctx, session_factory, tmp_path):
    """A week of activity from MONDAY: UAGENT1 3 sessions on acme (one re-initiated, one
    without a ticket), USENIOR1 1 on umbrella and 1 on globex (sensitive, approved after
    6 minutes), a request on globex denied after 2 minutes, a blocked request, an alert."""
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["opted_out"]})
    ctx.policy = ctx.policy.model_copy(
        update={
            # several sessions of one agent with one user in the same hour of frozen time
            "requests": ctx.policy.requests.model_copy(update={"ticket_required": False, "one_open_access": False}),
            "alerts": ctx.policy.alerts.model_copy(update={"concentration_min_sessions": 3}),
        }
    )
    agent, senior = AgentIdentity("UAGENT1"), AgentIdentity("USENIOR1")
    with freeze_time(MONDAY + timedelta(hours=1)) as clock:
        first = redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob")))
        sessions.end_session(ctx, first, actor_slack_id="UAGENT1")
        redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob", previous=first)))
        redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob", ticket=None)))
        redeem(ctx, requests.submit_request(ctx, senior, form("umbrella", "u-eve")))
        pending = requests.submit_request(ctx, senior, form("globex", "u-carol"))
        denied = requests.submit_request(ctx, agent, form("globex", "u-carol"))
        clock.tick(timedelta(minutes=2))
        approvals.deny_request(ctx, denied.request.id, clicker_slack_id="UMANAGER2", reason="not this week")
        clock.tick(timedelta(minutes=4))
        decided = approvals.approve_request(ctx, pending.request.id, clicker_slack_id="UMANAGER1")
        links.redeem(ctx, decided.link.url.rsplit("/", 1)[1])
        requests.submit_request(ctx, agent, form("initech", "u-dave"))  # opted out: blocked
        anomalies.sweep(ctx)
    # something outside the week is not counted
    with freeze_time(MONDAY + timedelta(days=8)):
        redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob")))


def report_for(ctx, start=MONDAY, end=MONDAY + timedelta(days=7)):
    period = digests.Period("test", "a test week", start, end, "adhoc")
    with ctx.sessions() as db:
        return digests.build_report(db, period, ctx.policy, now=end)


def test_the_report_counts_the_period_in_sql(ctx, week):
    report = report_for(ctx)
    assert (report.requests, report.granted, report.sessions, report.blocked) == (6, 5, 5, 1)
    assert dict(report.by_outcome) == {"active": 4, "ended": 1, "denied": 1}
    assert [(a.agent, a.sessions, a.accounts) for a in report.by_agent] == [("UAGENT1", 3, 1), ("USENIOR1", 2, 2)]
    assert [(a.account, a.sessions, a.agents) for a in report.by_account] == [("acme", 3, 1), ("globex", 1, 1), ("umbrella", 1, 1)]
    assert [(d.approver, d.approved, d.denied) for d in report.deciders] == [("UMANAGER1", 1, 0), ("UMANAGER2", 0, 1)]
    assert (report.decisions, report.median_seconds_to_decide) == (2, 240)  # 2 min and 6 min
    assert [(s.account, s.flags, s.sessions) for s in report.sensitive] == [("globex", ("sensitive",), 1)]
    assert dict(report.alerts) == {"concentration": 1, "flagged_account": 1, "opted_out_attempt": 1}
    assert report.no_ticket == 1 and [(t.agent, t.account) for t in report.no_ticket_listed] == [("UAGENT1", "acme")]
    assert (report.reinitiations, report.extensions) == (1, ())
    (concentrated,) = report.concentration  # acme: 3 of 3 by UAGENT1 (the fixture's minimum is 3)
    assert (concentrated.account, concentrated.agent, concentrated.percent) == ("acme", "UAGENT1", 100)


def test_the_tables_keep_the_top_rows_busiest_first_ties_by_name(ctx, week, monkeypatch):
    """Counted per (account, agent) once and ranked in Python: the cut at TOP keeps the
    busiest, and equal counts go in the order of the account's or agent's name."""
    monkeypatch.setattr(digests, "TOP", 2)
    report = report_for(ctx)
    assert [(a.account, a.sessions) for a in report.by_account] == [("acme", 3), ("globex", 1)]
    assert [a.agent for a in report.by_agent] == ["UAGENT1", "USENIOR1"]
    assert (report.sessions, report.accounts, report.agents) == (5, 3, 2)  # the totals are not cut


def test_reinitiations_are_counted_from_the_button_and_from_the_command_alike(ctx, session_factory, tmp_path):
    """A request soon after the agent's session with the same user ended is a re-initiation
    whether the agent clicked "Start a new request" or typed /impersonate; later, it is not."""
    load_directory(session_factory, tmp_path)
    agent = AgentIdentity("UAGENT1")
    with freeze_time(MONDAY + timedelta(hours=1)) as clock:
        first = redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob")))
        sessions.end_session(ctx, first, actor_slack_id="UAGENT1")
        clock.tick(timedelta(minutes=3))
        by_command = redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob")))
        sessions.end_session(ctx, by_command, actor_slack_id="UAGENT1")
        clock.tick(timedelta(minutes=3))
        by_button = redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob", previous=by_command)))
        sessions.end_session(ctx, by_button, actor_slack_id="UAGENT1")
        clock.tick(timedelta(hours=2))
        redeem(ctx, requests.submit_request(ctx, agent, form("acme", "u-bob")))  # past the window: a fresh request
    report = report_for(ctx)
    assert (report.requests, report.reinitiations) == (4, 2)
    with session_factory() as db:
        vias = [json.loads(d)["via"] for d in db.execute(select(AuditEvent.details).where(AuditEvent.type == "request.reinitiated").order_by(AuditEvent.seq)).scalars()]
    assert vias == ["command", "button"]


def test_the_median_of_an_odd_number_of_decisions_is_the_middle_one(ctx, week):
    with freeze_time(MONDAY + timedelta(hours=2)) as clock:
        late = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form("globex", "u-carol"))
        clock.tick(timedelta(minutes=20))  # within the 30-minute TTL
        decided = approvals.approve_request(ctx, late.request.id, clicker_slack_id="UMANAGER1")
    assert isinstance(decided, approvals.Decided), decided
    report = report_for(ctx)
    assert (report.decisions, report.median_seconds_to_decide) == (3, 360)


def test_an_empty_period_reports_zeros(ctx, week):
    report = report_for(ctx, MONDAY - timedelta(days=30), MONDAY - timedelta(days=23))
    assert (report.requests, report.sessions, report.median_seconds_to_decide, report.concentration) == (0, 0, None, ())


def test_generating_a_report_verifies_the_chain_and_is_audited(ctx, week, session_factory):
    period = digests.parse_period("last-30d", now=MONDAY + timedelta(days=9))
    report = digests.make_report(ctx, period, by=Actor(slack_id="USECURITY1", role="cli"), now=MONDAY + timedelta(days=9))
    assert report.chain is not None and report.chain.ok and report.chain.events > 20
    with session_factory() as db:
        (event,) = db.execute(select(AuditEvent).where(AuditEvent.type == "digest.generated")).scalars()
    assert (event.actor_slack_id, json.loads(event.details)["period"]) == ("USECURITY1", "last-30d")
