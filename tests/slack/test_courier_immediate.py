"""What a change owed, delivered at once through the Slack courier (outbox.InlineDeliverer,
as the background deliverer runs it after a response): the agent's DM edited in place when
their link is redeemed, the approvers' DMs of a submission, a decision's edits."""
import logging

import pytest

from bot.domain import approvals, links, outbox, requests, sessions
from bot.domain.outbox import InlineDeliverer
from bot.domain.ports import Person, StaticPeople
from bot.domain.requests import AgentIdentity, RequestForm
from bot.slack.courier import SlackCourier
from bot.slack.ids import ActionId
from tests.fakes.directory_data import load_directory
from tests.slack.block_rules import mrkdwn_texts, problems, walk
from tests.slack.conftest import recorded_approver_dms
from tests.slack.listeners.flow import BREAK_GLASS_REASON, REASON, redeem_live_session, with_break_glass
from tests.slack.recording_client import BOT_TOKEN


def deliver(ctx, client, targets) -> None:
    InlineDeliverer(ctx, SlackCourier(ctx, client)).deliver(targets)


@pytest.fixture
def redeemed(ctx, session_factory, tmp_path):
    """grant → (optionally) remember the DM → redeem; returns a function doing that."""
    load_directory(session_factory, tmp_path)

    def _redeem(*, record_dm: bool = True):
        form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
        granted = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
        if record_dm:
            requests.record_agent_message(ctx, granted.request.id, channel="DAGENT1", ts="1700000000.000099")
        return links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])

    return _redeem


def test_session_started_edits_the_grant_dm_in_place(ctx, slack_client, redeemed):
    redemption = redeemed()
    session = redemption.session
    deliver(ctx, slack_client, redemption.targets)
    (update,) = slack_client.calls_to("chat.update")
    assert (update["channel"], update["ts"]) == ("DAGENT1", "1700000000.000099")
    assert update["blocks"][0]["text"]["text"].startswith("Session active until ")
    assert update["blocks"][0]["text"]["text"].endswith(("CET", "CEST"))  # UAGENT1 is in Europe/Paris
    buttons = [obj for _, obj in walk(update["blocks"]) if obj.get("type") == "button"]
    # UAGENT1's role cannot ask for more time: it may start a new request instead
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (ActionId.END_SESSION.value, session.id),
        (ActionId.START_NEW_REQUEST.value, session.id),
    ]
    assert problems(update["blocks"], surface="message") == []
    # no new DM to the agent; the security channel's feed is brought up to date at once
    (feed,) = slack_client.calls_to("chat.postMessage")
    assert feed["channel"] == "CSECURITY1" and feed["text"].startswith("Impersonation live: <@UAGENT1>")
    assert [r.state for r in outbox.rows(ctx, kinds=[outbox.Kind.FEED])] == ["sent", "merged"]


def test_without_a_recorded_dm_a_new_one_is_posted_and_remembered(ctx, slack_client, redeemed):
    redemption = redeemed(record_dm=False)
    session = redemption.session
    deliver(ctx, slack_client, redemption.targets)
    (posted,) = [call for call in slack_client.calls_to("chat.postMessage") if call["channel"] == "UAGENT1"]
    assert posted["unfurl_links"] is False
    request = requests.load_request(ctx, session.request.id)
    assert request.agent_channel == "DAGENT1" and request.agent_message_ts


def test_a_session_already_over_is_shown_as_over(ctx, slack_client, redeemed):
    redemption = redeemed()
    sessions.end_session(ctx, redemption.session.id, actor_slack_id="UAGENT1")
    deliver(ctx, slack_client, redemption.targets)
    (update,) = slack_client.calls_to("chat.update")
    assert update["blocks"][0]["text"]["text"].startswith("Session ended at ")
    # no End button on a session already over: only asking again
    assert [obj["action_id"] for _, obj in walk(update["blocks"]) if obj.get("type") == "button"] == ["start_new_request"]


def test_slack_failures_are_logged_and_never_raised(ctx, slack_client, redeemed, caplog):
    redemption = redeemed()
    slack_client.fail("chat.update", "message_not_found")
    with caplog.at_level(logging.WARNING):
        deliver(ctx, slack_client, redemption.targets)
    assert "message_not_found" in caplog.text
    assert BOT_TOKEN not in caplog.text


