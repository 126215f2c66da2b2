"""Alert storms: 1,000 alerts within one minute reach the security channel as
summaries, never more than one new message per second, and every alert is in exactly one
message. A fake clock: alerts are raised and the delivery job runs at explicit moments."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.domain import anomalies, outbox
from bot.domain.anomalies import Finding, Rule
from bot.slack.courier import SlackCourier
from tests.slack.block_rules import problems
from tests.slack.recording_client import RecordingWebClient

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
ALERTS = 1000
TICK = timedelta(milliseconds=200)  # how often the delivery job runs in this test


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def raise_one(ctx, n: int, now: datetime) -> str:
    finding = Finding(Rule.ACCOUNT_BURST, f"account-{n:04d}", {"sessions_24h": 6, "limit": 5}, account=f"account-{n:04d}")
    with ctx.sessions() as db, db.begin():
        alert_id = anomalies.raise_alert(db, finding, window=timedelta(hours=24), now=now)
    assert alert_id is not None
    return alert_id


def test_a_thousand_alerts_in_a_minute_are_coalesced_and_none_is_lost(ctx):
    clock = Clock(T0)
    client = RecordingWebClient()
    courier = SlackCourier(ctx, client, clock=clock)
    sent_at: list[datetime] = []
    raised: list[str] = []
    spacing = timedelta(minutes=1) / ALERTS  # 60 ms apart: 1,000 within the minute
    next_alert = T0
    end = T0 + timedelta(minutes=2)
    while clock.now < end:
        while len(raised) < ALERTS and next_alert <= clock.now:
            raised.append(raise_one(ctx, len(raised), next_alert))
            next_alert += spacing
        before = len(client.calls_to("chat.postMessage"))
        outbox.deliver_due(ctx, courier, now=clock.now)
        sent_at += [clock.now] * (len(client.calls_to("chat.postMessage")) - before)
        clock.now += TICK

    posts = client.calls_to("chat.postMessage")
    assert {p["channel"] for p in posts} == {"CSECURITY1"}
    # about one message per second, never two within a second
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(sent_at, sent_at[1:]))
    assert len(posts) <= 62
    # every alert in exactly one message
    rows = outbox.rows(ctx, kinds=[outbox.Kind.ALERT])
    assert sorted(r.subject_id for r in rows) == sorted(raised)
    assert {r.state for r in rows} <= {"sent", "merged"}  # each sent, or carried by a sent summary
    carried = sum(1 if p["blocks"][0]["text"]["text"].startswith("Alert:") else int(p["blocks"][0]["text"]["text"].split()[0]) for p in posts)
    assert carried == ALERTS
    for post in posts:
        assert problems(post["blocks"], surface="message") == []
