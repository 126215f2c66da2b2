"""Many concurrent approve, deny and cancel clicks over real HTTP end
in exactly one final state, one decision event, and one edit per message — SQLite and PostgreSQL."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain.audit import verify_chain
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.listeners.flow import deny_values, request_state
from tests.slack.signed import block_action, view_submission

DECISIONS = ("approval.granted", "approval.denied", "request.cancelled")
MANAGERS = ("UMANAGER1", "UMANAGER2", "UMANAGER3")


def _pending(bot, account: str, user: str) -> str:
    reply = bot.send(view_submission(request_state(account=account, user=user), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    assert reply.status == 200
    bot.delivered()  # the DMs are sent after the answer
    (agent_dm,) = [c for c in bot.fake.calls_to("chat.postMessage") if c.args["channel"] == "UAGENT1"]
    return agent_dm


@pytest.mark.parametrize("account,user,required", [("globex", "u-carol", 1), ("initech", "u-dave", 2)])
def test_concurrent_clicks_decide_exactly_once(running_bot, session_factory, account, user, required):
    bot, fake = running_bot, running_bot.fake
    agent_dm = _pending(bot, account, user)
    with session_factory() as db:
        request = db.execute(select(ImpersonationRequest)).scalar_one()
        assert request.state == "pending" and request.approvals_required == required
        request_id = request.id
    approver_dms = {c.args["channel"]: c for c in fake.calls_to("chat.postMessage") if c.args["channel"] in MANAGERS}
    assert set(approver_dms) == set(MANAGERS)

    bodies = []
    for manager in MANAGERS:
        dm = approver_dms[manager]
        where = dict(channel=dm.response["channel"], message_ts=dm.response["ts"])
        # distinct clicks (each has its own trigger_id), not replays of one
        bodies += [block_action(ActionId.APPROVE_REQUEST.value, request_id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id=manager, **where) for _ in range(4)]
        bodies += [view_submission(deny_values("not justified by the ticket"), user_id=manager, callback_id=CallbackId.DENY_REQUEST.value, private_metadata=request_id) for _ in range(2)]
    bodies += [
        block_action(ActionId.CANCEL_REQUEST.value, request_id, block_id=BlockId.PENDING_ACTIONS.value, user_id="UAGENT1", channel=agent_dm.response["channel"], message_ts=agent_dm.response["ts"])
        for _ in range(3)
    ]

    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def click(body: str) -> None:
        barrier.wait()
        statuses.append(bot.send(body).status)

    threads = [threading.Thread(target=click, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(bodies)
    bot.delivered()

    with session_factory() as db:
        state = db.get(ImpersonationRequest, request_id).state
        decisions = db.execute(select(AuditEvent.type).where(AuditEvent.request_id == request_id, AuditEvent.type.in_(DECISIONS))).scalars().all()
        assert verify_chain(db)[1] is None
    assert state in ("granted", "denied", "cancelled")
    assert len(decisions) == 1, decisions
    assert {"granted": "approval.granted", "denied": "approval.denied", "cancelled": "request.cancelled"}[state] == decisions[0]

    for manager, dm in approver_dms.items():
        message = fake.messages[(dm.response["channel"], dm.response["ts"])]
        assert len(message.history) == 1, f"{manager}'s approval DM was edited {len(message.history)} times"
        assert not [b for b in message.blocks if b.get("type") == "actions"], "decided messages keep no buttons"
    agent_message = fake.messages[(agent_dm.response["channel"], agent_dm.response["ts"])]
    assert len(agent_message.history) == 1
    fake.assert_no_violations()
