"""Reminders and escalation of an unanswered ask: the pure decisions (bot.domain.policy
`approval_nudges`, `escalation_group`) as truth tables, and the policy keys that feed them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from bot.domain.policy import ApprovalNudges, PolicyError, approval_nudges, escalation_group, parse_policy
from tests.conftest import TEST_POLICY

ASKED_AT = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
EXPIRES_AT = ASKED_AT + timedelta(minutes=30)
FIRST = ("UMANAGER1", "UMANAGER2")
SECOND = ("ULEAD1", "ULEAD2")


@dataclass(frozen=True)
class Row:
    name: str
    minute: float
    expected: ApprovalNudges
    answered: frozenset[str] = frozenset()
    reminded: bool = False
    escalated: bool = False
    escalation_named: bool = True
    escalation: tuple[str, ...] = SECOND
    remind_after_percent: int = 50
    escalate_after_percent: int = 75
    escalate_after_minutes: int | None = None
    asked: tuple[str, ...] = field(default=FIRST)


NOTHING = ApprovalNudges()
REMIND_BOTH = ApprovalNudges(remind=FIRST)
ROWS = [
    Row("before half the TTL nothing is owed", 14.99, NOTHING),
    Row("at half the TTL every approver is reminded", 15, REMIND_BOTH),
    Row("an approver who answered is not reminded", 20, ApprovalNudges(remind=("UMANAGER2",)), answered=frozenset({"UMANAGER1"})),
    Row("a reminder is sent once", 20, NOTHING, reminded=True),
    Row("reminders can be turned off", 20, NOTHING, remind_after_percent=0),
    Row("a reminder at another share of the TTL", 6, REMIND_BOTH, remind_after_percent=20),
    Row("everyone answered: no one to remind", 20, NOTHING, answered=frozenset(FIRST)),
    Row("at the escalation point the second group is asked", 22.5, ApprovalNudges(escalate=True, ask=SECOND), reminded=True),
    Row("the reminder and the escalation fall due together after downtime", 25, ApprovalNudges(remind=FIRST, escalate=True, ask=SECOND)),
    Row("just before the escalation point", 22.49, NOTHING, reminded=True),
    Row("escalation happens once", 25, NOTHING, reminded=True, escalated=True),
    Row("no group named: no escalation", 25, NOTHING, reminded=True, escalation_named=False, escalation=()),
    Row("a named group of no eligible approver is still escalated to", 25, ApprovalNudges(escalate=True), reminded=True, escalation=()),
    Row("someone asked already is not asked twice", 25, ApprovalNudges(escalate=True, ask=("ULEAD2",)), reminded=True, escalation=("UMANAGER1", "ULEAD2")),
    Row("escalation after minutes rather than a share", 10, ApprovalNudges(escalate=True, ask=SECOND), escalate_after_minutes=10),
    Row("minutes win over the share", 22.5, NOTHING, reminded=True, escalate_after_minutes=25),
    Row("minutes past the TTL never escalate", 29.99, NOTHING, reminded=True, escalate_after_minutes=45),
    Row("at the expiry nothing is owed: the ask expires", 30, NOTHING),
    Row("past the expiry nothing is owed", 31, NOTHING),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_approval_nudges(row: Row):
    assert approval_nudges(
        now=ASKED_AT + timedelta(minutes=row.minute),
        asked_at=ASKED_AT,
        expires_at=EXPIRES_AT,
        asked=row.asked,
        answered=row.answered,
        escalation_named=row.escalation_named,
        escalation=row.escalation,
        reminded=row.reminded,
        escalated=row.escalated,
        remind_after_percent=row.remind_after_percent,
        escalate_after_percent=row.escalate_after_percent,
        escalate_after_minutes=row.escalate_after_minutes,
    ) == row.expected


@pytest.mark.parametrize(
    "gates,expected",
    [
        (frozenset({"sensitive"}), ("@leads",)),
        (frozenset({"regulated"}), ("@compliance",)),
        (frozenset({"regulated", "role"}), ("@compliance", "UTRAINER1")),
        (frozenset({"flagged"}), ("@leads",)),
        (frozenset({"reinitiation"}), ("@reviewers",)),
        (frozenset(), ("@leads",)),
    ],
)
def test_escalation_group_is_the_gates_group_or_else_the_default(gates, expected):
    by_gate = {"regulated": ["@compliance"], "role": ["UTRAINER1", "@compliance"], "reinitiation": ["@reviewers"]}
    assert escalation_group(gates=gates, escalate_to=["@leads"], escalate_to_by_gate=by_gate) == expected


def test_no_group_named_anywhere_is_no_escalation():
    assert escalation_group(gates=frozenset({"sensitive"}), escalate_to=[], escalate_to_by_gate={}) == ()


def _gating(extra: str):
    return parse_policy(TEST_POLICY.replace("pending_ttl_minutes = 30", "pending_ttl_minutes = 30\n" + extra), source="p").gating


def test_the_defaults_remind_at_half_and_escalate_nowhere():
    gating = _gating("")
    assert (gating.remind_after_percent, gating.escalate_to, gating.escalate_after_percent, gating.escalate_after_minutes) == (50, [], 75, None)


def test_escalation_keys_are_read():
    gating = _gating('escalate_to = ["@leads"]\nescalate_to_by_gate = { regulated = ["UCOMPLIANCE1"], reinitiation = ["@reviewers"] }\nescalate_after_minutes = 20')
    assert gating.escalate_to == ["@leads"] and gating.escalate_to_by_gate == {"regulated": ["UCOMPLIANCE1"], "reinitiation": ["@reviewers"]}
    assert gating.escalate_after_minutes == 20


@pytest.mark.parametrize(
    "extra,message",
    [
        ('escalate_to = ["leads"]', "gating.escalate_to"),
        ('escalate_to_by_gate = { vip = ["@leads"] }', "gating.escalate_to_by_gate"),
        ("remind_after_percent = 100", "gating.remind_after_percent"),
        ("escalate_after_percent = 0", "gating.escalate_after_percent"),
        ("remind_after_percent = 0.5", "gating.remind_after_percent"),
        ("escalate_after_minutes = 0", "gating.escalate_after_minutes"),
    ],
)
def test_bad_reminder_and_escalation_keys_are_refused_with_their_name(extra, message):
    with pytest.raises(PolicyError, match=message):
        _gating(extra)
