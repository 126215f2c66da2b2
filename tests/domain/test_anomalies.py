"""Anomaly rules (bot/domain/anomalies.py): the rules as pure functions tested
with a table; the queries that feed them; alerts deduplicated per rule and subject within the
rule's window, audited, and owed to the security channel."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import Alert, AuditEvent
from bot.domain import anomalies, links, outbox, requests
from bot.domain.anomalies import Facts, Finding, GrantFact, OptedOutFact, ReplayFact, Rule, ShareFact
from bot.domain.policy import AlertsConfig, BusinessHoursConfig
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory
from tests.conftest import allow_many_open_accesses

UTC = timezone.utc
MONDAY = datetime(2030, 1, 7, tzinfo=UTC)
HOURS = BusinessHoursConfig()  # Mon–Fri 08:00–19:00


@pytest.mark.parametrize(
    ("moment", "tz", "hours", "outside"),
    [
        (MONDAY.replace(hour=7), "Europe/Paris", HOURS, False),  # 08:00 in Paris: opening time
        (MONDAY.replace(hour=6, minute=59), "Europe/Paris", HOURS, True),  # 07:59 in Paris
        (MONDAY.replace(hour=18), "Europe/Paris", HOURS, True),  # 19:00 in Paris: closed
        (MONDAY.replace(hour=17, minute=59), "Europe/Paris", HOURS, False),
        (MONDAY.replace(hour=3), "America/New_York", HOURS, True),  # Sunday 22:00 in New York
        (MONDAY.replace(hour=13), "America/New_York", HOURS, False),  # Monday 08:00 there
        (MONDAY + timedelta(days=5, hours=12), "UTC", HOURS, True),  # Saturday noon
        (MONDAY.replace(hour=12), None, HOURS, False),  # no Slack zone: UTC
        (MONDAY.replace(hour=12), "Not/AZone", HOURS, False),
        (MONDAY.replace(hour=23, minute=59), "UTC", BusinessHoursConfig(start="00:00", end="24:00"), False),
        (MONDAY.replace(hour=8), "UTC", BusinessHoursConfig(days=["sat", "sun"]), True),
    ],
)
def test_business_hours_are_read_on_the_agents_own_clock(moment, tz, hours, outside):
    assert anomalies.outside_business_hours(moment, tz, hours) is outside


def grant(request_id="r1", *, agent="UAGENT1", tz="UTC", account="acme", flags=(), at=MONDAY.replace(hour=12), started=None) -> GrantFact:
    return GrantFact(request_id, agent, tz, account, frozenset(flags), at, "s-" + request_id if started else None, started)


CONFIG = AlertsConfig()  # defaults: >5 per account, >10 accounts, 3 refusals, 80 % of ≥5 …

RULE_TABLE = [
    # (facts, expected (rule, subject) pairs)
    (Facts(grants_per_account={"acme": 5}), []),
    (Facts(grants_per_account={"acme": 6, "globex": 2}), [(Rule.ACCOUNT_BURST, "acme")]),
    (Facts(accounts_per_agent={"UAGENT1": 10}), []),
    (Facts(accounts_per_agent={"UAGENT1": 11}), [(Rule.AGENT_SPREAD, "UAGENT1")]),
    (Facts(grants=[grant(at=MONDAY.replace(hour=12))]), []),
    (Facts(grants=[grant(at=MONDAY.replace(hour=22))]), [(Rule.OFF_HOURS, "r1")]),
    (Facts(grants=[grant(at=MONDAY.replace(hour=22), started=MONDAY.replace(hour=10))]), []),  # the session start counts
    (Facts(grants=[grant(flags={"flagged"})]), []),  # flagged is gated, not alerted, by default
    (Facts(grants=[grant(flags={"sensitive"})]), [(Rule.FLAGGED_ACCOUNT, "r1")]),
    (Facts(grants=[grant(flags={"regulated", "opted_out"})]), [(Rule.FLAGGED_ACCOUNT, "r1")]),
    (Facts(refusals_per_agent={"UAGENT1": 2}), []),
    (Facts(refusals_per_agent={"UAGENT1": 3}), [(Rule.REPEATED_REFUSALS, "UAGENT1")]),
    (Facts(replays=[ReplayFact("r1", "UAGENT1", "acme", 1)]), [(Rule.LINK_REPLAY, "r1")]),
    (Facts(replays=[ReplayFact("r1", "UAGENT1", "acme", 0)]), []),
    (Facts(opted_out=[OptedOutFact("UAGENT1", "initech", 1)]), [(Rule.OPTED_OUT_ATTEMPT, "UAGENT1:initech")]),
    (Facts(shares=[ShareFact("acme", 5, "UAGENT1", 4)]), [(Rule.CONCENTRATION, "acme")]),  # 80 % of 5
    (Facts(shares=[ShareFact("acme", 5, "UAGENT1", 3)]), []),  # 60 %
    (Facts(shares=[ShareFact("acme", 4, "UAGENT1", 4)]), []),  # 100 %, but of only 4 sessions
]


@pytest.mark.parametrize(("facts", "expected"), RULE_TABLE)
def test_the_rules_as_a_table(facts, expected):
    assert [(f.rule, f.subject) for f in anomalies.evaluate(facts, CONFIG)] == expected


def test_thresholds_come_from_the_policy():
    strict = CONFIG.model_copy(update={"max_sessions_per_account_24h": 1, "concentration_percent": 50, "session_flags": ["flagged"]})
    facts = Facts(grants_per_account={"acme": 2}, shares=[ShareFact("acme", 6, "UAGENT1", 3)], grants=[grant(flags={"flagged"})])
    assert sorted(f.rule.value for f in anomalies.evaluate(facts, strict)) == ["account_burst", "concentration", "flagged_account"]


def test_the_busiest_agent_is_picked_without_depending_on_row_order():
    rows = [("acme", "UB", 3), ("acme", "UA", 3), ("globex", "UC", 1)]
    assert anomalies.shares_of(rows) == anomalies.shares_of(list(reversed(rows))) == [
        ShareFact("acme", 6, "UA", 3),
        ShareFact("globex", 1, "UC", 1),
    ]


# ---------------------------------------------------------------------------- against the database


def form(account="acme", user="u-bob") -> RequestForm:
    return RequestForm(account=account, user=user, reason="customer ticket about billing", ticket="SUP-1", duration_minutes=15, scope="read_only")


def alerts(ctx) -> list[Alert]:
    with ctx.sessions() as db:
        return list(db.execute(select(Alert).order_by(Alert.raised_at, Alert.id)).scalars())


def with_alerts(ctx, **changes) -> None:
    ctx.policy = ctx.policy.model_copy(update={"alerts": ctx.policy.alerts.model_copy(update=changes)})


@pytest.fixture
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["opted_out"]})


def test_a_burst_on_one_account_is_alerted_at_the_request_once(ctx, directory):
    with_alerts(ctx, max_sessions_per_account_24h=2)
    for agent in ("UAGENT1", "USENIOR1", "UMANAGER1", "UMANAGER2"):  # one open access each
        assert isinstance(requests.submit_request(ctx, AgentIdentity(agent), form()), requests.Granted)
    (alert,) = alerts(ctx)
    assert (alert.rule, alert.subject, json.loads(alert.details)) == ("account_burst", "acme", {"limit": 2, "sessions_24h": 3})
    with ctx.sessions() as db:
        (event,) = db.execute(select(AuditEvent).where(AuditEvent.type == "alert.raised")).scalars()
    assert json.loads(event.details)["alert_id"] == alert.id and event.account == "acme"
    assert [(r.kind, r.subject_id) for r in outbox.rows(ctx, kinds=[outbox.Kind.ALERT])] == [("alert", alert.id)]


def test_attempts_on_an_opted_out_account_and_repeated_refusals_are_alerted(ctx, directory):
    for _ in range(3):
        result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form("initech", "u-dave"))
        assert isinstance(result, requests.Blocked)
    rules = sorted((a.rule, a.subject) for a in alerts(ctx))
    assert rules == [("opted_out_attempt", "UAGENT1:initech"), ("repeated_refusals", "UAGENT1")]


def test_a_replayed_link_is_found_by_the_sweep(ctx, directory):
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form())
    token = granted.link.url.rsplit("/", 1)[1]
    links.redeem(ctx, token)
    links.redeem(ctx, token)
    links.redeem(ctx, token)
    raised = anomalies.sweep(ctx)
    (alert,) = [a for a in alerts(ctx) if a.id in raised]
    assert (alert.rule, alert.request_id, json.loads(alert.details)) == ("link_replay", granted.request.id, {"attempts": 2})
    assert anomalies.sweep(ctx) == []  # once per request


def test_a_session_outside_business_hours_is_alerted_with_its_live_session(ctx, directory):
    with_alerts(ctx, business_hours=BusinessHoursConfig())  # UAGENT1 is in Europe/Paris
    with freeze_time(MONDAY.replace(hour=21)):  # 22:00 in Paris
        granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form())
        session = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
        anomalies.sweep(ctx)
        (alert,) = alerts(ctx)
        (view,) = anomalies.alert_views(ctx, [alert.id])
    assert (view.rule, view.agent, view.request_id) == (Rule.OFF_HOURS, "UAGENT1", granted.request.id)
    assert view.facts["tz"] == "Europe/Paris"
    assert [s.id for s in view.live_sessions] == [session.id]


def test_concentration_over_thirty_days_is_alerted(ctx, directory):
    with_alerts(ctx, concentration_min_sessions=3)
    for day in range(3):
        with freeze_time(MONDAY + timedelta(days=day, hours=10)):
            granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form())
            links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])
    with freeze_time(MONDAY + timedelta(days=3)):
        anomalies.sweep(ctx)
    (alert,) = [a for a in alerts(ctx) if a.rule == "concentration"]
    assert json.loads(alert.details) == {"by_agent": 3, "days": 30, "percent": 100, "sessions": 3}


def test_an_alert_is_raised_again_only_after_its_window(ctx, directory):
    finding = Finding(Rule.ACCOUNT_BURST, "acme", {"sessions_24h": 9, "limit": 5}, account="acme")
    window = timedelta(hours=24)

    def raise_at(moment):
        with ctx.sessions() as db, db.begin():
            return anomalies.raise_alert(db, finding, window=window, now=moment)

    assert raise_at(MONDAY) is not None
    assert raise_at(MONDAY + window - timedelta(seconds=1)) is None
    assert raise_at(MONDAY + window) is not None
    assert len(alerts(ctx)) == 2


def test_concurrent_sweeps_raise_each_alert_once(ctx, directory):
    with_alerts(ctx, max_sessions_per_account_24h=1)
    allow_many_open_accesses(ctx)
    for _ in range(2):
        requests.submit_request(ctx, AgentIdentity("UAGENT1"), form())
    with ctx.sessions() as db:
        db.execute(Alert.__table__.delete())
        db.execute(anomalies.AlertMark.__table__.delete())
        db.commit()
    barrier = threading.Barrier(4)

    def sweep():
        barrier.wait()
        anomalies.sweep(ctx)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(a.rule, a.subject) for a in alerts(ctx)] == [("account_burst", "acme")]


def test_a_failing_check_never_breaks_the_request(ctx, directory, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(anomalies, "gather", broken)
    result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form())
    assert isinstance(result, requests.Granted)
    assert "anomaly check" in caplog.text and "RuntimeError" in caplog.text
