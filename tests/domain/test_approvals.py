"""Approvals domain: eligibility, N distinct approvers, exactly-once decisions, TTL."""
from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain import approvals, asks, links, outbox, requests, watch
from bot.domain.audit import verify_chain
from bot.domain.ports import Person, StaticPeople
from bot.domain.requests import AgentIdentity
from tests.domain.conftest import events, form
from tests.fakes.courier import FakeCourier
from tests.personal_values import revealed


def test_gated_request_is_pending_and_asks_every_eligible_approver(gated, session_factory):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    assert isinstance(result, requests.Pending)
    assert result.ask is not None
    assert result.ask.approvers == ("UMANAGER1", "UMANAGER2", "UMANAGER3")
    (asked,) = events(session_factory, "approval.requested")
    assert '"asked":["UMANAGER1","UMANAGER2","UMANAGER3"]' in asked.details


def test_requester_is_never_asked_or_allowed_even_under_grid_id_or_email(gated, session_factory, people):
    # UMANAGER1 asks; its Grid twin WMANAGER1 and a second id sharing its e-mail try to approve.
    gated.people = StaticPeople(
        {
            "UMANAGER1": Person("UMANAGER1", email="boss@corp.example", enterprise_user_id="WMANAGER1"),
            "WMANAGER1": Person("WMANAGER1", email="boss@corp.example", enterprise_user_id="WMANAGER1"),
            "UMANAGER2": Person("UMANAGER2", email="Boss@corp.example"),
            "UMANAGER3": Person("UMANAGER3", email="other@corp.example"),
        }
    )
    gated.policy.roles["manager"].members.append("WMANAGER1")
    result = requests.submit_request(gated, AgentIdentity("UMANAGER1"), form())
    assert isinstance(result, requests.Pending)
    assert result.ask.approvers == ("UMANAGER3",)
    rid = result.request.id
    for clicker in ("UMANAGER1", "WMANAGER1", "UMANAGER2"):
        outcome = approvals.approve_request(gated, rid, clicker_slack_id=clicker)
        assert outcome == approvals.Refused(approvals.REFUSAL_MESSAGES["self_approval"])
    assert len(events(session_factory, "approval.refused")) == 3
    assert isinstance(approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER3"), approvals.Decided)


def test_the_requester_is_compared_as_identified_at_submission(gated, session_factory):
    # UMANAGER1 and UMANAGER2 are one person on Grid (one enterprise id, two e-mail addresses).
    twins = {
        "UMANAGER1": Person("UMANAGER1", email="boss@corp.example", enterprise_user_id="WBOSS1"),
        "UMANAGER2": Person("UMANAGER2", email="boss.two@corp.example", enterprise_user_id="WBOSS1"),
        "UMANAGER3": Person("UMANAGER3", email="other@corp.example"),
    }
    gated.people = StaticPeople(twins)
    result = requests.submit_request(gated, AgentIdentity("UMANAGER1"), form())
    assert isinstance(result, requests.Pending) and result.ask.approvers == ("UMANAGER3",)
    # Later Slack cannot say who UMANAGER1 is: the stored Grid id still unmasks the twin.
    gated.people = StaticPeople({**twins, "UMANAGER1": Person("UMANAGER1", resolved=False)})
    outcome = approvals.approve_request(gated, result.request.id, clicker_slack_id="UMANAGER2")
    assert outcome == approvals.Refused(approvals.REFUSAL_MESSAGES["self_approval"])
    assert events(session_factory, "approval.granted") == []


def test_an_approver_the_directory_cannot_identify_is_refused_and_audited(gated, session_factory):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    gated.people = StaticPeople({"UMANAGER3": Person("UMANAGER3", resolved=False)})
    outcome = approvals.approve_request(gated, result.request.id, clicker_slack_id="UMANAGER3")
    assert outcome == approvals.Refused(approvals.REFUSAL_MESSAGES["identity_unavailable"])
    (refused,) = events(session_factory, "approval.refused")
    assert '"cause":"identity_unavailable"' in refused.details
    with session_factory() as db:
        assert db.get(ImpersonationRequest, result.request.id).state == "pending"


def test_two_distinct_approvers_needed_and_double_click_counts_once(gated, session_factory):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), form("initech", "u-dave"))
    assert isinstance(result, requests.Pending) and result.approvals_required == 2
    rid = result.request.id
    assert approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1") == approvals.Counted(rid, 1, 2)
    assert approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1") == approvals.AlreadyCounted(rid)
    decided = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER2")
    assert isinstance(decided, approvals.Decided) and decided.outcome == "approved"
    assert decided.link is not None and "/l/" in decided.link.url
    late = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER3")
    assert isinstance(late, approvals.AlreadyDecided) and late.outcome == "approved" and late.by == "UMANAGER2"
    assert len(events(session_factory, "approval.granted")) == 1
    token = decided.link.url.rsplit("/", 1)[1]
    assert isinstance(links.redeem(gated, token), links.Redemption)


