"""bot/slack/blocks/usage.py: the answer to `/impersonate help`."""
from __future__ import annotations

from bot.domain.policy import powers_of
from bot.slack.blocks.usage import NO_ROLE_LINE, usage_lines, usage_message
from tests.slack.block_rules import problems


def test_usage_lists_only_what_the_powers_allow(policy, groups):
    security = usage_lines(powers_of(policy, "USECURITY1", groups))
    assert any("revoke" in line for line in security) and not any("[account]" in line for line in security)
    assert usage_lines(None) == [NO_ROLE_LINE]


def test_the_usage_message_escapes_the_unknown_word(policy, groups):
    text, shown = usage_message(powers_of(policy, "UAGENT1", groups), unknown="<@U1>&")
    assert "`&lt;@U1&gt;&amp;` is not" in shown[0]["text"]["text"] and "<@U1>" not in text
    assert problems(shown, surface="message") == []
