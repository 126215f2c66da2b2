"""bot/domain/requests.py: what the request modal offers an agent, and one open access per
agent, account and customer user."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain import links, requests, sessions
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