def test_non_approver_refused_and_audited(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), form()).request.id
    out = approvals.approve_request(gated, rid, clicker_slack_id="UAGENT2")
    assert out == approvals.Refused(approvals.REFUSAL_MESSAGES["not_an_approver"])
    assert events(session_factory, "approval.refused")[0].actor_slack_id == "UAGENT2"


def test_designated_approvers_narrow_the_set(gated):
    gated.policy.gating.approvers_by_account["globex"] = ["UMANAGER2"]
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    assert result.ask.approvers == ("UMANAGER2",)
    out = approvals.approve_request(gated, result.request.id, clicker_slack_id="UMANAGER1")
    assert out == approvals.Refused(approvals.REFUSAL_MESSAGES["not_a_designated_approver"])


def test_deny_needs_reason_and_is_final(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), form()).request.id
    assert isinstance(approvals.deny_request(gated, rid, clicker_slack_id="UMANAGER1", reason="no"), approvals.Refused)
    denied = approvals.deny_request(gated, rid, clicker_slack_id="UMANAGER1", reason="not justified by ticket")
    assert isinstance(denied, approvals.Decided) and denied.outcome == "denied"
    after = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER2")
    assert isinstance(after, approvals.AlreadyDecided) and after.outcome == "denied" and after.by == "UMANAGER1"
    (event,) = events(session_factory, "approval.denied")
    # the reason is held apart, erasable, and the event refers to it (bot/domain/personal.py)
    assert "not justified by ticket" not in event.details
    assert revealed(session_factory, event)[1]["reason"] == "not justified by ticket"


def test_ttl_checked_at_click_time(gated, session_factory):
    with freeze_time("2026-11-25 10:00:00"):
        rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), form()).request.id
    with freeze_time("2026-11-25 10:30:00"):
        out = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1")
        assert isinstance(out, approvals.Decided) and out.outcome == "expired"
        again = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER2")
        assert isinstance(again, approvals.AlreadyDecided) and again.outcome == "expired"
    assert len(events(session_factory, "request.expired")) == 1


def test_ttl_one_second_before_still_approvable(gated):
    with freeze_time("2026-11-25 10:00:00"):
        rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), form()).request.id
    with freeze_time("2026-11-25 10:29:59"):
        out = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1")
        assert isinstance(out, approvals.Decided) and out.outcome == "approved"


def test_cancel_by_agent_only(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), form()).request.id
    assert isinstance(approvals.cancel_request(gated, rid, clicker_slack_id="UAGENT2"), approvals.Refused)
    out = approvals.cancel_request(gated, rid, clicker_slack_id="UAGENT1")
    assert isinstance(out, approvals.Decided) and out.outcome == "cancelled"
    assert isinstance(approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1"), approvals.AlreadyDecided)
    assert len(events(session_factory, "request.cancelled")) == 1


def test_break_glass(gated, session_factory):
    gated.policy.roles["senior"].members.append("UAGENT1")
    # senior has no can_break_glass: refused
    long_reason = "production outage for this customer, P1 incident INC-77, manager unreachable at night"
    out = requests.submit_request(gated, AgentIdentity("USENIOR1"), form(reason=long_reason, break_glass=True))
    assert isinstance(out, requests.Blocked) and out.cause.value == "break_glass_not_allowed"
    gated.policy = gated.policy.model_copy(
        update={"roles": {**gated.policy.roles, "senior": gated.policy.roles["senior"].model_copy(update={"can_break_glass": True})}}
    )
    short = requests.submit_request(gated, AgentIdentity("USENIOR1"), form(break_glass=True))
    assert isinstance(short, requests.Blocked) and short.cause.value == "break_glass_reason_too_short"
    granted = requests.submit_request(gated, AgentIdentity("USENIOR1"), form(reason=long_reason, break_glass=True))
    assert isinstance(granted, requests.Granted) and granted.bypassed == frozenset({"sensitive"})
    assert granted.request.break_glass
    (event,) = events(session_factory, "approval.bypassed")
    assert event.actor_slack_id == "USENIOR1"
    # never on an opted-out account
    opted = requests.submit_request(gated, AgentIdentity("USENIOR1"), form("umbrella", "u-eve", reason=long_reason, break_glass=True))
    assert isinstance(opted, requests.Blocked) and opted.cause.value == "opted_out"


def test_chain_stays_valid(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), form()).request.id
    approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1")
    with session_factory() as db:
        count, problem = verify_chain(db)
        assert problem is None
        assert count == db.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


