"""Approvals domain: eligibility, N distinct approvers, exactly-once decisions, TTL."""
from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain import approvals, links, outbox, requests, sessions, watch
from bot.domain.audit import verify_chain
from bot.domain.clock import utcnow
from bot.domain.policy import ExtensionRefusal
from bot.domain.ports import Person, StaticPeople
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory
from tests.personal_values import revealed

REASON = "customer cannot see their invoices since Monday"


def _form(account="globex", user="u-carol", **kw):
    base = dict(account=account, user=user, reason=REASON, ticket="SUP-9", duration_minutes=30, scope="read_only")
    base.update(kw)
    return RequestForm(**base)


@pytest.fixture
def gated(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["regulated"], "umbrella": ["opted_out"]})
    return ctx


def _events(session_factory, type_):
    with session_factory() as db:
        return db.execute(select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq)).scalars().all()


def test_gated_request_is_pending_and_asks_every_eligible_approver(gated, session_factory):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
    assert isinstance(result, requests.Pending)
    assert result.ask is not None
    assert result.ask.approvers == ("UMANAGER1", "UMANAGER2", "UMANAGER3")
    (asked,) = _events(session_factory, "approval.requested")
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
    result = requests.submit_request(gated, AgentIdentity("UMANAGER1"), _form())
    assert isinstance(result, requests.Pending)
    assert result.ask.approvers == ("UMANAGER3",)
    rid = result.request.id
    for clicker in ("UMANAGER1", "WMANAGER1", "UMANAGER2"):
        outcome = approvals.approve_request(gated, rid, clicker_slack_id=clicker)
        assert outcome == approvals.Refused(approvals.REFUSAL_MESSAGES["self_approval"])
    assert len(_events(session_factory, "approval.refused")) == 3
    assert isinstance(approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER3"), approvals.Decided)


def test_the_requester_is_compared_as_identified_at_submission(gated, session_factory):
    # UMANAGER1 and UMANAGER2 are one person on Grid (one enterprise id, two e-mail addresses).
    twins = {
        "UMANAGER1": Person("UMANAGER1", email="boss@corp.example", enterprise_user_id="WBOSS1"),
        "UMANAGER2": Person("UMANAGER2", email="boss.two@corp.example", enterprise_user_id="WBOSS1"),
        "UMANAGER3": Person("UMANAGER3", email="other@corp.example"),
    }
    gated.people = StaticPeople(twins)
    result = requests.submit_request(gated, AgentIdentity("UMANAGER1"), _form())
    assert isinstance(result, requests.Pending) and result.ask.approvers == ("UMANAGER3",)
    # Later Slack cannot say who UMANAGER1 is: the stored Grid id still unmasks the twin.
    gated.people = StaticPeople({**twins, "UMANAGER1": Person("UMANAGER1", resolved=False)})
    outcome = approvals.approve_request(gated, result.request.id, clicker_slack_id="UMANAGER2")
    assert outcome == approvals.Refused(approvals.REFUSAL_MESSAGES["self_approval"])
    assert _events(session_factory, "approval.granted") == []


def test_an_approver_the_directory_cannot_identify_is_refused_and_audited(gated, session_factory):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
    gated.people = StaticPeople({"UMANAGER3": Person("UMANAGER3", resolved=False)})
    outcome = approvals.approve_request(gated, result.request.id, clicker_slack_id="UMANAGER3")
    assert outcome == approvals.Refused(approvals.REFUSAL_MESSAGES["identity_unavailable"])
    (refused,) = _events(session_factory, "approval.refused")
    assert '"cause":"identity_unavailable"' in refused.details
    with session_factory() as db:
        assert db.get(ImpersonationRequest, result.request.id).state == "pending"


def test_two_distinct_approvers_needed_and_double_click_counts_once(gated, session_factory):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form("initech", "u-dave"))
    assert isinstance(result, requests.Pending) and result.approvals_required == 2
    rid = result.request.id
    assert approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1") == approvals.Counted(rid, 1, 2)
    assert approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1") == approvals.AlreadyCounted(rid)
    decided = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER2")
    assert isinstance(decided, approvals.Decided) and decided.outcome == "approved"
    assert decided.link is not None and "/l/" in decided.link.url
    late = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER3")
    assert isinstance(late, approvals.AlreadyDecided) and late.outcome == "approved" and late.by == "UMANAGER2"
    assert len(_events(session_factory, "approval.granted")) == 1
    token = decided.link.url.rsplit("/", 1)[1]
    assert isinstance(links.redeem(gated, token), links.Redemption)


