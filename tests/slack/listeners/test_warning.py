"""**End now** on the expiry warning: the session ends, and both the warning
and the session's DM lose their buttons (the outbox rows the end wrote, sent at once)."""
from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import MessageRef

from bot.domain import outbox, sessions, watch
from bot.domain.clock import utcnow
from bot.domain.sessions import SessionStatus
from bot.slack.courier import SlackCourier
from bot.slack.ids import ActionId, BlockId
from tests.fakes.directory_data import load_directory
from tests.slack.listeners.flow import start_live_session
from tests.slack.signed import block_action


def test_end_now_on_the_warning_ends_the_session_and_edits_both_messages(send, slack_client, ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    session = start_live_session(ctx, agent="UAGENT1", channel="DAGENT1", ts="1700000000.000500")
    with freeze_time(session.expires_at - timedelta(minutes=4)):
        assert watch.warn_expiring(ctx) == 1
        outbox.deliver_due(ctx, SlackCourier(ctx, slack_client), targets=[outbox.target_of(outbox.Kind.WARNING, session.id, "UAGENT1")])
        (warning,) = [p for p in slack_client.calls_to("chat.postMessage") if p["channel"] == "UAGENT1"]
        assert warning["blocks"][0]["text"]["text"] == "Your session ends in 4 minutes"
        with session_factory() as db:
            warning_ts = db.execute(select(MessageRef.ts).where(MessageRef.purpose == "warning")).scalar_one()
        ending = utcnow()
        send(block_action(ActionId.END_SESSION.value, session.id, block_id=BlockId.WARNING_ACTIONS.value, user_id="UAGENT1", channel="DAGENT1", message_ts=warning_ts))
    assert sessions.check_session(ctx, session.id, now=ending).status is SessionStatus.ENDED
    edited = {(u["channel"], u["ts"]): u["blocks"][0]["text"]["text"] for u in slack_client.calls_to("chat.update")}
    assert len(edited) == 2 and all(text.startswith("Session ended at ") for text in edited.values())
    assert set(edited) == {("DAGENT1", "1700000000.000500"), ("DAGENT1", warning_ts)}
