"""bot/domain/requests.py: what the request modal offers an agent, and one open access per
agent, account and customer user."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain import links, requests, sessions
from bot.domain.policy import BlockCause
from bot.domain.clock import utcnow
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory


@pytest.mark.parametrize(
    ("max_minutes", "offered"),
    [
        (20, (15, 20)),  # the role's own maximum, not only the choices below it
        (60, (15, 30, 60)),  # the cap is one of the choices: offered once
        (45, (15, 30, 45)),
        (10, (10,)),  # below every choice: the cap alone
        (240, (15, 30, 60, 120, 240)),
    ],
)
def test_the_duration_choices_end_at_the_roles_own_maximum(ctx, max_minutes, offered):
    ctx.policy.roles["support"] = ctx.policy.roles["support"].model_copy(update={"max_minutes": max_minutes})
    options = requests.modal_options(ctx, "UAGENT1")
    assert options.duration_choices == offered
    assert options.default_duration == offered[0]


def test_no_role_no_durations(ctx):
    assert requests.modal_options(ctx, "UNOBODY1").duration_choices == ()


# --- one open access per agent, account and customer user -----------------------------------


@pytest.fixture
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})


def _form(account="acme", user="u-bob"):
    return RequestForm(account=account, user=user, reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")


def _count(ctx, model, *where):
    with ctx.sessions() as db:
        return db.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_a_second_request_while_a_grant_is_open_points_to_it(ctx, directory):
    first = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert isinstance(again, requests.AlreadyOpen)
    assert again.request.id == first.request.id and again.session_id is None and again.until == first.link.expires_at
    assert _count(ctx, ImpersonationRequest) == 1
    with ctx.sessions() as db:
        (blocked,) = db.execute(select(AuditEvent).where(AuditEvent.type == "request.blocked")).scalars()
    assert blocked.request_id == first.request.id and '"cause":"already_open"' in blocked.details


def test_a_live_session_and_a_pending_ask_are_open_too(ctx, directory):
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    live = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
    again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert isinstance(again, requests.AlreadyOpen) and again.session_id == live.id and again.until == live.expires_at
    pending = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form("globex", "u-carol"))
    assert isinstance(pending, requests.Pending)
    again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form("globex", "u-carol"))
    assert isinstance(again, requests.AlreadyOpen) and again.request.state == "pending"


def test_once_the_session_is_over_a_new_request_is_issued(ctx, directory):
    granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    live = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session
    sessions.end_session(ctx, live.id, actor_slack_id="UAGENT1")
    assert isinstance(requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form()), requests.Granted)


def test_other_agents_and_other_users_are_not_affected(ctx, directory):
    requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert isinstance(requests.submit_request(ctx, AgentIdentity("USENIOR1"), _form()), requests.Granted)


def test_an_expired_link_is_not_open(ctx, directory):
    requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    with freeze_time(utcnow() + timedelta(minutes=ctx.policy.links.redeem_window_minutes, seconds=1)):
        assert isinstance(requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form()), requests.Granted)


def test_concurrent_submissions_issue_exactly_one_access(ctx, directory):
    barrier = threading.Barrier(8)
    results: list[object] = []

    def submit() -> None:
        barrier.wait()
        results.append(requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form()))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, requests.Granted) for r in results) == 1
    assert sum(isinstance(r, requests.AlreadyOpen) for r in results) == 7
    assert _count(ctx, ImpersonationRequest) == 1


# --- re-initiation: a new request soon after the agent's last session with that user ended ------

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=timezone.utc)


def _session(ctx, agent="UAGENT1", form=None):
    """A granted request redeemed at once: its live session."""
    granted = requests.submit_request(ctx, AgentIdentity(agent), form or _form())
    assert isinstance(granted, requests.Granted), granted
    return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session


def _ended(ctx, clock, *, then: timedelta):
    """A session of UAGENT1's on acme/u-bob, ended by them at once; the clock then moves on."""
    session = _session(ctx)
    sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")
    clock.tick(then)
    return session


def _with_reinitiation(ctx, **changes) -> None:
    ctx.policy = ctx.policy.model_copy(update={"reinitiation": ctx.policy.reinitiation.model_copy(update=changes)})


def _stored(ctx, request_id):
    with ctx.sessions() as db:
        request = db.get(ImpersonationRequest, request_id)
        db.expunge(request)
        return request


def _reinitiated(ctx, request_id):
    with ctx.sessions() as db:
        return [json.loads(d) for d in db.execute(select(AuditEvent.details).where(AuditEvent.request_id == request_id, AuditEvent.type == "request.reinitiated")).scalars()]


