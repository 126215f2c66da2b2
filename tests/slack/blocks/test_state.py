"""bot/slack/blocks/state.py: the ids a button value or `private_metadata` carries."""
from __future__ import annotations

from bot.slack.blocks.state import carried_id
from tests.slack.blocks.factories import HOSTILE, REQUEST_ID


def test_carried_id_accepts_only_our_ids():
    assert carried_id(REQUEST_ID) == REQUEST_ID
    for forged in (None, "", 42, REQUEST_ID.upper(), "{" + REQUEST_ID + "}", REQUEST_ID + "\n", HOSTILE, "x" * 5000):
        assert carried_id(forged) == ""
