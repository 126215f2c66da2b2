import pytest

from bot.slack import limits
from bot.slack.ids import ActionId, BlockId, CallbackId, ShortcutId, SlashCommand


@pytest.mark.parametrize("enum_type", [ActionId, BlockId, CallbackId, ShortcutId])
def test_ids_are_unique_and_within_slack_limits(enum_type):
    values = [member.value for member in enum_type]
    assert len(values) == len(set(values))
    assert all(0 < len(v) <= min(limits.BLOCK_ID_MAX, limits.ACTION_ID_MAX, limits.CALLBACK_ID_MAX) for v in values)


def test_slash_commands_are_slack_command_names():
    # Slack: a command starts with "/" and is at most 32 characters, lower case, no spaces
    for command in SlashCommand:
        assert command.value.startswith("/") and len(command.value) <= 32
        assert command.value == command.value.lower() and " " not in command.value