def test_a_request_within_the_window_after_the_session_ended_is_a_linked_reinitiation(ctx, directory):
    with freeze_time(T0) as clock:
        first = _session(ctx)
        clock.tick(timedelta(minutes=5))
        sessions.end_session(ctx, first.id, actor_slack_id="UAGENT1")
        clock.tick(timedelta(minutes=12, seconds=20))
        again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())  # /impersonate: no session carried
    assert isinstance(again, requests.Granted)
    stored = _stored(ctx, again.request.id)
    assert (stored.previous_session_id, stored.reinitiation_ordinal) == (first.id, 1)
    assert stored.previous_session_ended_at == T0 + timedelta(minutes=5)
    assert again.request.minutes_after_previous == 13  # rounded up: "within 13 min"
    # logged on its own: the request's own events, one of them saying what it re-initiates
    assert _reinitiated(ctx, again.request.id) == [
        {
            "previous_session_id": first.id,
            "ordinal": 1,
            "previous_ended_at": "2030-03-04T10:05:00.000000Z",
            "minutes_since_end": 13,
            "window_minutes": 30,
            "via": "command",
        }
    ]
    assert _reinitiated(ctx, first.request.id) == []


def test_the_button_and_the_command_link_alike_the_audit_says_which(ctx, directory):
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=1))
        again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), replace(_form(), previous_session_id=first.id))
    assert _stored(ctx, again.request.id).previous_session_id == first.id
    assert [e["via"] for e in _reinitiated(ctx, again.request.id)] == ["button"]


@pytest.mark.parametrize(("after", "linked"), [(timedelta(minutes=30), True), (timedelta(minutes=30, seconds=1), False)])
def test_the_window_is_counted_from_the_end_of_the_session(ctx, directory, after, linked):
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=after)
        # even from the session's own button: outside the window it is a fresh request
        again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), replace(_form(), previous_session_id=first.id))
    stored = _stored(ctx, again.request.id)
    assert (stored.previous_session_id, stored.reinitiation_ordinal) == ((first.id, 1) if linked else (None, 0))
    assert len(_reinitiated(ctx, again.request.id)) == (1 if linked else 0)


def test_the_window_comes_from_the_policy(ctx, directory):
    _with_reinitiation(ctx, window_minutes=90)
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=80))
        again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert _stored(ctx, again.request.id).previous_session_id == first.id
    assert _reinitiated(ctx, again.request.id)[0]["window_minutes"] == 90


def test_a_session_that_expired_by_the_clock_ended_at_its_end(ctx, directory):
    """The scheduler has not marked it expired yet: it is over all the same, since its end."""
    with freeze_time(T0) as clock:
        first = _session(ctx)
        clock.tick(timedelta(minutes=30 + 20))  # a 30-minute session, 20 minutes past its end
        again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    stored = _stored(ctx, again.request.id)
    assert (stored.previous_session_id, stored.previous_session_ended_at) == (first.id, first.expires_at)
    assert _reinitiated(ctx, again.request.id)[0]["minutes_since_end"] == 20


def test_consecutive_reinitiations_are_numbered_and_a_late_request_starts_afresh(ctx, directory):
    with freeze_time(T0) as clock:
        session = _session(ctx)
        ordinals = []
        for _ in range(3):
            sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")
            clock.tick(timedelta(minutes=10))
            session = _session(ctx)
            ordinals.append(_stored(ctx, session.request.id).reinitiation_ordinal)
        sessions.end_session(ctx, session.id, actor_slack_id="UAGENT1")
        clock.tick(timedelta(hours=2))  # outside the window: the chain is broken
        fresh = _session(ctx)
        sessions.end_session(ctx, fresh.id, actor_slack_id="UAGENT1")
        clock.tick(timedelta(minutes=1))
        restarted = _session(ctx)
    assert ordinals == [1, 2, 3]
    assert (_stored(ctx, fresh.request.id).previous_session_id, _stored(ctx, fresh.request.id).reinitiation_ordinal) == (None, 0)
    assert (_stored(ctx, restarted.request.id).previous_session_id, _stored(ctx, restarted.request.id).reinitiation_ordinal) == (fresh.id, 1)


def test_a_request_that_gave_no_session_does_not_move_the_chain(ctx, directory):
    """A re-initiation whose link lapsed unopened gave no access: the next request still
    follows the same session, and is still #1."""
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=1))
        unopened = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
        clock.tick(timedelta(minutes=ctx.policy.links.redeem_window_minutes, seconds=1))
        again = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert _stored(ctx, unopened.request.id).reinitiation_ordinal == 1
    assert (_stored(ctx, again.request.id).previous_session_id, _stored(ctx, again.request.id).reinitiation_ordinal) == (first.id, 1)


def test_only_the_same_agent_and_customer_user_link(ctx, directory):
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=1))
        other_agent = requests.submit_request(ctx, AgentIdentity("USENIOR1"), _form())
        other_user = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form("initech", "u-dave"))
        # someone else's session id carried in the modal links nothing either
        forged = requests.submit_request(ctx, AgentIdentity("USENIOR1"), replace(_form("initech", "u-dave"), previous_session_id=first.id))
    for result in (other_agent, other_user, forged):
        assert isinstance(result, requests.Granted), result
        assert (_stored(ctx, result.request.id).previous_session_id, _stored(ctx, result.request.id).reinitiation_ordinal) == (None, 0)