class _Unreachable:
    """A session factory whose database is down."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("database is down")


def test_other_failures_are_logged_and_never_raised(ctx, slack_client, redeemed, caplog):
    redemption = redeemed()
    sessions_of_ctx, ctx.sessions = ctx.sessions, _Unreachable()
    try:
        with caplog.at_level(logging.ERROR):
            deliver(ctx, slack_client, redemption.targets)
    finally:
        ctx.sessions = sessions_of_ctx
    assert "RuntimeError" in caplog.text
    assert slack_client.calls_to("chat.update") == []
    # still owed: the scheduler's outbox job sends it
    assert {r.state for r in outbox.rows(ctx, kinds=[outbox.Kind.AGENT])} == {outbox.PENDING}


def test_nothing_owed_sends_nothing(ctx, slack_client, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    deliver(ctx, slack_client, [])
    deliver(ctx, slack_client, [outbox.target_of(outbox.Kind.AGENT, "00000000-0000-0000-0000-000000000000", "UAGENT1")])
    assert slack_client.calls_to("chat.update") == [] and slack_client.calls_to("chat.postMessage") == []


def test_a_role_that_may_extend_gets_request_more_time(ctx, slack_client, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    redemption = redeem_live_session(ctx, agent="USENIOR1", channel="DSENIOR1", ts="1700000000.000050")
    deliver(ctx, slack_client, redemption.targets)
    (update,) = slack_client.calls_to("chat.update")
    buttons = [obj for _, obj in walk(update["blocks"]) if obj.get("type") == "button"]
    assert [b["action_id"] for b in buttons] == [ActionId.END_SESSION.value, ActionId.REQUEST_EXTENSION.value]


# ---------------------------------------------------------------------------- submissions and decisions


@pytest.fixture
def pending(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})
    form = RequestForm(account="globex", user="u-carol", reason=REASON, ticket="SUP-1", duration_minutes=30, scope="read_only")
    result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, requests.Pending)
    return result


def test_one_failed_approver_dm_does_not_stop_the_others(ctx, slack_client, pending, caplog):
    ts = iter(range(100, 200))

    def post(args):
        if args["channel"] == "UMANAGER2":
            return {"ok": False, "error": "user_disabled"}
        return {"ok": True, "channel": "D" + args["channel"][1:], "ts": f"1700000000.{next(ts):06d}"}

    slack_client.answer("chat.postMessage", post)
    with caplog.at_level(logging.WARNING):
        deliver(ctx, slack_client, pending.targets)
    assert sorted(c["channel"] for c in slack_client.calls_to("chat.postMessage")) == ["UAGENT1", "UMANAGER1", "UMANAGER2", "UMANAGER3"]
    recorded = recorded_approver_dms(ctx, pending.request.id)
    assert sorted((m.recipient, m.channel) for m in recorded) == [("UMANAGER1", "DMANAGER1"), ("UMANAGER3", "DMANAGER3")]
    assert "user_disabled" in caplog.text and BOT_TOKEN not in caplog.text
    # the outbox keeps the refused DM: failed for good and audited, never dropped silently
    (failed,) = [r for r in outbox.rows(ctx, kinds=[outbox.Kind.APPROVER]) if r.state == outbox.FAILED]
    assert (failed.recipient, failed.last_error) == ("UMANAGER2", "user_disabled")


def test_each_approver_reads_times_in_their_own_zone(ctx, slack_client, pending):
    ctx.people = StaticPeople({"UMANAGER1": Person("UMANAGER1", tz="Asia/Tokyo"), "UMANAGER2": Person("UMANAGER2", tz="Asia/Kolkata")})
    deliver(ctx, slack_client, pending.targets)
    zones = {}
    for posted in slack_client.calls_to("chat.postMessage"):
        if posted["channel"] == "UAGENT1":
            continue
        decide_by = next(t for t in mrkdwn_texts(posted["blocks"]) if t.startswith("*Decide by*"))
        zones[posted["channel"]] = decide_by.rsplit(" ", 1)[1]
    assert zones == {"UMANAGER1": "JST", "UMANAGER2": "IST", "UMANAGER3": "UTC"}  # zones without summer time


def test_a_decision_without_a_recorded_agent_dm_posts_a_fresh_one(ctx, slack_client, pending):
    # the agent's "approval needed" DM was never recorded (its post failed)
    decided = approvals.approve_request(ctx, pending.request.id, clicker_slack_id="UMANAGER1")
    assert isinstance(decided, approvals.Decided) and decided.request.agent_channel is None
    deliver(ctx, slack_client, decided.targets)
    outcome, link_dm = (c for c in slack_client.calls_to("chat.postMessage") if c["channel"] == "UAGENT1")
    assert outcome["blocks"][0]["text"]["text"] == "Request approved"
    assert any("|Open session>" in t for t in mrkdwn_texts(link_dm["blocks"]))
    assert link_dm["unfurl_links"] is False and link_dm["unfurl_media"] is False
    assert slack_client.calls_to("chat.update") == []
    # the link DM is the one redemption will edit in place (the approvers' DMs, never
    # delivered before the decision, went out first: as decided, from the outbox)
    # (then the grant's security feed message)
    assert [c["channel"] for c in slack_client.calls_to("chat.postMessage")][-2:] == ["UAGENT1", "CSECURITY1"]
    posted = len(slack_client.calls_to("chat.postMessage")) - 1
    assert requests.load_request(ctx, pending.request.id).agent_message_ts == f"1700000000.{posted:06d}"


def test_break_glass_without_a_security_channel_is_logged(ctx, slack_client, session_factory, tmp_path, caplog):
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"]})
    with_break_glass(ctx)
    ctx.policy = ctx.policy.model_copy(update={"alerts": ctx.policy.alerts.model_copy(update={"security_channel": None})})
    form = RequestForm(account="globex", user="u-carol", reason=BREAK_GLASS_REASON, ticket="SUP-1", duration_minutes=30, scope="read_only", break_glass=True)
    granted = requests.submit_request(ctx, AgentIdentity("USENIOR1"), form)
    assert isinstance(granted, requests.Granted) and granted.bypassed
    with caplog.at_level(logging.WARNING):
        deliver(ctx, slack_client, granted.targets)
    assert [c["channel"] for c in slack_client.calls_to("chat.postMessage")] == ["USENIOR1"]
    assert "no alerts.security_channel" in caplog.text
    assert "/l/" not in caplog.text
