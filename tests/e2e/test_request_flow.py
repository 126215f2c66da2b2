"""A request end to end over HTTP: /impersonate → modal → policy → DM with the one-time link →
landing page → redemption and hand-off → DM edited to "Session active" → End session."""
from __future__ import annotations

import re
from html import unescape

import requests
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain.handoff import verify_handoff
from bot.domain.audit import verify_chain
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.e2e.conftest import link_in, wait_for
from tests.slack.listeners.flow import request_state
from tests.slack.signed import block_action, slash_command, view_submission


def _submit(bot, **answers):
    return bot.send(view_submission(request_state(**answers), callback_id=CallbackId.IMPERSONATE_REQUEST.value))


def test_the_whole_flow_over_http(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake

    trigger = fake.issue_trigger_id()
    reply = bot.send(slash_command("acme", trigger_id=trigger))
    assert reply.status == 200
    (opened,) = fake.calls_to("views.open")
    assert opened.ok and opened.args["trigger_id"] == trigger
    assert opened.args["view"]["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value
    assert "acme" in str(opened.args["view"])

    refused = _submit(bot, reason="short")
    assert refused.status == 200
    assert refused.json()["response_action"] == "errors"
    assert BlockId.REASON.value in refused.json()["errors"]
    assert fake.calls_to("chat.postMessage") == []

    granted = _submit(bot)
    assert granted.status == 200 and not granted.body.strip("{} ")  # ack() closes the modal
    bot.delivered()  # the DM is sent after the answer
    (dm,) = [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "UAGENT1"]
    assert dm.args["channel"] == "UAGENT1"
    assert dm.flag("unfurl_links") is False and dm.flag("unfurl_media") is False
    link = link_in(dm.args["blocks"])
    assert link.rsplit("/", 1)[1] not in dm.args.get("text", "")

    browser = requests.Session()
    page = browser.get(bot.local(link), headers={"User-Agent": "Slackbot-LinkExpanding 1.0"}, timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    redeemed = browser.post(bot.local(link), data={"csrf": unescape(csrf)}, timeout=10)
    assert redeemed.status_code == 200
    action = re.search(r'<form[^>]+action="([^"]+)"', redeemed.text).group(1)
    assert unescape(action) == "http://product.test/impersonation/launch"
    token = re.search(r'name="token" value="([^"]+)"', redeemed.text).group(1)
    jwks = requests.get(f"{bot.url}/.well-known/jwks.json", timeout=10).json()
    claims = verify_handoff(token, jwks, issuer="http://bot.test", audience="http://product.test/impersonation/launch")
    assert claims["account"] == "acme" and claims["sub"] == "u-bob" and claims["act"]["sub"] == "agent1@corp.example"

    replay = browser.post(bot.local(link), data={"csrf": unescape(csrf)}, timeout=10)
    assert replay.status_code == 409

    channel, ts = dm.response["channel"], dm.response["ts"]
    edited = wait_for(lambda: fake.messages[(channel, ts)].history and fake.messages[(channel, ts)])
    assert "Session active until" in edited.text or "Session active until" in str(edited.blocks)

    ended = bot.send(block_action(ActionId.END_SESSION.value, claims["sid"], block_id=BlockId.SESSION_ACTIONS.value, user_id="UAGENT1", channel=channel, message_ts=ts))
    assert ended.status == 200
    bot.delivered()
    final = fake.messages[(channel, ts)]
    assert "ended" in (final.text + str(final.blocks)).lower()

    fake.assert_no_violations()
    with session_factory() as db:
        types = db.execute(select(AuditEvent.type).order_by(AuditEvent.seq)).scalars().all()
        assert verify_chain(db)[1] is None
    for expected in ("request.blocked", "request.created", "request.granted", "link.issued", "session.redeemed", "link.replay_refused", "session.ended"):
        assert expected in types


def test_unsigned_and_stale_requests_are_refused_and_change_nothing(running_bot, session_factory):
    bot, fake = running_bot, running_bot.fake
    body = slash_command("acme", trigger_id=fake.issue_trigger_id())
    assert bot.send(body, secret="wrong-secret").status == 401
    assert bot.send(body, timestamp=0).status == 401
    stale = bot.send(body, timestamp=int(__import__("time").time()) - 301)
    assert stale.status == 401
    assert fake.calls_to("views.open") == []
    with session_factory() as db:
        assert db.execute(select(AuditEvent).where(AuditEvent.type.like("request.%"))).first() is None


def test_hostile_text_is_escaped_in_the_dm(running_bot):
    bot, fake = running_bot, running_bot.fake
    reason = "<!channel> see <https://evil.example|your invoice> & ping <@UMANAGER1>"
    assert _submit(bot, reason=reason).status == 200
    bot.delivered()
    (dm,) = [c for c in fake.calls_to("chat.postMessage") if c.args["channel"] == "UAGENT1"]
    shown = str(dm.args["blocks"])
    assert "<!channel>" not in shown and "<@UMANAGER1>" not in shown and "<https://evil.example|" not in shown
    assert "&lt;!channel&gt;" in shown and "&amp;" in shown
    fake.assert_no_violations()