def test_a_request_while_the_last_session_is_still_live_is_no_reinitiation(ctx, directory):
    """With one open access turned off, a second access next to a live session is possible:
    it follows nothing (the earlier session, ended in the window, is not the last one)."""
    ctx.policy = ctx.policy.model_copy(update={"requests": ctx.policy.requests.model_copy(update={"one_open_access": False})})
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=1))
        _session(ctx)  # live
        clock.tick(timedelta(minutes=1))
        beside = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert _stored(ctx, beside.request.id).previous_session_id is None


def test_from_the_nth_reinitiation_the_policy_asks_for_approval(ctx, directory):
    _with_reinitiation(ctx, require_approval_from=2)
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=2))
        second = _session(ctx)  # #1: granted at once on the ungated account
        sessions.end_session(ctx, second.id, actor_slack_id="UAGENT1")
        clock.tick(timedelta(minutes=2))
        third = requests.submit_request(ctx, AgentIdentity("UAGENT1"), _form())
    assert isinstance(third, requests.Pending)
    assert (third.request.gated_by, third.request.reinitiation_ordinal, third.approvals_required) == (frozenset({"reinitiation"}), 2, 1)
    assert third.ask is not None and "UMANAGER1" in third.ask.approvers
    assert _reinitiated(ctx, third.request.id)[0]["ordinal"] == 2


def test_a_refused_reinitiation_stores_nothing(ctx, directory):
    """A fresh reason is still required: a re-initiation is decided like any request."""
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=1))
        refused = requests.submit_request(ctx, AgentIdentity("UAGENT1"), replace(_form(), reason="same", previous_session_id=first.id))
    assert isinstance(refused, requests.Blocked) and refused.cause.value == "reason_too_short"
    assert _count(ctx, ImpersonationRequest) == 1 and _count(ctx, AuditEvent, AuditEvent.type == "request.reinitiated") == 0


# --- "Start a new request" on a session's DM ----------------------------------------------------


def test_the_button_of_an_own_session_that_is_over_prefills_and_carries_it(ctx, directory):
    with freeze_time(T0) as clock:
        first = _session(ctx)
        clock.tick(timedelta(minutes=31))  # over by the clock, not yet tidied
        start = requests.new_request_from_session(ctx, first.id, agent_slack_id="UAGENT1")
    assert isinstance(start, requests.NewRequestModal)
    assert (start.request.account, start.session_id, start.options.role) == ("acme", first.id, "support")


def test_the_button_of_a_live_session_shows_the_open_access(ctx, directory):
    with freeze_time(T0):
        first = _session(ctx)
        start = requests.new_request_from_session(ctx, first.id, agent_slack_id="UAGENT1")
    assert isinstance(start, requests.AlreadyOpen) and start.session_id == first.id


def test_the_button_of_someone_elses_session_carries_nothing_and_is_audited(ctx, directory):
    with freeze_time(T0) as clock:
        first = _ended(ctx, clock, then=timedelta(minutes=1))
        start = requests.new_request_from_session(ctx, first.id, agent_slack_id="USENIOR1")
        unknown = requests.new_request_from_session(ctx, "", agent_slack_id="USENIOR1")
    assert start == unknown == requests.NewRequestModal(requests.modal_options(ctx, "USENIOR1"))
    assert _count(ctx, AuditEvent, AuditEvent.type == "session.reinitiation_refused", AuditEvent.actor_slack_id == "USENIOR1") == 1


@pytest.mark.parametrize(
    ("cause", "instead"),
    [
        (BlockCause.UNKNOWN_ACCOUNT, "Search the Account menu"),
        (BlockCause.OPTED_OUT, "ask RevOps"),
        (BlockCause.NO_ROLE, "`/impersonate help` lists what you can do"),
        (BlockCause.NOT_ASSIGNED, "Ask your manager to assign it to you"),
        (BlockCause.UNKNOWN_USER, "Pick one from the Customer user menu"),
        (BlockCause.PROTECTED_USER, "Pick another user"),
        (BlockCause.DURATION_OVER_CAP, "Pick a shorter length"),
        (BlockCause.SCOPE_NOT_ALLOWED, "Choose Read-only"),
        (BlockCause.BREAK_GLASS_NOT_ALLOWED, "Leave it unticked to ask for approval"),
        (BlockCause.IDENTITY_UNAVAILABLE, "try again in a minute"),
    ],
)
def test_a_refusal_names_what_the_agent_can_do_instead(cause, instead):
    assert instead in requests.BLOCK_MESSAGES[cause]