def test_non_approver_refused_and_audited(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form()).request.id
    out = approvals.approve_request(gated, rid, clicker_slack_id="UAGENT2")
    assert out == approvals.Refused(approvals.REFUSAL_MESSAGES["not_an_approver"])
    assert _events(session_factory, "approval.refused")[0].actor_slack_id == "UAGENT2"


def test_designated_approvers_narrow_the_set(gated):
    gated.policy.gating.approvers_by_account["globex"] = ["UMANAGER2"]
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
    assert result.ask.approvers == ("UMANAGER2",)
    out = approvals.approve_request(gated, result.request.id, clicker_slack_id="UMANAGER1")
    assert out == approvals.Refused(approvals.REFUSAL_MESSAGES["not_a_designated_approver"])


def test_deny_needs_reason_and_is_final(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form()).request.id
    assert isinstance(approvals.deny_request(gated, rid, clicker_slack_id="UMANAGER1", reason="no"), approvals.Refused)
    denied = approvals.deny_request(gated, rid, clicker_slack_id="UMANAGER1", reason="not justified by ticket")
    assert isinstance(denied, approvals.Decided) and denied.outcome == "denied"
    after = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER2")
    assert isinstance(after, approvals.AlreadyDecided) and after.outcome == "denied" and after.by == "UMANAGER1"
    (event,) = _events(session_factory, "approval.denied")
    # the reason is held apart, erasable, and the event refers to it (bot/domain/personal.py)
    assert "not justified by ticket" not in event.details
    assert revealed(session_factory, event)[1]["reason"] == "not justified by ticket"


def test_ttl_checked_at_click_time(gated, session_factory):
    with freeze_time("2026-11-25 10:00:00"):
        rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form()).request.id
    with freeze_time("2026-11-25 10:30:00"):
        out = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1")
        assert isinstance(out, approvals.Decided) and out.outcome == "expired"
        again = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER2")
        assert isinstance(again, approvals.AlreadyDecided) and again.outcome == "expired"
    assert len(_events(session_factory, "request.expired")) == 1


def test_ttl_one_second_before_still_approvable(gated):
    with freeze_time("2026-11-25 10:00:00"):
        rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form()).request.id
    with freeze_time("2026-11-25 10:29:59"):
        out = approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1")
        assert isinstance(out, approvals.Decided) and out.outcome == "approved"


