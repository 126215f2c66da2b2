"""A request read as a snapshot with Core SELECTs (bot/domain/snapshots.py) says exactly what
the ORM's RequestView.of says of the same row, whatever the request's shape."""
from __future__ import annotations

import pytest

from bot.db.models import ImpersonationRequest, ImpersonationSession
from bot.domain import links, requests
from bot.domain.requests import AgentIdentity, RequestForm
from bot.domain.snapshots import request_snapshot, session_of
from bot.domain.views import RequestView, SessionView
from tests.fakes.directory_data import load_directory

REASON = "customer cannot see their invoices since Monday"


@pytest.fixture
def directory(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive", "regulated"]})
    return ctx


@pytest.mark.parametrize(
    ("account", "user", "ticket", "expected"),
    [
        ("acme", "u-bob", "SUP-1", requests.Granted),  # granted at once, no flags
        ("globex", "u-carol", "SUP-9", requests.Pending),  # two flags, waiting for approvers
    ],
)
def test_a_snapshot_is_the_orm_view_of_the_same_row(directory, session_factory, account, user, ticket, expected):
    form = RequestForm(account=account, user=user, reason=REASON, ticket=ticket, duration_minutes=30, scope="read_only")
    result = requests.submit_request(directory, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, expected), result
    request_id = result.request.id
    with session_factory() as db:
        snapshot = request_snapshot(db, request_id)
        orm = db.get_one(ImpersonationRequest, request_id)
        assert snapshot is not None
        assert snapshot.view == RequestView.of(orm)
        assert (snapshot.id, snapshot.agent_slack_id) == (orm.id, orm.agent_slack_id)
        assert (snapshot.account_id, snapshot.agent_email, snapshot.agent_role) == (orm.account_id, orm.agent_email, orm.agent_role)
        assert snapshot.view.created_at.utcoffset() is not None  # timezone-aware, as the ORM's
    if account == "globex":
        assert snapshot.view.account_flags == frozenset({"sensitive", "regulated"})


def test_no_snapshot_of_a_request_that_does_not_exist(directory, session_factory):
    with session_factory() as db:
        assert request_snapshot(db, "0" * 32) is None


def test_a_requests_session_reads_as_the_orm_view_of_it(directory, session_factory):
    form = RequestForm(account="acme", user="u-bob", reason=REASON, ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(directory, AgentIdentity("UAGENT1"), form)
    assert isinstance(granted, requests.Granted)
    with session_factory() as db:
        before = request_snapshot(db, granted.request.id)
        assert before is not None and session_of(db, before.view) is None  # not redeemed yet
    redeemed = links.redeem(directory, granted.link.url.rsplit("/", 1)[1])
    assert isinstance(redeemed, links.Redemption)
    with session_factory() as db:
        snapshot = request_snapshot(db, granted.request.id)
        assert snapshot is not None and snapshot.updated_at == db.get_one(ImpersonationRequest, granted.request.id).updated_at
        assert session_of(db, snapshot.view) == SessionView.of(db.get_one(ImpersonationSession, redeemed.session.id))