# ---------------------------------------------------------------- approvers' DMs owed through the outbox


def test_the_approvers_asks_are_outbox_rows_committed_with_the_pending_request(gated):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    assert isinstance(result, requests.Pending)
    owed = outbox.rows(gated, kinds=[outbox.Kind.APPROVER])
    assert [(r.subject_id, r.recipient, r.state) for r in owed] == [(result.request.id, a, "pending") for a in result.ask.approvers]
    # the listener delivers exactly these at once
    assert approvals.ask_targets(result.ask) == [outbox.target_of(outbox.Kind.APPROVER, result.request.id, a) for a in result.ask.approvers]


def test_a_request_whose_transaction_rolls_back_owes_no_approver_dm(gated, session_factory, monkeypatch):
    opened = approvals.open_request_approval

    def open_then_fail(*args, **kwargs):
        opened(*args, **kwargs)  # the asks are enqueued in the request's transaction …
        raise RuntimeError("the request's transaction fails after the asks were written")

    monkeypatch.setattr(requests, "open_request_approval", open_then_fail)
    with pytest.raises(RuntimeError):
        requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    # … and roll back with it: no request, no audit event, no DM owed
    assert outbox.rows(gated) == []
    assert events(session_factory, "approval.requested") == []
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(ImpersonationRequest)).scalar_one() == 0


def test_a_decision_owes_an_edit_to_every_approver_asked_even_one_whose_dm_is_not_recorded(gated):
    pending = requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    # only UMANAGER1's ask reached Slack (and was recorded) before the decision
    outbox.deliver_due(gated, FakeCourier(), targets=[outbox.target_of(outbox.Kind.APPROVER, pending.request.id, "UMANAGER1")])
    decided = approvals.deny_request(gated, pending.request.id, clicker_slack_id="UMANAGER1", reason="not for this ticket")
    assert isinstance(decided, approvals.Decided)
    assert [m.recipient for m in decided.approvers_messages] == ["UMANAGER1"]
    assert decided.asked == ("UMANAGER1", "UMANAGER2", "UMANAGER3")
    edits = [r.recipient for r in outbox.rows(gated, kinds=[outbox.Kind.APPROVER])][3:]
    assert edits == ["UMANAGER1", "UMANAGER2", "UMANAGER3"]
    assert list(decided.targets[:3]) == [outbox.target_of(outbox.Kind.APPROVER, pending.request.id, a) for a in edits]


def test_an_approved_request_reads_as_approved_after_its_session_expired(gated):
    # the request's state is then `expired`, yet it was approved: a late approver DM or click says so
    pending = requests.submit_request(gated, AgentIdentity("UAGENT1"), form())
    decided = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER1")
    while not isinstance(decided, approvals.Decided):
        decided = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER2")
    session = links.redeem(gated, decided.link.url.rsplit("/", 1)[1]).session
    with freeze_time(session.expires_at + timedelta(minutes=1)):
        watch.expire_sessions(gated)
    assert requests.load_request(gated, pending.request.id).state == "expired"
    shown = asks.approver_message_state(gated, pending.request.id)
    assert isinstance(shown, approvals.Decided) and shown.outcome == "approved"
    late = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER3")
    assert isinstance(late, approvals.AlreadyDecided) and late.outcome == "approved"