def test_cancel_by_agent_only(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form()).request.id
    assert isinstance(approvals.cancel_request(gated, rid, clicker_slack_id="UAGENT2"), approvals.Refused)
    out = approvals.cancel_request(gated, rid, clicker_slack_id="UAGENT1")
    assert isinstance(out, approvals.Decided) and out.outcome == "cancelled"
    assert isinstance(approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1"), approvals.AlreadyDecided)
    assert len(_events(session_factory, "request.cancelled")) == 1


def test_break_glass(gated, session_factory):
    gated.policy.roles["senior"].members.append("UAGENT1")
    # senior has no can_break_glass: refused
    long_reason = "production outage for this customer, P1 incident INC-77, manager unreachable at night"
    out = requests.submit_request(gated, AgentIdentity("USENIOR1"), _form(reason=long_reason, break_glass=True))
    assert isinstance(out, requests.Blocked) and out.cause.value == "break_glass_not_allowed"
    gated.policy = gated.policy.model_copy(
        update={"roles": {**gated.policy.roles, "senior": gated.policy.roles["senior"].model_copy(update={"can_break_glass": True})}}
    )
    short = requests.submit_request(gated, AgentIdentity("USENIOR1"), _form(break_glass=True))
    assert isinstance(short, requests.Blocked) and short.cause.value == "break_glass_reason_too_short"
    granted = requests.submit_request(gated, AgentIdentity("USENIOR1"), _form(reason=long_reason, break_glass=True))
    assert isinstance(granted, requests.Granted) and granted.bypassed == frozenset({"sensitive"})
    assert granted.request.break_glass
    (event,) = _events(session_factory, "approval.bypassed")
    assert event.actor_slack_id == "USENIOR1"
    # never on an opted-out account
    opted = requests.submit_request(gated, AgentIdentity("USENIOR1"), _form("umbrella", "u-eve", reason=long_reason, break_glass=True))
    assert isinstance(opted, requests.Blocked) and opted.cause.value == "opted_out"


def _live_session(ctx, agent="USENIOR1", account="acme", user="u-bob"):
    granted = requests.submit_request(ctx, AgentIdentity(agent), _form(account, user, duration_minutes=60))
    assert isinstance(granted, requests.Granted), granted
    red = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])
    return red.session


def test_an_extension_past_the_roles_cap_is_approved_up_to_the_ceiling_and_no_further(gated, session_factory):
    gated.policy = gated.policy.model_copy(update={"extensions": gated.policy.extensions.model_copy(update={"max_total_minutes": 180})})
    with freeze_time("2026-11-25 10:00:00"):
        session = _live_session(gated)  # senior: cap 120 min, session 60 min
        asked = approvals.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=90, reason="still reproducing the bug")
        assert isinstance(asked, approvals.ExtensionAsked)  # 150 min passes the cap: an approval
        (requested,) = _events(session_factory, "extension.requested")
        assert '"past_cap":true' in requested.details and '"new_total_minutes":150' in requested.details
        out = approvals.decide_extension(gated, asked.ask.extension.id, clicker_slack_id="UMANAGER1", approve=True)
        assert isinstance(out, approvals.Decided) and out.outcome == "approved"
        assert out.session.expires_at == utcnow() + timedelta(minutes=150)
        trimmed = approvals.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=60, reason="need a bit more time")
        assert isinstance(trimmed, approvals.ExtensionAsked) and trimmed.ask.extension.minutes == 30  # to the 180-minute ceiling
        out = approvals.decide_extension(gated, trimmed.ask.extension.id, clicker_slack_id="UMANAGER2", approve=True)
        assert out.session.expires_at == utcnow() + timedelta(minutes=180)
        again = approvals.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=15, reason="need a bit more time")
        assert again == approvals.Refused(approvals.EXTENSION_REFUSALS[ExtensionRefusal.AT_CEILING].format(ceiling=180, reason_min=10))
    assert len(_events(session_factory, "extension.granted")) == 2


def test_a_role_that_may_self_extend_does_so_within_its_cap_at_once(gated, session_factory):
    gated.policy.roles["senior"] = gated.policy.roles["senior"].model_copy(update={"can_self_extend": True})
    with freeze_time("2026-11-25 10:00:00"):
        session = _live_session(gated)  # 60 of the senior's 120 minutes
        granted = approvals.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=30, reason="still reproducing the bug")
        assert isinstance(granted, approvals.ExtensionGranted)
        assert granted.session.expires_at == utcnow() + timedelta(minutes=90)
        (event,) = _events(session_factory, "extension.granted")
        assert event.actor_slack_id == "USENIOR1" and '"self_served":true' in event.details
        assert _events(session_factory, "extension.requested") == []
        # past the cap, the same role asks like anyone else
        past = approvals.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=60, reason="the fix needs a deploy")
        assert isinstance(past, approvals.ExtensionAsked) and past.ask.approvers


