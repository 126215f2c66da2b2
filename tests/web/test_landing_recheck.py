"""A granted link is redeemed only if the grant still holds: what changed between the grant
and the POST (the account's flags, the agent's role, scope cap and assignment) is asked again
in the redemption's transaction. A refusal shows what changed, is audited with its cause and
changes nothing: the link stays unused and the request granted."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select

from bot.db.models import AccountFlag, Assignment, AuditEvent, Link
from bot.domain import account_flags
from bot.domain.audit import Actor
from tests.web.conftest import state_snapshot
from tests.web.test_landing import confirm, new_audit_types

REVOPS = Actor(slack_id="UREVOPS1", role="cli")


def _flag(session_factory, flag: AccountFlag) -> None:
    account_flags.change_flag(session_factory, account_external_id="acme", flag=flag, on=True, actor=REVOPS, note="contract amendment 7")


def _unassign(session_factory) -> None:
    with session_factory() as db, db.begin():
        db.execute(delete(Assignment).where(Assignment.agent_slack_id == "UAGENT1"))


def _drop_role(ctx) -> None:
    ctx.policy.roles["support"].members.remove("UAGENT1")


def _change_role(ctx, **changes) -> None:
    """An edited policy file, reloaded: roles are immutable, so the role is replaced."""
    ctx.policy.roles["support"] = ctx.policy.roles["support"].model_copy(update=changes)


def _lower_cap(ctx) -> None:
    _change_role(ctx, max_minutes=15)


CHANGES = {
    "opted_out": (lambda ctx, sf: _flag(sf, AccountFlag.OPTED_OUT), "opted out of impersonation"),
    "newly_gated": (lambda ctx, sf: _flag(sf, AccountFlag.SENSITIVE), "now needs an approval"),
    "no_role": (lambda ctx, sf: _drop_role(ctx), "no longer hold a role"),
    "not_assigned": (lambda ctx, sf: _unassign(sf), "no longer assigned to you"),
    "duration_over_cap": (lambda ctx, sf: _lower_cap(ctx), "session this long"),
}


@pytest.mark.parametrize("cause", list(CHANGES))
def test_a_grant_that_no_longer_holds_is_not_redeemed(ctx, client, token, session_factory, cause):
    change, said = CHANGES[cause]
    proof = confirm(client, token)
    change(ctx, session_factory)
    before_state, before_audit = state_snapshot(session_factory), len(_all_events(session_factory))

    response = client.post(f"/l/{token}", data={"csrf": proof})

    assert response.status_code == 409
    assert said in response.get_data(as_text=True)
    assert state_snapshot(session_factory) == before_state  # the link unused, the request granted
    assert new_audit_types(session_factory, before_audit) == ["link.policy_refused"]
    refused = _all_events(session_factory)[-1]
    assert json.loads(refused.details)["cause"] == cause
    assert refused.actor_slack_id == "UAGENT1" and refused.account == "acme"
    with session_factory() as db:
        assert db.execute(select(Link.redeemed_at)).scalar_one() is None


def test_read_write_is_refused_once_the_role_loses_it(ctx, client, grant, session_factory):
    _change_role(ctx, can_read_write=True)
    token = grant(scope="read_write")
    proof = confirm(client, token)
    _change_role(ctx, can_read_write=False)
    response = client.post(f"/l/{token}", data={"csrf": proof})
    assert response.status_code == 409 and "read-write" in response.get_data(as_text=True)
    assert json.loads(_all_events(session_factory)[-1].details)["cause"] == "scope_not_allowed"


def test_a_grant_that_still_holds_is_redeemed(ctx, client, token, session_factory):
    proof = confirm(client, token)
    _flag(session_factory, AccountFlag.FLAGGED)  # a gate the grant was not approved for…
    ctx.policy.gating.flags.remove("flagged")  # …that the policy no longer applies
    assert client.post(f"/l/{token}", data={"csrf": proof}).status_code == 200


def _all_events(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        return list(db.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
