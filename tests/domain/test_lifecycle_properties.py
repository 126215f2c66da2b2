"""Property test: random sequences of request / approve / deny / cancel /
clock / redeem / end steps only ever make legal transitions, and a final state never changes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.db.models import AuditEvent, ImpersonationRequest, RequestState
from bot.domain import approvals, links, requests, sessions
from bot.domain.audit import verify_chain
from bot.domain.lifecycle import ALLOWED, FINAL
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory
from tests.conftest import allow_many_open_accesses

APPROVERS = ["UMANAGER1", "UMANAGER2", "UMANAGER3", "UAGENT1", "UAGENT2"]
DECISION_EVENTS = {"approval.granted", "approval.denied", "request.expired", "request.cancelled"}

step = st.one_of(
    st.tuples(st.just("approve"), st.sampled_from(APPROVERS)),
    st.tuples(st.just("deny"), st.sampled_from(APPROVERS)),
    st.tuples(st.just("cancel"), st.sampled_from(["UAGENT1", "UAGENT2"])),
    st.tuples(st.just("clock"), st.integers(min_value=1, max_value=40)),
    st.tuples(st.just("redeem"), st.just("")),
    st.tuples(st.just("end"), st.sampled_from(["UAGENT1", "UAGENT2"])),
)


@pytest.fixture
def world(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["regulated"]})
    # random sequences open several accesses to one user at once (the one-open-access rule has
    # its own tests in tests/domain/test_requests.py)
    return allow_many_open_accesses(ctx)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(account=st.sampled_from([("globex", "u-carol"), ("initech", "u-dave"), ("acme", "u-bob")]), steps=st.lists(step, max_size=12))
def test_random_sequences_make_only_legal_transitions(world, session_factory, account, steps):
    start = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
    with freeze_time(start) as clock:
        form = RequestForm(account=account[0], user=account[1], reason="customer reports missing invoices", ticket="SUP-1", duration_minutes=15, scope="read_only")
        result = requests.submit_request(world, AgentIdentity("UAGENT1"), form)
        assert isinstance(result, (requests.Pending, requests.Granted))
        request_id = result.request.id
        token = result.link.url.rsplit("/", 1)[1] if isinstance(result, requests.Granted) else None
        state = _state(session_factory, request_id)
        seen_final: str | None = None
        for kind, arg in steps:
            if kind == "approve":
                out = approvals.approve_request(world, request_id, clicker_slack_id=arg)
                if isinstance(out, approvals.Decided) and out.link is not None:
                    token = out.link.url.rsplit("/", 1)[1]
            elif kind == "deny":
                approvals.deny_request(world, request_id, clicker_slack_id=arg, reason="not justified")
            elif kind == "cancel":
                approvals.cancel_request(world, request_id, clicker_slack_id=arg)
            elif kind == "clock":
                clock.tick(timedelta(minutes=arg))
            elif kind == "redeem" and token is not None:
                links.redeem(world, token)
            elif kind == "end":
                check = sessions.session_for_request(world, request_id)
                if check is not None:
                    try:
                        sessions.end_session(world, check.id, actor_slack_id=arg)
                    except sessions.EndRefused:
                        pass
            new_state = _state(session_factory, request_id)
            if new_state != state:
                assert RequestState(new_state) in ALLOWED[RequestState(state)], f"illegal {state} → {new_state}"
            if seen_final is not None:
                assert new_state == seen_final, "a final state changed"
            if RequestState(new_state) in FINAL:
                seen_final = new_state
            state = new_state
    with session_factory() as db:
        assert verify_chain(db)[1] is None
        decisions = db.execute(
            select(AuditEvent.type).where(AuditEvent.request_id == request_id, AuditEvent.type.in_(DECISION_EVENTS))
        ).scalars().all()
        assert len(decisions) <= 1, decisions


def _state(session_factory, request_id: str) -> str:
    with session_factory() as db:
        return db.execute(select(ImpersonationRequest.state).where(ImpersonationRequest.id == request_id)).scalar_one()