def test_extension_needs_the_power(gated, session_factory):
    session = _live_session(gated, agent="UAGENT1")
    out = approvals.request_extension(gated, session.id, agent_slack_id="UAGENT1", minutes=15, reason="still reproducing the bug")
    assert isinstance(out, approvals.Refused)
    # re-initiation: a new request linked to the previous session, once it is over
    sessions.end_session(gated, session.id, actor_slack_id="UAGENT1")
    again = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form("acme", "u-bob", previous_session_id=session.id))
    assert isinstance(again, requests.Granted) and again.request.previous_session_id == session.id


def test_chain_stays_valid(gated, session_factory):
    rid = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form()).request.id
    approvals.approve_request(gated, rid, clicker_slack_id="UMANAGER1")
    with session_factory() as db:
        count, problem = verify_chain(db)
        assert problem is None
        assert count == db.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


# ---------------------------------------------------------------- approvers' DMs owed through the outbox


def test_the_approvers_asks_are_outbox_rows_committed_with_the_pending_request(gated):
    result = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
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
        requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
    # … and roll back with it: no request, no audit event, no DM owed
    assert outbox.rows(gated) == []
    assert _events(session_factory, "approval.requested") == []
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(ImpersonationRequest)).scalar_one() == 0


def test_an_extension_owes_its_asks_and_the_agents_dm_in_its_transaction(gated):
    granted = requests.submit_request(gated, AgentIdentity("USENIOR1"), _form(account="acme", user="u-bob"))
    session = links.redeem(gated, granted.link.url.rsplit("/", 1)[1]).session
    before = len(outbox.rows(gated))
    asked = approvals.request_extension(gated, session.id, agent_slack_id="USENIOR1", minutes=15, reason=REASON)
    assert isinstance(asked, approvals.ExtensionAsked)
    owed = [(r.kind, r.subject_id, r.recipient) for r in outbox.rows(gated)[before:]]
    extension = asked.ask.extension
    assert owed == [*(("approver", extension.id, a) for a in asked.ask.approvers), ("agent", granted.request.id, "USENIOR1")]
    assert approvals.ask_targets(asked.ask) == [outbox.target_of(outbox.Kind(k), s, r) for k, s, r in owed]


def test_a_decision_owes_an_edit_to_every_approver_asked_even_one_whose_dm_is_not_recorded(gated):
    pending = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
    approvals.record_message(gated, pending.request.id, purpose=approvals.Purpose.APPROVER, recipient="UMANAGER1", channel="DMANAGER1", ts="1.000001")
    decided = approvals.deny_request(gated, pending.request.id, clicker_slack_id="UMANAGER1", reason="not for this ticket")
    assert isinstance(decided, approvals.Decided)
    assert decided.asked == ("UMANAGER1", "UMANAGER2", "UMANAGER3")
    edits = [r.recipient for r in outbox.rows(gated, kinds=[outbox.Kind.APPROVER])][3:]
    assert edits == ["UMANAGER1", "UMANAGER2", "UMANAGER3"]
    assert approvals.outcome_targets(decided)[:3] == [outbox.target_of(outbox.Kind.APPROVER, pending.request.id, a) for a in edits]


def test_an_approved_request_reads_as_approved_after_its_session_expired(gated):
    # the request's state is then `expired`, yet it was approved: a late approver DM or click says so
    pending = requests.submit_request(gated, AgentIdentity("UAGENT1"), _form())
    decided = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER1")
    while not isinstance(decided, approvals.Decided):
        decided = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER2")
    session = links.redeem(gated, decided.link.url.rsplit("/", 1)[1]).session
    with freeze_time(session.expires_at + timedelta(minutes=1)):
        watch.expire_sessions(gated)
    assert requests.load_request(gated, pending.request.id).state == "expired"
    shown = approvals.approver_message_state(gated, pending.request.id)
    assert isinstance(shown, approvals.Decided) and shown.outcome == "approved"
    late = approvals.approve_request(gated, pending.request.id, clicker_slack_id="UMANAGER3")
    assert isinstance(late, approvals.AlreadyDecided) and late.outcome == "approved"
