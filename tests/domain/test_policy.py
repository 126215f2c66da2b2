"""The policy: decide() as a truth table, powers_of() role merging, and the strict loader.

decide() is pure (no I/O, no clock), so every rule is one row here, in the style of
django-hijack's permission tests. Each row starts from a request that is granted and changes
only what the row is about.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from pydantic import BaseModel

from bot.domain.ports import NoGroups
from bot.domain.policy import (
    BLOCK_FIELD,
    MAX_REDEEM_WINDOW_MINUTES,
    REASON_MAX_LENGTH,
    BlockCause,
    Decision,
    ExtensionDecision,
    ExtensionOutcome,
    ExtensionRefusal,
    Outcome,
    PolicyConfig,
    PolicyError,
    RedeemRefusal,
    Powers,
    decide,
    decide_extension_ask,
    load_policy,
    may_erase_personal_data,
    parse_policy,
    powers_of,
    recheck_at_redemption,
    reinitiation_needs_approval,
)
from tests.conftest import REPO_ROOT, TEST_POLICY
from tests.fakes.groups import StaticGroups

GATED = frozenset({"sensitive", "regulated", "flagged"})
REASON_MIN = 10
OK_REASON = "customer cannot see invoices"  # well over REASON_MIN

SUPPORT = Powers(
    role="support",
    max_minutes=60,
    scope="assigned",
    can_impersonate=True,
    can_read_write=False,
    can_approve=False,
    can_view_log=False,
    can_flag_accounts=False,
    can_revoke=False,
    can_request_extension=False,
    can_break_glass=False,
    requires_approval=False,
)
#: a senior role holding every power there is, on any account
SENIOR_ALL_POWERS = replace(
    SUPPORT,
    role="senior",
    max_minutes=240,
    scope="any",
    can_read_write=True,
    can_approve=True,
    can_view_log=True,
    can_flag_accounts=True,
    can_revoke=True,
    can_request_extension=True,
    can_break_glass=True,
)
SECURITY_ONLY = replace(SUPPORT, role="security", scope="any", can_impersonate=False, can_view_log=True)
TRAINEE = replace(SUPPORT, role="trainee", requires_approval=True)
BREAK_GLASS_REASON = "production outage INC-42: customer cannot log in, on-call lead approved verbally"


def base_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = dict(
        powers=SUPPORT,
        account_flags=frozenset(),
        assigned=True,
        user_known=True,
        user_protected=False,
        reason=OK_REASON,
        ticket="SUP-1234",
        duration_minutes=60,
        scope="read_only",
        reason_min_length=REASON_MIN,
        ticket_required=True,
        gated_flags=GATED,
        approvals_required=1,
        approvals_required_by_flag={"regulated": 2},
    )
    request.update(changes)
    return request


@dataclass(frozen=True)
class Row:
    id: str
    changes: dict[str, Any]
    outcome: Outcome
    cause: BlockCause | None = None
    gated_by: frozenset[str] = frozenset()
    approvals: int = 0
    bypassed: frozenset[str] = field(default_factory=frozenset)


def grant(id: str, **changes: Any) -> Row:
    return Row(id, changes, Outcome.GRANT)


def block(id: str, cause: BlockCause, **changes: Any) -> Row:
    return Row(id, changes, Outcome.BLOCK, cause)


def pending(id: str, gated_by: set[str], approvals: int, **changes: Any) -> Row:
    return Row(id, changes, Outcome.NEEDS_APPROVAL, gated_by=frozenset(gated_by), approvals=approvals)


CODES = frozenset({"contract", "incident"})

TRUTH_TABLE = [
    grant("valid request is granted"),
    # unknown account
    block("unknown account", BlockCause.UNKNOWN_ACCOUNT, account_flags=None),
    block("unknown account is reported before the missing role", BlockCause.UNKNOWN_ACCOUNT, account_flags=None, powers=None),
    # opted out: absolute, before any question about the agent
    block("opted out", BlockCause.OPTED_OUT, account_flags=frozenset({"opted_out"})),
    block(
        "opted out beats a senior any-scope role with every power",
        BlockCause.OPTED_OUT,
        powers=SENIOR_ALL_POWERS,
        account_flags=frozenset({"opted_out"}),
        scope="read_write",
    ),
    block(
        "opted out beats break-glass",
        BlockCause.OPTED_OUT,
        powers=SENIOR_ALL_POWERS,
        account_flags=frozenset({"opted_out", "sensitive"}),
        break_glass=True,
        reason=BREAK_GLASS_REASON,
    ),
    block("opted out beats requires_approval", BlockCause.OPTED_OUT, powers=TRAINEE, account_flags=frozenset({"opted_out"})),
    block("opted out with gated flags too is still refused", BlockCause.OPTED_OUT, account_flags=frozenset({"opted_out", "regulated"})),
    block("opted out is reported even to someone with no role", BlockCause.OPTED_OUT, powers=None, account_flags=frozenset({"opted_out"})),
    # the agent's role
    block("no role", BlockCause.NO_ROLE, powers=None),
    block("a role that cannot impersonate", BlockCause.NO_ROLE, powers=SECURITY_ONLY),
    # assigned vs any scope
    block("assigned scope, account not assigned", BlockCause.NOT_ASSIGNED, assigned=False),
    grant("any scope, account not assigned", powers=SENIOR_ALL_POWERS, assigned=False),
    block(
        "not assigned is reported before anything about the user",
        BlockCause.NOT_ASSIGNED,
        assigned=False,
        user_protected=True,
    ),
    # the customer user
    block("unknown user", BlockCause.UNKNOWN_USER, user_known=False),
    block("protected user", BlockCause.PROTECTED_USER, user_protected=True),
    block("protected user even for a senior any-scope role", BlockCause.PROTECTED_USER, powers=SENIOR_ALL_POWERS, user_protected=True),
    # reason: minimum from policy (after trimming), maximum fixed
    grant("reason exactly the minimum length", reason="x" * REASON_MIN),
    block("reason one short of the minimum", BlockCause.REASON_TOO_SHORT, reason="x" * (REASON_MIN - 1)),
    block("reason padded with spaces is measured trimmed", BlockCause.REASON_TOO_SHORT, reason="   short   "),
    block("empty reason", BlockCause.REASON_TOO_SHORT, reason=""),
    grant("reason exactly the maximum length", reason="x" * REASON_MAX_LENGTH),
    block("reason one over the maximum", BlockCause.REASON_TOO_LONG, reason="x" * (REASON_MAX_LENGTH + 1)),
    # justification: one of the policy's codes when it lists any, and then required
    grant("no justification asked when the policy lists none", justification=None),
    grant("a listed justification", justification="contract", justification_codes=CODES),
    block("justification missing when the policy lists codes", BlockCause.JUSTIFICATION_REQUIRED, justification=None, justification_codes=CODES),
    block("justification empty", BlockCause.JUSTIFICATION_REQUIRED, justification="", justification_codes=CODES),
    block("a code the policy does not list (a forged submission)", BlockCause.JUSTIFICATION_REQUIRED, justification="because", justification_codes=CODES),
    block("a code's label is not its code", BlockCause.JUSTIFICATION_REQUIRED, justification="Contract", justification_codes=CODES),
    block("justification checked after the reason", BlockCause.REASON_TOO_SHORT, reason="", justification=None, justification_codes=CODES),
    # ticket
    block("ticket required and missing", BlockCause.TICKET_REQUIRED, ticket=None),
    block("ticket required and blank", BlockCause.TICKET_REQUIRED, ticket="   "),
    grant("ticket not required and missing", ticket=None, ticket_required=False),
    grant("ticket as a URL", ticket="https://support.example/tickets/1234"),
    grant("ticket of the maximum length", ticket="T" * 200),
    block("ticket over the maximum length", BlockCause.TICKET_INVALID, ticket="T" * 201),
    block("ticket with a space", BlockCause.TICKET_INVALID, ticket="SUP 1234"),
    block("malformed ticket is refused even where none is required", BlockCause.TICKET_INVALID, ticket="SUP 1234", ticket_required=False),
    # duration cap boundary
    grant("duration exactly the role's cap", duration_minutes=60),
    block("duration one minute over the cap", BlockCause.DURATION_OVER_CAP, duration_minutes=61),
    block("zero duration", BlockCause.DURATION_OVER_CAP, duration_minutes=0),
    block("negative duration", BlockCause.DURATION_OVER_CAP, duration_minutes=-15),
    grant("a senior's larger cap", powers=SENIOR_ALL_POWERS, duration_minutes=240),
    # scope
    block("read_write without can_read_write", BlockCause.SCOPE_NOT_ALLOWED, scope="read_write"),
    grant("read_write with can_read_write", powers=SENIOR_ALL_POWERS, scope="read_write"),
    block("an unknown scope, even with can_read_write", BlockCause.SCOPE_NOT_ALLOWED, powers=SENIOR_ALL_POWERS, scope="admin"),
    # gating
    pending("sensitive account needs one approval", {"sensitive"}, 1, account_flags=frozenset({"sensitive"})),
    pending("flagged account needs one approval", {"flagged"}, 1, account_flags=frozenset({"flagged"})),
    pending("regulated account: the per-flag override applies", {"regulated"}, 2, account_flags=frozenset({"regulated"})),
    pending(
        "several gating flags: the largest count applies",
        {"sensitive", "regulated"},
        2,
        account_flags=frozenset({"sensitive", "regulated"}),
    ),
    pending(
        "the global count wins when it is larger than the override",
        {"regulated"},
        3,
        account_flags=frozenset({"regulated"}),
        approvals_required=3,
    ),
    pending(
        "gating applies to a senior any-scope role too",
        {"sensitive"},
        1,
        powers=SENIOR_ALL_POWERS,
        account_flags=frozenset({"sensitive"}),
    ),
    grant("a flag the policy does not gate", account_flags=frozenset({"sensitive"}), gated_flags=frozenset({"regulated"})),
    grant("gating turned off", account_flags=frozenset({"sensitive", "regulated", "flagged"}), gated_flags=frozenset()),
    block(
        "a refusal on a gated account is a refusal, not a pending request",
        BlockCause.REASON_TOO_SHORT,
        account_flags=frozenset({"sensitive"}),
        reason="short",
    ),
    # requires_approval role
    pending("requires_approval role on an ungated account", {"role"}, 1, powers=TRAINEE),
    pending(
        "requires_approval role on a regulated account",
        {"role", "regulated"},
        2,
        powers=TRAINEE,
        account_flags=frozenset({"regulated"}),
    ),
    # break-glass
    Row(
        "break-glass grants a gated account and records what it bypassed",
        dict(powers=SENIOR_ALL_POWERS, account_flags=frozenset({"sensitive"}), break_glass=True, reason=BREAK_GLASS_REASON),
        Outcome.GRANT,
        bypassed=frozenset({"sensitive"}),
    ),
    block(
        "break-glass without the power",
        BlockCause.BREAK_GLASS_NOT_ALLOWED,
        account_flags=frozenset({"sensitive"}),
        break_glass=True,
        reason=BREAK_GLASS_REASON,
    ),
    block(
        "break-glass with an ordinary-length reason",
        BlockCause.BREAK_GLASS_REASON_TOO_SHORT,
        powers=SENIOR_ALL_POWERS,
        account_flags=frozenset({"sensitive"}),
        break_glass=True,
        reason=OK_REASON,
    ),
    grant("break-glass on an ungated account is an ordinary grant", break_glass=True),
    # the requester's identity (Grid id, e-mail) could not be read from Slack
    block(
        "no approval can be asked for a requester Slack could not identify",
        BlockCause.IDENTITY_UNAVAILABLE,
        account_flags=frozenset({"sensitive"}),
        requester_identified=False,
    ),
    grant("an ungated request needs no identity check", requester_identified=False),
    Row(
        "break-glass needs no approver, so no identity check",
        dict(
            powers=SENIOR_ALL_POWERS, account_flags=frozenset({"sensitive"}), break_glass=True,
            reason=BREAK_GLASS_REASON, requester_identified=False,
        ),
        Outcome.GRANT,
        bypassed=frozenset({"sensitive"}),
    ),
    # re-initiation: the Nth request in a row after a session with the same customer user
    grant("a re-initiation needs no approval when the policy asks none", reinitiation_ordinal=5),
    grant("a re-initiation before the policy's Nth is granted", reinitiation_ordinal=1, reinitiation_approval_from=2),
    pending("the Nth re-initiation needs approval on an ungated account", {"reinitiation"}, 1, reinitiation_ordinal=2, reinitiation_approval_from=2),
    pending("so does every later one", {"reinitiation"}, 1, reinitiation_ordinal=7, reinitiation_approval_from=2),
    grant("a fresh request is no re-initiation, even from the first", reinitiation_ordinal=0, reinitiation_approval_from=1),
    pending(
        "the re-initiation gate adds to the account's flags",
        {"reinitiation", "regulated"},
        2,
        account_flags=frozenset({"regulated"}),
        reinitiation_ordinal=1,
        reinitiation_approval_from=1,
    ),
    block(
        "a re-initiation is refused like any request (a fresh reason is still required)",
        BlockCause.REASON_TOO_SHORT,
        reason="again",
        reinitiation_ordinal=3,
        reinitiation_approval_from=1,
    ),
    Row(
        "break-glass skips the re-initiation gate too, and records it",
        dict(powers=SENIOR_ALL_POWERS, break_glass=True, reason=BREAK_GLASS_REASON, reinitiation_ordinal=1, reinitiation_approval_from=1),
        Outcome.GRANT,
        bypassed=frozenset({"reinitiation"}),
    ),
]


@pytest.mark.parametrize("row", TRUTH_TABLE, ids=[row.id for row in TRUTH_TABLE])
def test_decide(row: Row):
    decision = decide(**base_request(**row.changes))
    assert decision == Decision(
        outcome=row.outcome,
        cause=row.cause,
        gated_by=row.gated_by,
        approvals_required=row.approvals,
        bypassed=row.bypassed,
    )


@pytest.mark.parametrize(
    ("ordinal", "require_from", "needs"),
    [
        (0, None, False),
        (0, 1, False),  # a fresh request is never a re-initiation
        (1, None, False),
        (9, None, False),  # no key: re-initiations need no approval of their own
        (1, 1, True),
        (1, 2, False),
        (2, 2, True),
        (3, 2, True),
        (2, 3, False),
    ],
)
def test_reinitiation_needs_approval(ordinal, require_from, needs):
    assert reinitiation_needs_approval(ordinal=ordinal, require_approval_from=require_from) is needs


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        (None, False),
        ({"can_erase_personal_data": False}, False),
        ({"can_erase_personal_data": True}, True),
        ({"can_view_log": True, "can_revoke": True, "can_flag_accounts": True}, False),
    ],
)
def test_may_erase_personal_data(roles, allowed):
    powers = None if roles is None else replace(SUPPORT, **roles)
    assert may_erase_personal_data(powers=powers) is allowed


def test_the_erasing_power_comes_from_a_role_and_is_held_by_no_role_by_default():
    policy = parse_policy(
        'gating.flags = []\n[roles.dpo]\nmembers = ["UDPO1"]\nmax_minutes = 15\ncan_impersonate = false\ncan_erase_personal_data = true\n'
        '[roles.support]\nmembers = ["UDPO1", "UAGENT1"]\nmax_minutes = 15\n'
    )
    assert powers_of(policy, "UDPO1", NoGroups()).can_erase_personal_data
    assert not powers_of(policy, "UAGENT1", NoGroups()).can_erase_personal_data


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ('[privacy]\njustifications = { "Contract" = "x" }', "justification code"),
        ('[privacy]\njustifications = { contract = "" }', "label"),
        ('[privacy]\njustifications = { contract = "' + "x" * 76 + '" }', "label"),
        ("[privacy]\npersonal_data_retention_days = -1", "personal_data_retention_days"),
    ],
)
def test_privacy_section_is_checked(section, says):
    with pytest.raises(PolicyError, match=says):
        parse_policy('gating.flags = []\n[roles.support]\nmembers = ["UAGENT1"]\nmax_minutes = 15\n' + section + "\n")


def test_truth_table_covers_every_cause_and_outcome():
    assert {row.cause for row in TRUTH_TABLE if row.cause} == set(BlockCause)
    assert {row.outcome for row in TRUTH_TABLE} == set(Outcome)


def test_every_refusal_names_a_field_of_the_modal():
    assert set(BLOCK_FIELD) == set(BlockCause)
    assert decide(**base_request(ticket=None)).field is not None
    assert decide(**base_request()).field is None


# --- powers_of: who holds which role -----------------------------------------------------

MERGE_POLICY = """
[roles.support]
members = ["UAGENT1", "UBOTH1", "UTRAINEEPLUS1", "@support-team"]
max_minutes = 60
scope = "assigned"

