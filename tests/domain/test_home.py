"""bot/domain/home.py: what each person's Home tab shows, from their powers, and which
changes owe whose Home a publish (through the outbox, at most one a second per person)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from bot.domain import home, links, outbox, requests
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
REASON = "Customer cannot see the invoice page"


@pytest.fixture
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})


def submit(ctx, account="acme", user="u-bob", agent="UAGENT1"):
    form = RequestForm(account=account, user=user, reason=REASON, ticket="SUP-1", duration_minutes=30, scope="read_only")
    return requests.submit_request(ctx, AgentIdentity(agent), form)


def live_session(ctx, **kw):
    granted = submit(ctx, **kw)
    assert isinstance(granted, requests.Granted), granted
    return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1]).session


def home_rows(ctx, state="pending"):
    return [(r.subject_id, r.recipient) for r in outbox.rows(ctx, kinds=[outbox.Kind.HOME]) if r.state == state]


@freeze_time(T0)
def test_each_person_sees_only_what_their_powers_allow(ctx, directory):
    live = live_session(ctx)
    pending = submit(ctx, account="globex", user="u-carol")  # sensitive: waits for a manager
    assert isinstance(pending, requests.Pending)

    agent = home.home_view(ctx, "UAGENT1")  # support: impersonates, nothing else
    assert [s.id for s in agent.agent.live] == [live.id]
    assert [r.id for r in agent.agent.pending] == [pending.request.id]
    assert {r.id for r in agent.agent.recent} == {pending.request.id, live.request.id}
    assert (agent.queue, agent.security, agent.can_view_log, agent.can_flag_accounts) == (None, None, False, False)

    manager = home.home_view(ctx, "UMANAGER1")  # approves (and impersonates)
    assert [a.request.id for a in manager.queue] == [pending.request.id]
    assert manager.agent.live == () and manager.security is None

    security = home.home_view(ctx, "USECURITY1")  # revokes, reads the log, flags; no impersonation
    assert security.agent is None and security.queue is None
    assert [s.id for s in security.security.live] == [live.id] and security.security.live_total == 1
    assert security.can_view_log and security.can_flag_accounts

    nobody = home.home_view(ctx, "UNOBODY1")
    assert (nobody.powers, nobody.agent, nobody.queue, nobody.security) == (None, None, None, None)


@freeze_time(T0)
def test_an_approvers_queue_drops_what_they_voted_on_and_what_was_decided(ctx, directory):
    from bot.domain import approvals

    pending = submit(ctx, account="globex", user="u-carol")
    approvals.approve_request(ctx, pending.request.id, clicker_slack_id="UMANAGER1")
    assert home.home_view(ctx, "UMANAGER1").queue == ()
    assert home.home_view(ctx, "UMANAGER2").queue == ()  # decided: one approval was enough


@freeze_time(T0)
def test_opening_the_home_records_the_person_and_owes_one_publish(ctx, directory):
    target = home.opened(ctx, "UAGENT1")
    assert target == outbox.target_of(outbox.Kind.HOME, "UAGENT1", "UAGENT1")
    assert home_rows(ctx) == [("UAGENT1", "UAGENT1")]
    home.opened(ctx, "UAGENT1")  # again: recorded once, owed again
    assert home_rows(ctx) == [("UAGENT1", "UAGENT1")] * 2


@freeze_time(T0)
def test_a_change_owes_a_publish_to_the_homes_it_concerns_only(ctx, directory):
    submit(ctx)  # nobody has opened a Home yet: nothing owed
    assert home_rows(ctx) == []
    for person in ("UAGENT1", "UAGENT2", "USECURITY1", "UMANAGER1"):
        home.opened(ctx, person)
    opened = len(home_rows(ctx))
    live_session(ctx, account="initech", user="u-dave")  # the agent's DM and the security feed
    owed = home_rows(ctx)[opened:]
    assert sorted(set(owed)) == [("UAGENT1", "UAGENT1"), ("USECURITY1", "USECURITY1")]
    pending = submit(ctx, account="globex", user="u-carol")  # the managers are asked
    assert ("UMANAGER1", "UMANAGER1") in home_rows(ctx)[len(owed) + opened:]
    assert isinstance(pending, requests.Pending)
    assert ("UAGENT2", "UAGENT2") not in home_rows(ctx)[opened:]  # none of this is theirs


def test_a_person_gets_at_most_one_publish_a_second_and_waiting_rows_merge(ctx, directory):
    published = []

    class Courier:
        def deliver(self, delivery):
            if delivery.kind is outbox.Kind.HOME:
                published.append(delivery.subject_id)
            return outbox.Delivered(200)

    with freeze_time(T0):
        home.opened(ctx, "UAGENT1")
        outbox.deliver_due(ctx, Courier(), now=T0)
        live_session(ctx)  # owes the agent's Home twice (grant, then redemption)
        submit(ctx, account="initech", user="u-dave")
    outbox.deliver_due(ctx, Courier(), now=T0 + timedelta(milliseconds=500))
    assert len(published) == 1  # the second waits for the person's next slot
    outbox.deliver_due(ctx, Courier(), now=T0 + timedelta(seconds=1))
    assert len(published) == 2  # one publish for the three rows owed meanwhile
    states = [r.state for r in outbox.rows(ctx, kinds=[outbox.Kind.HOME])]
    assert states.count("merged") >= 2 and "pending" not in states
