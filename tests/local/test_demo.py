"""The local workspace's demo directory and policy (bot/local/demo.py, demo_policy.toml)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.models import Account, AccountFlagSetting, Assignment
from bot.domain.policy import load_policy, powers_of
from bot.local import demo
from tests.fakes.groups import StaticGroups

POLICY = load_policy(demo.POLICY_PATH)


@pytest.mark.parametrize(
    ("persona", "impersonates", "approves", "views_log", "revokes", "flags"),
    [
        ("U0ANAAGENT", True, False, False, False, False),
        ("U0BENAGENT", True, False, False, False, False),
        ("U0MIAMANAGER", True, True, False, True, False),
        ("U0SAMSECURITY", False, False, True, True, True),
        ("U0RAYREVOPS", False, False, False, False, True),
    ],
)
def test_each_persona_holds_the_powers_the_switcher_names(persona, impersonates, approves, views_log, revokes, flags):
    powers = powers_of(POLICY, persona, StaticGroups({}))
    assert powers is not None
    assert (powers.can_impersonate, powers.can_approve, powers.can_view_log, powers.can_revoke, powers.can_flag_accounts) == (
        impersonates, approves, views_log, revokes, flags)


def test_every_persona_is_in_the_policy_and_the_security_channel_is_the_demos():
    assert {p.slack_id for p in demo.PERSONAS} == {m for role in POLICY.roles.values() for m in role.members}
    assert POLICY.alerts.security_channel == demo.SECURITY_CHANNEL


def test_the_demo_directory_is_loaded_once_with_its_flags(session_factory):
    assert demo.load_once(session_factory) is True
    assert demo.load_once(session_factory) is False
    with session_factory() as db:
        accounts = {a.id: a.external_id for a in db.execute(select(Account)).scalars()}
        flags = {(accounts[f.account_id], f.flag) for f in db.execute(select(AccountFlagSetting)).scalars()}
        assigned = {a.agent_slack_id for a in db.execute(select(Assignment)).scalars()}
    assert sorted(accounts.values()) == ["acme", "globex", "initech", "umbrella"]
    assert flags == {(account, flag.value) for account, flag in demo.FLAGS.items()}
    assert assigned == {"U0ANAAGENT", "U0BENAGENT"}