[roles.senior]
members = ["USENIOR1", "UBOTH1"]
max_minutes = 120
scope = "any"
can_read_write = true
can_approve = true

[roles.trainee]
members = ["UTRAINEEPLUS1"]
max_minutes = 30
requires_approval = true

[roles.security]
members = ["USECURITY1", "UAGENT1", "@security"]
max_minutes = 1440
scope = "any"
can_impersonate = false
can_view_log = true
can_revoke = true
"""


@pytest.fixture
def merge_policy() -> PolicyConfig:
    return parse_policy(MERGE_POLICY, source="merge")


def test_a_direct_member_gets_the_role(merge_policy):
    powers = powers_of(merge_policy, "USENIOR1", NoGroups())
    assert powers is not None
    assert (powers.role, powers.max_minutes, powers.scope, powers.can_read_write) == ("senior", 120, "any", True)


def test_someone_in_no_role_has_no_powers(merge_policy):
    assert powers_of(merge_policy, "USTRANGER1", NoGroups()) is None


def test_a_group_member_gets_the_role_through_the_group_directory(merge_policy):
    groups = StaticGroups({"support-team": {"UGROUPIE1"}})
    powers = powers_of(merge_policy, "UGROUPIE1", groups)
    assert powers is not None and powers.role == "support"
    assert groups.lookups > 0


def test_a_group_that_resolves_to_nobody_grants_nothing(merge_policy):
    assert powers_of(merge_policy, "UGROUPIE1", StaticGroups({})) is None


def test_multiple_roles_merge_to_the_union_of_powers(merge_policy):
    powers = powers_of(merge_policy, "UBOTH1", NoGroups())
    assert powers is not None
    assert powers.role == "senior+support"
    assert powers.max_minutes == 120
    assert powers.scope == "any"
    assert powers.can_read_write and powers.can_approve


def test_requires_approval_wins_over_a_more_generous_role(merge_policy):
    powers = powers_of(merge_policy, "UTRAINEEPLUS1", NoGroups())
    assert powers is not None
    assert powers.role == "support+trainee"
    assert powers.requires_approval
    assert powers.max_minutes == 60


def test_a_role_that_cannot_impersonate_lends_no_cap_or_scope(merge_policy):
    powers = powers_of(merge_policy, "UAGENT1", NoGroups())
    assert powers is not None
    assert powers.role == "security+support"
    assert powers.can_impersonate and powers.can_view_log and powers.can_revoke
    assert (powers.max_minutes, powers.scope) == (60, "assigned")


def test_a_role_that_cannot_impersonate_alone_is_refused_by_decide(merge_policy):
    powers = powers_of(merge_policy, "USECURITY1", NoGroups())
    assert powers is not None and not powers.can_impersonate
    assert decide(**base_request(powers=powers)).cause is BlockCause.NO_ROLE


def test_direct_and_group_membership_merge(merge_policy):
    groups = StaticGroups({"security": {"USENIOR1"}})
    powers = powers_of(merge_policy, "USENIOR1", groups)
    assert powers is not None
    assert powers.role == "security+senior"
    assert powers.can_view_log and powers.can_approve


# --- the loader: every error names the key and its line ------------------------------------


def line_of(text: str, needle: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(lines) == 1, f"{needle!r} should occur once in the test policy"
    return lines[0]


def load_error(text: str) -> str:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, source="policy.toml")
    return str(raised.value)


def test_unknown_key_names_key_and_line():
    text = TEST_POLICY.replace('scope = "assigned"\n', 'scope = "assigned"\ncan_teleport = true\n', 1)
    message = load_error(text)
    assert f"roles.support.can_teleport (line {line_of(text, 'can_teleport')})" in message
    assert "unknown key" in message


def test_wrong_type_names_key_and_line():
    wrong = 'max_minutes = "60"'
    text = TEST_POLICY.replace("max_minutes = 60", wrong, 1)
    message = load_error(text)
    assert f"roles.support.max_minutes (line {line_of(text, wrong)})" in message
    assert "valid integer" in message


def test_string_is_not_read_as_a_boolean():
    text = TEST_POLICY.replace("ticket_required = true", 'ticket_required = "yes"', 1)
    assert f"requests.ticket_required (line {line_of(text, 'ticket_required')})" in load_error(text)


def test_redeem_window_over_ten_minutes_is_refused():
    text = TEST_POLICY.replace("redeem_window_minutes = 5", "redeem_window_minutes = 11", 1)
    message = load_error(text)
    assert f"links.redeem_window_minutes (line {line_of(text, 'redeem_window_minutes')})" in message
    assert str(MAX_REDEEM_WINDOW_MINUTES) in message


def test_redeem_window_of_ten_minutes_is_the_maximum_allowed():
    text = TEST_POLICY.replace("redeem_window_minutes = 5", "redeem_window_minutes = 10", 1)
    assert parse_policy(text).links.redeem_window_minutes == 10


@pytest.mark.parametrize("member", ["bob", "uagent1", "C0CHANNEL1", "@Support Team", "@"])
def test_bad_member_names_key_and_line(member):
    line = f'members = ["{member}"]'
    text = TEST_POLICY.replace('members = ["USENIOR1"]', line, 1)
    message = load_error(text)
    assert f"roles.senior.members (line {line_of(text, line)})" in message
    assert repr(member) in message


def test_bad_role_name_names_key_and_line():
    text = TEST_POLICY.replace("[roles.senior]", "[roles.Senior]", 1)
    message = load_error(text)
    assert f"roles.Senior (line {line_of(text, '[roles.Senior]')})" in message
    assert "role name 'Senior'" in message


def test_missing_roles_names_the_key():
    # A key that is absent has no line to point at; the message names it.
    text = TEST_POLICY[: TEST_POLICY.index("[roles.support]")]
    assert "roles: required key is missing" in load_error(text)


def test_toml_syntax_error_names_the_line():
    text = TEST_POLICY.replace("[requests]", "[requests", 1)
    message = load_error(text)
    assert "not valid TOML" in message
    assert f"line {line_of(text, '[requests')}" in message


def test_gating_without_any_approver_is_refused():
    text = TEST_POLICY.replace("can_approve = true", "can_approve = false", 1)
    assert "gating.flags is set but no role has can_approve" in load_error(text)


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(PolicyError, match="policy.example.toml"):
        load_policy(tmp_path / "policy.toml")


# --- the documented example ----------------------------------------------------------------

EXAMPLE = REPO_ROOT / "policy.example.toml"


def test_policy_example_loads():
    policy = load_policy(EXAMPLE)
    assert policy.links.redeem_window_minutes <= MAX_REDEEM_WINDOW_MINUTES
    assert any(role.can_approve for role in policy.roles.values())
    members = [m for role in policy.roles.values() for m in role.members]
    assert any(m.startswith("@") for m in members) and any(m.startswith(("U", "W")) for m in members)


def _keys(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _keys(annotation)
    return names


def test_policy_example_documents_every_key():
    from bot.domain.policy import RoleConfig

    text = EXAMPLE.read_text(encoding="utf-8")
    undocumented = sorted(key for key in _keys(PolicyConfig) | _keys(RoleConfig) if key not in text)
    assert undocumented == []


def test_docs_explain_every_role_power():
    from bot.domain.policy import RoleConfig

    text = (REPO_ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    assert sorted(key for key in RoleConfig.model_fields if f"`{key}`" not in text) == []



# --- alerts, notifications and digests ---------------------------------------------------------


def with_section(section: str) -> str:
    return TEST_POLICY + "\n" + section + "\n"


@pytest.mark.parametrize(
    ("section", "key", "says"),
    [
        ('[digests]\nweekly = "monday 9am"', "digests.weekly", '"mon 09:00"'),
        ('[digests]\nweekly = "mon 24:00"', "digests.weekly", '"mon 09:00"'),
        ('[digests]\nquarterly_time = "9:00"', "digests.quarterly_time", "HH:MM"),
        ("[notifications]\nexpiry_warning_minutes = 0", "notifications.expiry_warning_minutes", "greater than or equal to 1"),
        ("[notifications]\nexpiry_warning_minutes = 121", "notifications.expiry_warning_minutes", "less than or equal to 120"),
        ("[notifications]\nwarn_me = true", "notifications.warn_me", "unknown key"),
        ("[reinitiation]\nwindow_minutes = 0", "reinitiation.window_minutes", "greater than or equal to 1"),
        ("[reinitiation]\nwindow_minutes = 1441", "reinitiation.window_minutes", "less than or equal to 1440"),
        ("[reinitiation]\nrequire_approval_from = 0", "reinitiation.require_approval_from", "greater than or equal to 1"),
        ('[reinitiation]\nrequire_approval_from = "3"', "reinitiation.require_approval_from", "integer"),
    ],
)
def test_new_sections_are_validated_naming_the_key(section, key, says):
    message = load_error(with_section(section))
    assert key in message and says in message


def test_reinitiation_defaults_to_a_half_hour_window_and_no_approval_of_its_own():
    policy = parse_policy(TEST_POLICY)
    assert (policy.reinitiation.window_minutes, policy.reinitiation.require_approval_from) == (30, None)
    policy = parse_policy(with_section("[reinitiation]\nwindow_minutes = 45\nrequire_approval_from = 2"))
    assert (policy.reinitiation.window_minutes, policy.reinitiation.require_approval_from) == (45, 2)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ('business_hours = { start = "19:00", end = "08:00" }', "start must be before"),
        ('business_hours = { start = "8:00" }', "HH:MM"),
        ('business_hours = { end = "24:01" }', "24:00"),
        ('business_hours = { days = ["monday"] }', "mon"),
        ("concentration_percent = 101", "less than or equal to 100"),
        ('session_flags = ["opted_out"]', "sensitive"),
        ("max_accounts_per_agent_24h = 0", "greater than or equal to 1"),
    ],
)
def test_alert_thresholds_are_validated(change, says):
    text = TEST_POLICY.replace('security_channel = "CSECURITY1"\n', f'security_channel = "CSECURITY1"\n{change}\n', 1)
    text = text.replace("business_hours = { start = \"00:00\", end = \"24:00\", days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"] }\n", "", 1) if change.startswith("business_hours") else text
    message = load_error(text)
    assert "alerts." in message and says in message


def test_defaults_of_the_new_keys():
    policy = parse_policy(TEST_POLICY.replace('business_hours = { start = "00:00", end = "24:00", days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] }\n', ""))
    alerts = policy.alerts
    assert (alerts.max_sessions_per_account_24h, alerts.max_accounts_per_agent_24h, alerts.denials_per_agent_24h) == (5, 10, 3)
    assert (alerts.concentration_percent, alerts.concentration_days, alerts.concentration_min_sessions) == (80, 30, 5)
    assert alerts.session_flags == ["sensitive", "regulated"] and alerts.sweep_minutes == 5
    assert (alerts.business_hours.start, alerts.business_hours.end, alerts.business_hours.days) == ("08:00", "19:00", ["mon", "tue", "wed", "thu", "fri"])
    assert policy.notifications.expiry_warning_minutes == 5
    assert (policy.digests.weekly, policy.digests.quarterly, policy.digests.quarterly_time) == ("mon 09:00", True, "09:00")


# --- recheck_at_redemption: does a grant still hold when its link is redeemed? ------------

GRANT_AS_GIVEN = dict(
    powers=SUPPORT,
    account_flags=frozenset(),
    assigned=True,
    scope="read_only",
    duration_minutes=30,
    granted_gates=frozenset(),
    gated_flags=frozenset({"sensitive", "regulated", "flagged"}),
)

RECHECK_TABLE = [
    ("nothing changed", {}, None),
    ("the account opted out", dict(account_flags=frozenset({"opted_out"})), RedeemRefusal.OPTED_OUT),
    ("opted out beats every other change", dict(account_flags=frozenset({"opted_out", "sensitive"}), powers=None), RedeemRefusal.OPTED_OUT),
    ("the agent lost every role", dict(powers=None), RedeemRefusal.NO_ROLE),
    ("the agent's role can no longer impersonate", dict(powers=replace(SUPPORT, can_impersonate=False)), RedeemRefusal.NO_ROLE),
    ("the account was unassigned from an assigned-scope agent", dict(assigned=False), RedeemRefusal.NOT_ASSIGNED),
    ("an any-scope agent needs no assignment", dict(powers=SENIOR_ALL_POWERS, assigned=False), None),
    ("read-write without the power any more", dict(scope="read_write"), RedeemRefusal.SCOPE_NOT_ALLOWED),
    ("read-write with the power", dict(powers=SENIOR_ALL_POWERS, scope="read_write"), None),
    ("the role's cap fell below the duration", dict(duration_minutes=90), RedeemRefusal.DURATION_OVER_CAP),
    ("exactly the cap", dict(duration_minutes=60), None),
    ("the account became sensitive after an ungated grant", dict(account_flags=frozenset({"sensitive"})), RedeemRefusal.NEWLY_GATED),
    ("a gate the grant was approved for", dict(account_flags=frozenset({"sensitive"}), granted_gates=frozenset({"sensitive"})), None),
    (
        "a second gate added after the approval",
        dict(account_flags=frozenset({"sensitive", "regulated"}), granted_gates=frozenset({"sensitive"})),
        RedeemRefusal.NEWLY_GATED,
    ),
    ("a flag the policy does not gate", dict(account_flags=frozenset({"flagged"}), gated_flags=frozenset({"sensitive"})), None),
    ("a gate that was lifted does not matter", dict(granted_gates=frozenset({"sensitive"})), None),
]


@pytest.mark.parametrize(("changes", "expected"), [row[1:] for row in RECHECK_TABLE], ids=[row[0] for row in RECHECK_TABLE])
def test_recheck_at_redemption(changes, expected):
    assert recheck_at_redemption(**{**GRANT_AS_GIVEN, **changes}) == expected


def test_the_recheck_table_covers_every_refusal():
    assert {row[2] for row in RECHECK_TABLE if row[2]} == set(RedeemRefusal)


# --- decide_extension_ask: more time for a live session ------------------------------------

EXTENDER = replace(SUPPORT, max_minutes=60, can_request_extension=True)
SELF_EXTENDER = replace(EXTENDER, can_self_extend=True)
ASK = dict(powers=EXTENDER, current_total_minutes=30, asked_minutes=15, reason_ok=True, ceiling_minutes=240)


def ext(outcome: ExtensionOutcome, total: int = 0, past_cap: bool = False, cause: ExtensionRefusal | None = None) -> ExtensionDecision:
    return ExtensionDecision(outcome, cause, total, past_cap)


EXTENSION_TABLE = [
    ("no role", dict(powers=None), ext(ExtensionOutcome.REFUSE, cause=ExtensionRefusal.NO_POWER)),
    ("a role without the power", dict(powers=SUPPORT), ext(ExtensionOutcome.REFUSE, cause=ExtensionRefusal.NO_POWER)),
    ("no fresh reason", dict(reason_ok=False), ext(ExtensionOutcome.REFUSE, cause=ExtensionRefusal.REASON_TOO_SHORT)),
    ("nothing asked", dict(asked_minutes=0), ext(ExtensionOutcome.REFUSE, cause=ExtensionRefusal.INVALID_MINUTES)),
    ("within the cap, no self-service: approved like a request", {}, ext(ExtensionOutcome.NEEDS_APPROVAL, 45)),
    ("within the cap with self-service: at once", dict(powers=SELF_EXTENDER), ext(ExtensionOutcome.SELF_SERVE, 45)),
    ("exactly to the cap with self-service", dict(powers=SELF_EXTENDER, asked_minutes=30), ext(ExtensionOutcome.SELF_SERVE, 60)),
    ("one minute past the cap: an approval, even with self-service", dict(powers=SELF_EXTENDER, asked_minutes=31), ext(ExtensionOutcome.NEEDS_APPROVAL, 61, True)),
    ("a session already at the cap can go past it with an approval", dict(current_total_minutes=60), ext(ExtensionOutcome.NEEDS_APPROVAL, 75, True)),
    ("an ask beyond the ceiling is trimmed to it", dict(current_total_minutes=200, asked_minutes=60), ext(ExtensionOutcome.NEEDS_APPROVAL, 240, True)),
    ("at the ceiling: no more", dict(current_total_minutes=240), ext(ExtensionOutcome.REFUSE, cause=ExtensionRefusal.AT_CEILING)),
    ("the ceiling is never below the role's cap", dict(powers=replace(SELF_EXTENDER, max_minutes=300), current_total_minutes=250, ceiling_minutes=240), ext(ExtensionOutcome.SELF_SERVE, 265)),
]


@pytest.mark.parametrize(("changes", "expected"), [row[1:] for row in EXTENSION_TABLE], ids=[row[0] for row in EXTENSION_TABLE])
def test_decide_extension_ask(changes, expected):
    assert decide_extension_ask(**{**ASK, **changes}) == expected


def test_the_extension_table_covers_every_outcome_and_refusal():
    assert {row[2].outcome for row in EXTENSION_TABLE} == set(ExtensionOutcome)
    assert {row[2].cause for row in EXTENSION_TABLE if row[2].cause} == set(ExtensionRefusal)
