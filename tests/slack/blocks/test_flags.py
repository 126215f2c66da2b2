"""bot/slack/blocks/flags.py: the account-flag modal, read back, and what the person is told."""
from __future__ import annotations

import pytest

from bot.db.models import AccountFlag
from bot.domain.account_flags import FlagChange, FlagChanged, FlagField, FlagForm, FlagFormView
from bot.slack.blocks.flags import flag_changed_text, flag_errors, flag_form_from_state, flag_modal
from bot.slack.ids import BlockId
from tests.slack.block_rules import problems


@pytest.mark.parametrize("account", [None, ("acme", "ACME <Corp> & co")])
def test_the_flag_modal_reads_back_what_it_lays_out(account):
    view = flag_modal(FlagFormView(account, frozenset({"sensitive"})))
    assert problems(view, surface="modal") == []
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    values = {
        BlockId.FLAG_ACCOUNT.value: {inputs[BlockId.FLAG_ACCOUNT.value]["action_id"]: {"selected_option": {"value": "acme"}}},
        BlockId.FLAG_WHICH.value: {inputs[BlockId.FLAG_WHICH.value]["action_id"]: {"selected_option": inputs[BlockId.FLAG_WHICH.value]["options"][0]}},
        BlockId.FLAG_VALUE.value: {inputs[BlockId.FLAG_VALUE.value]["action_id"]: {"selected_option": inputs[BlockId.FLAG_VALUE.value]["options"][1]}},
        BlockId.FLAG_REFERENCE.value: {inputs[BlockId.FLAG_REFERENCE.value]["action_id"]: {"value": "MSA-1"}},
        BlockId.FLAG_REASON.value: {inputs[BlockId.FLAG_REASON.value]["action_id"]: {"value": "the reason"}},
    }
    assert flag_form_from_state(values) == FlagForm("acme", "opted_out", False, "MSA-1", "the reason")
    if account is not None:
        assert "ACME &lt;Corp&gt; &amp; co" in view["blocks"][0]["text"]["text"]


def test_flag_errors_go_under_the_field():
    assert flag_errors("why", FlagField.REASON) == {BlockId.FLAG_REASON.value: "why"}
    assert flag_errors("<no>", None) == {BlockId.FLAG_ACCOUNT.value: "&lt;no&gt;"}


def test_flag_changed_text_says_what_happened():
    unchanged = FlagChanged("acme", "ACME", AccountFlag.SENSITIVE, True, FlagChange(False))
    assert "nothing changed" in flag_changed_text(unchanged)
    cleared = FlagChanged("acme", "ACME", AccountFlag.SENSITIVE, False, FlagChange(True))
    assert flag_changed_text(cleared).startswith("`sensitive` cleared from *ACME* (acme)")
