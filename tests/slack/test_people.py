import logging
import threading

import pytest

from bot.domain.policy import parse_policy, powers_of
from bot.domain.ports import Person
from bot.slack.people import SlackGroups, SlackPeople
from tests.conftest import TEST_POLICY
from tests.slack.recording_client import BOT_TOKEN, RecordingWebClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def client():
    client = RecordingWebClient()
    client.answer(
        "users.info",
        lambda args: {
            "ok": True,
            "user": {
                "id": args["user"],
                "tz": "Europe/Paris",
                "profile": {"email": f"{args['user'].lower()}@corp.example"},
                "enterprise_user": {"id": "WENTERPRISE1", "enterprise_id": "E1"},
            },
        },
    )
    client.answer(
        "usergroups.list",
        {
            "ok": True,
            "usergroups": [
                {"id": "S0SUPPORT", "handle": "support-team", "date_delete": 0},
                {"id": "S0OTHER", "handle": "other", "date_delete": 0},
            ],
        },
    )
    client.answer(
        "usergroups.users.list",
        lambda args: {"ok": True, "users": {"S0SUPPORT": ["UGROUPIE1", "UGROUPIE2"], "S0OTHER": []}[args["usergroup"]]},
    )
    return client


def test_person_comes_from_users_info(client, clock):
    people = SlackPeople(client, clock=clock)
    assert people.person("UAGENT1") == Person(
        "UAGENT1", email="uagent1@corp.example", tz="Europe/Paris", enterprise_user_id="WENTERPRISE1"
    )
    assert client.calls_to("users.info") == [{"user": "UAGENT1"}]


def test_people_are_cached_for_the_ttl(client, clock):
    people = SlackPeople(client, ttl_seconds=300, clock=clock)
    people.person("UAGENT1")
    clock.now += 299
    people.person("UAGENT1")
    assert len(client.calls_to("users.info")) == 1
    clock.now += 1
    people.person("UAGENT1")
    assert len(client.calls_to("users.info")) == 2


def test_a_slack_error_gives_an_unresolved_person_is_logged_without_the_token_and_is_not_cached(client, clock, caplog):
    client.fail("users.info", "user_not_found")
    people = SlackPeople(client, clock=clock)
    with caplog.at_level(logging.DEBUG):
        assert people.person("UGONE") == Person("UGONE", resolved=False)  # never "someone else"
    assert "user_not_found" in caplog.text and BOT_TOKEN not in caplog.text
    people.person("UGONE")
    assert len(client.calls_to("users.info")) == 2


def test_a_user_without_email_or_tz_has_none_not_empty_strings(client, clock):
    client.answer("users.info", {"ok": True, "user": {"id": "UBARE", "tz": "", "profile": {"email": ""}}})
    assert SlackPeople(client, clock=clock).person("UBARE") == Person("UBARE")


def test_group_members_are_resolved_by_handle(client, clock):
    groups = SlackGroups(client, clock=clock)
    assert groups.members_of("support-team") == frozenset({"UGROUPIE1", "UGROUPIE2"})
    assert groups.members_of("@support-team") == frozenset({"UGROUPIE1", "UGROUPIE2"})
    assert client.calls_to("usergroups.users.list") == [{"usergroup": "S0SUPPORT"}]


def test_groups_are_cached_for_the_ttl(client, clock):
    groups = SlackGroups(client, ttl_seconds=60, clock=clock)
    groups.members_of("support-team")
    groups.members_of("other")
    clock.now += 59
    groups.members_of("support-team")
    assert len(client.calls_to("usergroups.list")) == 1
    assert len(client.calls_to("usergroups.users.list")) == 2
    clock.now += 1
    groups.members_of("support-team")
    assert len(client.calls_to("usergroups.list")) == 2
    assert len(client.calls_to("usergroups.users.list")) == 3


def test_a_removed_member_loses_the_role_once_the_cache_expires(client, clock):
    groups = SlackGroups(client, ttl_seconds=60, clock=clock)
    policy = parse_policy(TEST_POLICY)
    assert powers_of(policy, "UGROUPIE2", groups) is not None
    client.answer("usergroups.users.list", {"ok": True, "users": ["UGROUPIE1"]})
    clock.now += 60
    assert powers_of(policy, "UGROUPIE2", groups) is None
    assert powers_of(policy, "UGROUPIE1", groups).role == "support"


def test_unknown_handle_has_no_members(client, clock):
    assert SlackGroups(client, clock=clock).members_of("nobody-here") == frozenset()
    assert client.calls_to("usergroups.users.list") == []


@pytest.mark.parametrize("failing", ["usergroups.list", "usergroups.users.list"])
def test_group_lookup_failures_fail_closed_and_are_retried(client, clock, caplog, failing):
    groups = SlackGroups(client, clock=clock)
    client.fail(failing, "ratelimited")
    with caplog.at_level(logging.WARNING):
        assert groups.members_of("support-team") == frozenset()
    assert "ratelimited" in caplog.text and BOT_TOKEN not in caplog.text
    client.answer("usergroups.list", {"ok": True, "usergroups": [{"id": "S0SUPPORT", "handle": "support-team"}]})
    client.answer("usergroups.users.list", {"ok": True, "users": ["UGROUPIE1"]})
    assert groups.members_of("support-team") == frozenset({"UGROUPIE1"})  # the failure was not cached


def test_groups_are_safe_to_share_between_threads(client, clock):
    groups = SlackGroups(client, clock=clock)
    results: list[frozenset[str]] = []
    barrier = threading.Barrier(8)

    def look_up() -> None:
        barrier.wait()
        results.append(groups.members_of("support-team"))

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [frozenset({"UGROUPIE1", "UGROUPIE2"})] * 8
