"""Self-approval checks fail closed when Slack cannot say who someone is.

The whole bot over real HTTP against the fake Slack, whose `users.info` is made to fail for one
user. UMANAGER1 and UMANAGER2 are one person on Enterprise Grid (two workspace ids, one
`enterprise_user.id`, different e-mail addresses): only the Grid id tells them apart from two
people, so a lookup that fails must never let one approve the other's request.
"""
from __future__ import annotations

import json

from sqlalchemy import select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.listeners.flow import request_state
from tests.slack.signed import block_action, view_submission

GRID_ID = "WBOSS0001"


def _one_person_under_two_ids(fake) -> None:
    fake.add_user("UMANAGER1", email="boss@corp.example", enterprise_user_id=GRID_ID)
    fake.add_user("UMANAGER2", email="boss.second-workspace@corp.example", enterprise_user_id=GRID_ID)


def _events(session_factory, type_: str) -> list[AuditEvent]:
    with session_factory() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq)).scalars())


def _submit_as(bot, user_id: str) -> None:
    body = view_submission(request_state(account="globex", user="u-carol"), user_id=user_id, callback_id=CallbackId.IMPERSONATE_REQUEST.value)
    assert bot.send(body).status == 200
    bot.delivered()


def test_an_approver_slack_cannot_identify_is_not_asked_and_cannot_approve_their_own_request(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    _one_person_under_two_ids(fake)
    # users.info fails for the twin id at submission and at the click (failures are not cached)
    fake.fail_next("users.info", "fatal_error", times=10, when={"user": "UMANAGER2"})

    _submit_as(bot, "UMANAGER1")
    with session_factory() as db:
        request = db.execute(select(ImpersonationRequest)).scalar_one()
    assert request.state == "pending"

    click = block_action(ActionId.APPROVE_REQUEST.value, request.id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id="UMANAGER2")
    assert bot.send(click).status == 200
    bot.delivered()

    with session_factory() as db:
        assert db.get(ImpersonationRequest, request.id).state == "pending"
    assert _events(session_factory, "approval.granted") == []
    (refused,) = _events(session_factory, "approval.refused")
    assert refused.actor_slack_id == "UMANAGER2"
    assert json.loads(refused.details)["cause"] == "identity_unavailable"
    (asked,) = _events(session_factory, "approval.requested")
    assert json.loads(asked.details)["asked"] == ["UMANAGER3"]  # the unidentified twin was not asked


def test_a_requester_slack_cannot_identify_cannot_open_an_approval(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    fake.fail_next("users.info", "fatal_error", times=10, when={"user": "UAGENT1"})
    reply = bot.send(view_submission(request_state(account="globex", user="u-carol"), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    assert reply.status == 200
    assert reply.json()["response_action"] == "errors"
    assert "could not confirm who you are" in json.dumps(reply.json()["errors"])
    with session_factory() as db:
        assert db.execute(select(ImpersonationRequest)).first() is None
    (blocked,) = _events(session_factory, "request.blocked")
    assert json.loads(blocked.details)["cause"] == "identity_unavailable"
