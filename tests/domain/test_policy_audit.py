"""Configuration changes are audited: a policy that differs from the one
last recorded is recorded as `policy.changed`, once, with what changed in readable words."""
from __future__ import annotations

import json
import threading

from bot.domain.audit import verify_chain
from bot.domain.policy import parse_policy
from bot.domain.policy_audit import canonical_policy, describe_changes, policy_sha256, record_policy_change
from tests.conftest import TEST_POLICY
from tests.slack.conftest import audit_events


def edited(*replacements: tuple[str, str]) -> str:
    text = TEST_POLICY
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_the_first_policy_is_recorded_with_its_roles(session_factory, policy):
    change = record_policy_change(session_factory, policy, source="policy.toml")
    assert change is not None and change.previous_sha256 is None and change.sha256 == policy_sha256(policy)
    (event,) = audit_events(session_factory, "policy.changed")
    assert (event.seq, event.actor_role) == (change.seq, "policy-file")
    details = json.loads(event.details)
    assert details["sha256"] == change.sha256 and details["source"] == "policy.toml"
    assert details["policy"] == canonical_policy(policy)
    assert details["changes"][0] == "first policy recorded: roles manager, security, senior, support"
    assert "role security added: members USECURITY1; max_minutes 30, scope any; can_view_log, can_flag_accounts, can_revoke" in details["changes"]


def test_the_same_policy_is_not_recorded_again(session_factory, policy):
    assert record_policy_change(session_factory, policy, source="policy.toml") is not None
    assert record_policy_change(session_factory, parse_policy(TEST_POLICY), source="elsewhere.toml") is None
    assert len(audit_events(session_factory, "policy.changed")) == 1


def test_order_and_spelt_out_defaults_are_not_changes(session_factory, policy):
    record_policy_change(session_factory, policy, source="policy.toml")
    same = parse_policy(
        edited(
            ('members = ["UMANAGER1", "UMANAGER2", "UMANAGER3"]', 'members = ["UMANAGER3", "UMANAGER1", "UMANAGER2"]'),
            ("[links]\n", "[links]\n"),
            ("scope = \"assigned\"\n", "scope = \"assigned\"\ncan_revoke = false\n"),
        )
    )
    assert record_policy_change(session_factory, same, source="policy.toml") is None


def test_a_change_is_recorded_with_a_readable_summary(session_factory, policy):
    first = record_policy_change(session_factory, policy, source="policy.toml")
    changed = parse_policy(
        edited(
            ('members = ["UAGENT1", "UAGENT2", "@support-team"]', 'members = ["UAGENT1", "UAGENT3", "@support-team"]'),
            ("max_minutes = 60", "max_minutes = 90"),
            ('flags = ["sensitive", "regulated", "flagged"]', 'flags = ["regulated", "flagged"]'),
            ("approvals_required = 1", "approvals_required = 2"),
            ("redeem_window_minutes = 5", "redeem_window_minutes = 10"),
            ("[roles.security]", '[roles.auditors]\nmembers = ["UAUDIT1"]\nmax_minutes = 15\ncan_impersonate = false\ncan_view_log = true\n\n[roles.security]'),
        )
    )
    change = record_policy_change(session_factory, changed, source="policy.toml")
    assert change is not None and change.previous_sha256 == first.sha256
    assert list(change.changes) == [
        "role auditors added: members UAUDIT1; max_minutes 15, scope assigned; can_view_log",
        "roles.support.max_minutes: 60 → 90",
        "roles.support.members: added UAGENT3; removed UAGENT2",
        "gating.approvals_required: 1 → 2",
        "gating.flags: removed sensitive",
        "links.redeem_window_minutes: 5 → 10",
    ]
    latest = json.loads(audit_events(session_factory, "policy.changed")[-1].details)
    assert latest["changes"] == list(change.changes) and latest["previous_sha256"] == first.sha256
    with session_factory() as db:
        assert verify_chain(db)[1] is None


def test_a_removed_role_and_a_changed_power():
    old = canonical_policy(parse_policy(TEST_POLICY))
    new = canonical_policy(parse_policy(edited(("can_read_write = true\ncan_request_extension = true", "can_read_write = false\ncan_request_extension = true"))))
    assert describe_changes(old, new) == ["roles.senior.can_read_write: true → false"]
    without = {**old, "roles": {k: v for k, v in old["roles"].items() if k != "senior"}}
    assert describe_changes(old, without) == ["role senior removed (members were USENIOR1)"]


def test_processes_starting_together_record_one_change(session_factory, policy):
    """gunicorn workers and the clock build their containers at once: one event, not one each."""
    barrier = threading.Barrier(6)
    results = []

    def start() -> None:
        barrier.wait()
        results.append(record_policy_change(session_factory, policy, source="policy.toml"))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1
    assert len(audit_events(session_factory, "policy.changed")) == 1
