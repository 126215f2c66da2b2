"""bot/slack/blocks/digest.py: the access review's headline in the security channel."""
from __future__ import annotations

import json

from bot.domain.digests import ConcentrationRow, DigestReport, Period
from bot.slack.blocks.digest import digest_message
from tests.slack.blocks.factories import HOSTILE, LATER, STARTED, check


def test_the_digest_message():
    period = Period("2029Q4", "2029 Q4 (quarterly access review)", STARTED, LATER, "quarterly")
    report = DigestReport(period, LATER, 3, 2, 2, 1, (), (), 1, (), 1, 1, (), 90, (), (("off_hours", 1),), 0, (), 0, (), 0,
                          (ConcentrationRow("acme", HOSTILE, "UAGENT1", 2, 2),))
    blocks = check(digest_message(report))
    assert blocks[0]["text"]["text"] == "Access review: 2029Q4"
    assert "100 % of" in json.dumps(blocks)
