"""The App Home tab end to end over HTTP: a signed `app_home_opened` event is answered at
once, and the person's Home is published to the fake Slack (checked against Slack's reference
and Block Kit limits), then published again when a change concerns it."""
from __future__ import annotations

import json
import time

from bot.domain import outbox
from bot.slack.ids import ActionId, CallbackId
from tests.slack.listeners.flow import request_state
from tests.slack.signed import app_home_opened, view_submission


def test_opening_the_home_publishes_it_and_a_request_publishes_it_again(running_bot):
    bot, fake = running_bot, running_bot.fake
    reply = bot.send(app_home_opened("UAGENT1"))
    assert reply.status == 200
    bot.delivered()
    (first,) = fake.calls_to("views.publish")
    assert first.ok and first.args["user_id"] == "UAGENT1"
    assert ActionId.HOME_REQUEST.value in json.dumps(fake.home_views["UAGENT1"]["blocks"])

    time.sleep(1.1)  # past the person's one-publish-a-second slot
    bot.send(view_submission(request_state(account="globex", user="u-carol"), callback_id=CallbackId.IMPERSONATE_REQUEST.value))
    bot.delivered()
    # the Home's publish is owed in the outbox; the scheduler's delivery job sends it
    outbox.deliver_due(bot.container.ctx, bot.container.ctx.courier)
    assert "waiting for approval" in json.dumps(fake.home_views["UAGENT1"]["blocks"])
    fake.assert_no_violations()
