"""Re-initiation end to end over HTTP, on a frozen clock: a session ends → its DM offers
"Start a new request" → the modal → a fresh reason → the approvers' DMs say "re-initiation #1
within M min"; `/impersonate` within the window is linked the same way, and past it is not.

The bot runs under a policy asking approval from the first re-initiation on, so that an
ungated account's re-initiation reaches the approvers."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
import requests
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent, ImpersonationRequest
from bot.domain.audit import verify_chain
from bot.jobs import work
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.conftest import TEST_POLICY
from tests.e2e.conftest import link_in
from tests.slack.block_rules import mrkdwn_texts
from tests.slack.listeners.flow import request_state
from tests.slack.signed import block_action, slash_command, view_submission

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=timezone.utc)
MANAGERS = ("UMANAGER1", "UMANAGER2", "UMANAGER3")
FRESH_REASON = "the export still fails after the fix, checking the new error"


@pytest.fixture
def bot_policy() -> str:
    return TEST_POLICY + "\n[reinitiation]\nwindow_minutes = 30\nrequire_approval_from = 1\n"


def _until(predicate):
    """Poll for what the bot does after its answer (the redemption's DM edit). Real sleeps:
    the frozen clock does not move by itself."""
    for _ in range(500):
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _buttons(blocks):
    return [e for b in blocks if b.get("type") == "actions" for e in b["elements"]]


def _request(bot, text: str = "acme"):
    """`/impersonate <text>`, then the modal's submission (a fresh reason, no carried session)."""
    assert bot.send(slash_command(text, trigger_id=bot.fake.issue_trigger_id())).status == 200
    reply = bot.send(view_submission(request_state(reason=FRESH_REASON), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    assert reply.status == 200 and reply.json() is None, reply.body  # closed: no errors, no "already open"
    bot.delivered()


def _live_session(bot) -> tuple[str, str, str]:
    """A granted request on acme, redeemed in a browser: (session id, the DM's channel and ts)."""
    fake = bot.fake
    posted = len(fake.calls_to("chat.postMessage"))
    _request(bot)
    (dm,) = [c for c in fake.calls_to("chat.postMessage")[posted:] if c.args["channel"] == "UAGENT1"]
    browser = requests.Session()
    link = bot.local(link_in(dm.args["blocks"]))
    page = browser.get(link, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    redeemed = browser.post(link, data={"csrf": unescape(csrf)}, timeout=10)
    assert redeemed.status_code == 200
    channel, ts = dm.response["channel"], dm.response["ts"]
    live = _until(lambda: fake.messages[(channel, ts)].history and fake.messages[(channel, ts)])
    # The DM is edited before the deliverer records that it sent the change's rows; until then
    # a later row about the same DM waits behind the claim, so the test waits for the record.
    assert bot.container.wait_for_deliveries()
    (end,) = [b for b in _buttons(live.blocks) if b["action_id"] == ActionId.END_SESSION.value]
    return end["value"], channel, ts


def _approver_asks(bot, since: int) -> dict[str, str]:
    """What each manager's new DM says, since the `since`-th chat.postMessage."""
    return {
        c.args["channel"]: "\n".join(mrkdwn_texts(c.args["blocks"]))
        for c in bot.fake.calls_to("chat.postMessage")[since:]
        if c.args["channel"] in MANAGERS
    }


def _newest_request(session_factory) -> ImpersonationRequest:
    with session_factory() as db:
        newest = db.execute(select(ImpersonationRequest).order_by(ImpersonationRequest.created_at.desc()).limit(1)).scalar_one()
        db.expunge(newest)
        return newest


def _reinitiated(session_factory) -> list[dict]:
    with session_factory() as db:
        return [json.loads(d) for d in db.execute(select(AuditEvent.details).where(AuditEvent.type == "request.reinitiated").order_by(AuditEvent.seq)).scalars()]


def test_the_session_over_dm_asks_again_and_the_approvers_see_reinitiation_1(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    with freeze_time(T0) as clock:
        session_id, channel, ts = _live_session(bot)
        clock.tick(timedelta(minutes=4))
        end = block_action(ActionId.END_SESSION.value, session_id, block_id=BlockId.SESSION_ACTIONS.value, user_id="UAGENT1", channel=channel, message_ts=ts)
        assert bot.send(end).status == 200
        bot.delivered()

        # the session-over DM: one button, carrying the session id only
        over = fake.messages[(channel, ts)]
        assert over.blocks[0]["text"]["text"].startswith("Session ended at ")
        (again,) = _buttons(over.blocks)
        assert (again["action_id"], again["value"]) == (ActionId.START_NEW_REQUEST.value, session_id)

        clock.tick(timedelta(minutes=12))
        click = block_action(
            again["action_id"], again["value"], block_id=BlockId.SESSION_ACTIONS.value, user_id="UAGENT1",
            channel=channel, message_ts=ts, trigger_id=fake.issue_trigger_id(),
        )
        assert bot.send(click).status == 200
        opened = fake.calls_to("views.open")[-1]
        assert opened.ok
        modal = opened.args["view"]
        assert modal["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value and modal["private_metadata"] == session_id
        account = next(b for b in modal["blocks"] if b.get("block_id") == BlockId.ACCOUNT.value)["element"]
        assert account["initial_option"]["value"] == "acme"

        posted = len(fake.calls_to("chat.postMessage"))
        # a fresh reason is required: the old one is not carried over
        refused = bot.send(view_submission(request_state(reason="again"), callback_id=CallbackId.IMPERSONATE_REQUEST.value, private_metadata=modal["private_metadata"]))
        assert BlockId.REASON.value in refused.json()["errors"]
        submitted = bot.send(
            view_submission(request_state(reason=FRESH_REASON), callback_id=CallbackId.IMPERSONATE_REQUEST.value, private_metadata=modal["private_metadata"])
        )
        assert submitted.status == 200 and submitted.json() is None
        bot.delivered()

    asks = _approver_asks(bot, posted)
    assert set(asks) == set(MANAGERS)
    for shown in asks.values():
        assert "*Re-initiation #1 within 12 min* of their previous session with this user ending." in shown
        assert FRESH_REASON in shown
    agent_dm = [c for c in fake.calls_to("chat.postMessage")[posted:] if c.args["channel"] == "UAGENT1"]
    assert "because it is your re-initiation #1 in a row with this customer user" in "\n".join(mrkdwn_texts(agent_dm[0].args["blocks"]))
    newest = _newest_request(session_factory)
    assert (newest.state, newest.previous_session_id, newest.reinitiation_ordinal, newest.gated_by) == ("pending", session_id, 1, "reinitiation")
    assert [(e["previous_session_id"], e["ordinal"], e["minutes_since_end"], e["via"]) for e in _reinitiated(session_factory)] == [
        (session_id, 1, 12, "button")
    ]
    fake.assert_no_violations()
    with session_factory() as db:
        assert verify_chain(db)[1] is None


def test_impersonate_within_the_window_after_an_expiry_is_linked_and_past_it_is_not(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    with freeze_time(T0) as clock:
        session_id, channel, ts = _live_session(bot)
        clock.tick(timedelta(minutes=30, seconds=1))  # the 30-minute session is over by the clock
        work.expire_sessions(bot.container.ctx)  # what the scheduler does
        work.deliver_outbox(bot.container.ctx)
        expired = fake.messages[(channel, ts)]
        assert expired.blocks[0]["text"]["text"].startswith("Session expired at ")
        assert [(b["action_id"], b["value"]) for b in _buttons(expired.blocks)] == [(ActionId.START_NEW_REQUEST.value, session_id)]

        clock.tick(timedelta(minutes=9))
        posted = len(fake.calls_to("chat.postMessage"))
        _request(bot)  # typed again, not from the button
        asks = _approver_asks(bot, posted)
        assert set(asks) == set(MANAGERS)
        assert all("*Re-initiation #1 within 10 min*" in shown for shown in asks.values())
        linked = _newest_request(session_factory)
        assert (linked.previous_session_id, linked.reinitiation_ordinal, linked.state) == (session_id, 1, "pending")

        # withdrawn; then asked again once the window since the expiry has passed
        (pending_dm,) = [c for c in fake.calls_to("chat.postMessage")[posted:] if c.args["channel"] == "UAGENT1"]
        cancel = block_action(
            ActionId.CANCEL_REQUEST.value, linked.id, block_id=BlockId.PENDING_ACTIONS.value, user_id="UAGENT1",
            channel=pending_dm.response["channel"], message_ts=pending_dm.response["ts"],
        )
        assert bot.send(cancel).status == 200
        bot.delivered()
        clock.tick(timedelta(minutes=21))  # 31 minutes after the session's end
        posted = len(fake.calls_to("chat.postMessage"))
        _request(bot)

    fresh = _newest_request(session_factory)
    assert (fresh.previous_session_id, fresh.reinitiation_ordinal, fresh.state) == (None, 0, "granted")
    assert _approver_asks(bot, posted) == {}  # an ordinary account, a fresh request: no approver asked
    (agent_dm,) = [c for c in fake.calls_to("chat.postMessage")[posted:] if c.args["channel"] == "UAGENT1"]
    link_in(agent_dm.args["blocks"])  # the link, at once
    assert [(e["ordinal"], e["minutes_since_end"], e["via"]) for e in _reinitiated(session_factory)] == [(1, 10, "command")]
    fake.assert_no_violations()
