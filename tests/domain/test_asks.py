"""An unanswered ask (a gated request, or more time on a session) reminds its approvers halfway
through its TTL and escalates to the policy's second approver group, each exactly once, on a
frozen clock; the escalation group decides under the same checks as the first."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.engine import make_engine, make_session_factory
from bot.db.models import AuditEvent
from bot.domain import approvals, asks, extensions, links, outbox, requests, watch
from bot.domain.audit import verify_chain
from bot.domain.context import DomainContext
from bot.domain.ports import Person, StaticPeople
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory
from tests.fakes.groups import StaticGroups

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
REASON = "customer cannot see their invoices since Monday"
MANAGERS = ("UMANAGER1", "UMANAGER2", "UMANAGER3")


def _form(account="globex", user="u-carol", **kw):
    return RequestForm(**{**dict(account=account, user=user, reason=REASON, ticket="SUP-9", duration_minutes=30, scope="read_only"), **kw})


def _gating(ctx: DomainContext, **update) -> DomainContext:
    ctx.policy = ctx.policy.model_copy(update={"gating": ctx.policy.gating.model_copy(update=update)})
    return ctx


@pytest.fixture
def gated(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["regulated"]})
    return ctx


@pytest.fixture
def escalating(gated):
    """globex asks UMANAGER1 first; the @leads group (UMANAGER2, UMANAGER3) is the escalation."""
    gated.groups = StaticGroups({"support-team": {"UGROUPIE1"}, "leads": {"UMANAGER2", "UMANAGER3"}})
    return _gating(gated, approvers_by_account={"globex": ["UMANAGER1"]}, escalate_to=["@leads"])


def _events(session_factory, type_):
    with session_factory() as db:
        return db.execute(select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq)).scalars().all()


def _owed(ctx, kind):
    return [(r.subject_id, r.recipient) for r in outbox.rows(ctx, kinds=[kind])]


def test_unanswered_approvers_are_reminded_once_halfway_through_the_ttl(gated, session_factory):
    with freeze_time(T0) as clock:
        pending = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form("initech", "u-dave"))
        rid = pending.request.id
        assert isinstance(approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1"), approvals.Counted)  # 1 of 2
        clock.move_to(T0 + timedelta(minutes=14, seconds=59))
        assert watch.nudge_pending_approvals(gated) == 0
        clock.move_to(T0 + timedelta(minutes=15))
        assert watch.nudge_pending_approvals(gated) == 1
        clock.tick(timedelta(minutes=5))
        assert watch.nudge_pending_approvals(gated) == 0  # once
    (reminded,) = _events(session_factory, "approval.reminded")
    assert reminded.request_id == rid and reminded.actor_role == "clock"
    assert '"reminded":["UMANAGER2","UMANAGER3"]' in reminded.details  # not the one who answered
    assert _owed(gated, outbox.Kind.REMINDER) == [(rid, "UMANAGER2"), (rid, "UMANAGER3")]
    # the agent's "approval needed" DM is edited to say so
    assert _owed(gated, outbox.Kind.AGENT_REQUEST)[-1] == (rid, "UAGENT1")
    state = asks.approver_message_state(gated, rid)
    assert state.reminded_at == T0 + timedelta(minutes=15) and state.escalated_at is None


def test_no_reminder_when_turned_off_or_once_the_ask_is_over(gated, session_factory):
    with freeze_time(T0) as clock:
        off = requests.submit_request(_gating(gated, remind_after_percent=0), AgentIdentity("UAGENT1"), _form())
        clock.move_to(T0 + timedelta(minutes=20))
        assert watch.nudge_pending_approvals(gated) == 0
        _gating(gated, remind_after_percent=50)
        approvals.cancel_request(gated, off.request.id, clicker_slack_id="UAGENT1")
        assert watch.nudge_pending_approvals(gated) == 0  # cancelled
        late = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form("initech", "u-dave"))
        clock.move_to(T0 + timedelta(minutes=50))  # past its TTL: it is expired, not reminded
        assert asks.nudge_approvers(gated, late.request.id) is None
    assert _events(session_factory, "approval.reminded") == []


def test_a_decision_edits_the_reminders_too(gated):
    with freeze_time(T0) as clock:
        pending = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
        clock.move_to(T0 + timedelta(minutes=16))
        watch.nudge_pending_approvals(gated)
        decided = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER2")
    assert isinstance(decided, approvals.Decided)
    reminders = [outbox.target_of(outbox.Kind.REMINDER, pending.request.id, m) for m in MANAGERS]
    assert set(reminders) <= set(decided.targets)  # delivered at once after the click
    assert _owed(gated, outbox.Kind.REMINDER) == [(pending.request.id, m) for m in MANAGERS] * 2


def test_the_escalation_group_is_asked_once_at_its_point_and_may_then_decide(escalating, session_factory):
    with freeze_time(T0) as clock:
        pending = requests.submit_request(escalating, AgentIdentity("UAGENT1"), _form())
        rid = pending.request.id
        assert pending.ask.approvers == ("UMANAGER1",)
        # before the escalation, the group's members are not approvers of this account
        refused = approvals.approve_request(escalating, rid, clicker_slack_id="UMANAGER2")
        assert refused == approvals.Refused(approvals.REFUSAL_MESSAGES["not_a_designated_approver"])
        clock.move_to(T0 + timedelta(minutes=15))
        watch.nudge_pending_approvals(escalating)  # reminded only
        assert _events(session_factory, "approval.escalated") == []
        clock.move_to(T0 + timedelta(minutes=22, seconds=30))  # three quarters of 30 minutes
        assert watch.nudge_pending_approvals(escalating) == 1
        assert watch.nudge_pending_approvals(escalating) == 0
        (escalated,) = _events(session_factory, "approval.escalated")
        assert '"asked":["UMANAGER2","UMANAGER3"]' in escalated.details and '"group":["@leads"]' in escalated.details
        assert _owed(escalating, outbox.Kind.APPROVER) == [(rid, "UMANAGER1"), (rid, "UMANAGER2"), (rid, "UMANAGER3")]
        state = asks.approver_message_state(escalating, rid)
        assert state.approvers == ("UMANAGER1", "UMANAGER2", "UMANAGER3") and state.escalated_to == ("UMANAGER2", "UMANAGER3")
        decided = approvals.approve_request(escalating, rid, clicker_slack_id="UMANAGER3")
    assert isinstance(decided, approvals.Decided) and decided.outcome == "approved" and decided.by == "UMANAGER3"
    assert decided.asked == ("UMANAGER1", "UMANAGER2", "UMANAGER3")  # every DM is edited
    with session_factory() as db:
        assert verify_chain(db)[1] is None


def test_the_escalation_group_faces_the_same_checks(escalating, session_factory):
    # UMANAGER3 asks: it is in the escalation group but never asked, and its click is refused.
    escalating.people = StaticPeople(
        {
            "UMANAGER2": Person("UMANAGER2", resolved=True, email="m2@corp.example"),
            "UMANAGER3": Person("UMANAGER3", email="m3@corp.example"),
        }
    )
    with freeze_time(T0) as clock:
        pending = requests.submit_request(escalating, AgentIdentity("UMANAGER3"), _form())
        rid = pending.request.id
        clock.move_to(T0 + timedelta(minutes=23))
        watch.nudge_pending_approvals(escalating)
        (escalated,) = _events(session_factory, "approval.escalated")
        assert '"asked":["UMANAGER2"]' in escalated.details
        assert approvals.approve_request(escalating, rid, clicker_slack_id="UMANAGER3") == approvals.Refused(approvals.REFUSAL_MESSAGES["self_approval"])
        escalating.people = StaticPeople({"UMANAGER2": Person("UMANAGER2", resolved=False)})
        unknown = approvals.approve_request(escalating, rid, clicker_slack_id="UMANAGER2")
        assert unknown == approvals.Refused(approvals.REFUSAL_MESSAGES["identity_unavailable"])
    causes = [e.details for e in _events(session_factory, "approval.refused")]
    assert len(causes) == 2 and '"cause":"self_approval"' in causes[0] and '"cause":"identity_unavailable"' in causes[1]


def test_escalation_after_minutes_and_to_the_gates_own_group(escalating, session_factory):
    _gating(escalating, escalate_to_by_gate={"regulated": ["UMANAGER3"]}, escalate_after_minutes=5)
    with freeze_time(T0) as clock:
        sensitive = requests.submit_request(escalating, AgentIdentity("UAGENT1"), _form())
        regulated = requests.submit_request(escalating, AgentIdentity("USENIOR1"), _form("initech", "u-dave"))
        clock.move_to(T0 + timedelta(minutes=5))
        assert watch.nudge_pending_approvals(escalating) == 2
    by_request = {e.request_id: e.details for e in _events(session_factory, "approval.escalated")}
    assert '"asked":["UMANAGER2","UMANAGER3"]' in by_request[sensitive.request.id]
    # initech asks every manager first: its own group's UMANAGER3 was asked already
    assert '"asked":[]' in by_request[regulated.request.id] and '"group":["UMANAGER3"]' in by_request[regulated.request.id]


def test_an_ask_for_more_time_is_reminded_and_escalated_too(escalating, session_factory):
    with freeze_time(T0) as clock:
        granted = requests.submit_request(escalating, AgentIdentity("USENIOR1"), _form("acme", "u-bob", duration_minutes=60))
        session = links.redeem(escalating, granted.link.url.rsplit("/", 1)[1]).session
        asked = extensions.request_extension(escalating, session.id, agent_slack_id="USENIOR1", minutes=30, reason="still reproducing the bug")
        extension_id = asked.ask.extension.id
        assert asked.ask.approvers == MANAGERS  # acme has no designated approvers
        _gating(escalating, escalate_to=["UMANAGER3"], approvers_by_account={})
        clock.move_to(T0 + timedelta(minutes=23))
        assert watch.nudge_pending_approvals(escalating) == 1
        state = asks.approver_message_state(escalating, extension_id)
    (reminded,) = _events(session_factory, "approval.reminded")
    assert f'"extension_id":"{extension_id}"' in reminded.details and reminded.session_id == session.id
    (escalated,) = _events(session_factory, "approval.escalated")
    assert '"asked":[]' in escalated.details  # UMANAGER3 was asked already
    assert _owed(escalating, outbox.Kind.REMINDER) == [(extension_id, m) for m in MANAGERS]
    assert _owed(escalating, outbox.Kind.AGENT)[-1] == (granted.request.id, "USENIOR1")
    assert state.reminded_at is not None and state.escalated_at is not None
    # the request's own history is not the extension's
    assert asks.approver_message_state(escalating, granted.request.id).outcome == "approved"


def test_two_schedulers_at_once_remind_and_escalate_each_ask_once(escalating, db_url, session_factory):
    with freeze_time(T0):
        rids = [requests.submit_request(escalating, AgentIdentity(a), _form(*where)).request.id for a, where in (("UAGENT1", ("globex", "u-carol")), ("USENIOR1", ("initech", "u-dave")))]
    runs = 4
    engines = [make_engine(db_url, **({} if db_url.startswith("sqlite") else {"pool_size": 2, "max_overflow": 0})) for _ in range(runs)]
    contexts = [replace(escalating, sessions=make_session_factory(e)) for e in engines]
    barrier = threading.Barrier(runs)
    counts: list[int] = []
    errors: list[BaseException] = []

    def scheduler(ctx: DomainContext) -> None:
        try:
            barrier.wait()
            counts.append(watch.nudge_pending_approvals(ctx, now=T0 + timedelta(minutes=25)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scheduler, args=(c,)) for c in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert sum(counts) == 2  # one run nudged each ask; the others found it done
    assert sorted(e.request_id for e in _events(session_factory, "approval.reminded")) == sorted(rids)
    assert sorted(e.request_id for e in _events(session_factory, "approval.escalated")) == sorted(rids)
    reminders = _owed(escalating, outbox.Kind.REMINDER)
    assert sorted(reminders) == sorted([(rids[0], "UMANAGER1"), *((rids[1], m) for m in MANAGERS)])
    with session_factory() as db:
        assert verify_chain(db)[1] is None
