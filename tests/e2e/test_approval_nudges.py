"""Reminders and escalation end to end over HTTP, on a frozen clock: a request nobody answers
reminds its approver halfway through its TTL with a new DM, escalates to the second approver
group, whose member approves from their own DM; the agent's DM names everyone asked, edited
in place; every reminder and ask loses its buttons once decided."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain.audit import verify_chain
from bot.jobs import work
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.e2e.conftest import link_in
from tests.slack.listeners.flow import request_state
from tests.slack.signed import block_action, view_submission

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)


def _run_scheduler(bot) -> None:
    for job in work.ALL:
        job(bot.container.ctx)


def _dms(fake, user: str) -> list:
    return [m for m in fake.messages.values() if m.channel == fake.dm_channel(user)]


def _headline(message) -> str:
    return message.blocks[0]["text"]["text"]


def _has_buttons(message) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks)


def test_an_unanswered_request_reminds_escalates_and_is_approved_by_the_second_group(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    ctx = bot.container.ctx
    ctx.policy = ctx.policy.model_copy(
        update={"gating": ctx.policy.gating.model_copy(update={"approvers_by_account": {"globex": ["UMANAGER1"]}, "escalate_to": ["UMANAGER2"]})}
    )
    with freeze_time(T0) as clock:
        submitted = bot.send(view_submission(request_state(account="globex", user="u-carol"), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
        assert submitted.status == 200
        bot.delivered()
        with session_factory() as db:
            request_id = db.execute(select(ImpersonationRequest.id)).scalar_one()
        (agent_dm,) = [m for m in _dms(fake, "UAGENT1") if _headline(m) == "Approval needed"]
        assert "It was sent to <@UMANAGER1>;" in json.dumps(agent_dm.blocks)
        assert [_headline(m) for m in _dms(fake, "UMANAGER1")] == ["Approval needed: impersonation"]
        assert _dms(fake, "UMANAGER2") == []

        # halfway through the 30-minute TTL: a reminder, as a new DM that notifies
        clock.move_to(T0 + timedelta(minutes=15))
        _run_scheduler(bot)
        _run_scheduler(bot)  # a second run owes nothing more
        ask, reminder = _dms(fake, "UMANAGER1")
        assert _headline(reminder) == "Reminder: approval needed: impersonation" and _has_buttons(reminder)
        assert [c.args["channel"] for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "UMANAGER1"] == ["UMANAGER1"] * 2
        assert "were reminded at 10:15 CET" in json.dumps(agent_dm.blocks)  # edited in place, the agent's zone

        # not yet escalated: the second group's member may not decide
        refused = bot.send(block_action(ActionId.APPROVE_REQUEST.value, request_id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id="UMANAGER2"))
        assert refused.status == 200
        bot.delivered()
        with session_factory() as db:
            assert db.get(ImpersonationRequest, request_id).state == "pending"

        # three quarters of the TTL: the escalation group is asked
        clock.move_to(T0 + timedelta(minutes=23))
        _run_scheduler(bot)
        (escalated_ask,) = _dms(fake, "UMANAGER2")
        assert _headline(escalated_ask) == "Approval needed: impersonation" and _has_buttons(escalated_ask)
        assert "also sent to <@UMANAGER2>" in json.dumps(agent_dm.blocks)

        approved = bot.send(
            block_action(
                ActionId.APPROVE_REQUEST.value, request_id, block_id=BlockId.APPROVAL_ACTIONS.value, user_id="UMANAGER2",
                channel=escalated_ask.channel, message_ts=escalated_ask.ts,
            )
        )
        assert approved.status == 200
        bot.delivered()

    with session_factory() as db:
        assert db.get(ImpersonationRequest, request_id).state == "granted"
        types = [t for t in db.execute(select(AuditEvent.type).where(AuditEvent.request_id == request_id).order_by(AuditEvent.seq)).scalars()]
        assert verify_chain(db)[1] is None
    assert types.count("approval.reminded") == 1 and types.count("approval.escalated") == 1
    assert "approval.refused" in types and types[-1] in ("approval.granted", "link.issued")
    link_dm = [m for m in _dms(fake, "UAGENT1") if m is not agent_dm]
    assert len(link_dm) == 1 and link_in(link_dm[0].blocks)
    assert _headline(agent_dm) == "Request approved"
    for message in (ask, reminder, escalated_ask):
        assert not _has_buttons(message) and _headline(message) == "Approved: impersonation"
    fake.assert_no_violations()
