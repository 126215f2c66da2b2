"""bot/slack/home_blocks.py: the usage answer, the account-flag modal and the Home tab."""
import json
from datetime import datetime, timezone

import pytest

from bot.db.models import AccountFlag
from bot.domain.account_flags import FlagChange, FlagChanged, FlagField, FlagForm, FlagFormView
from bot.domain.policy import powers_of
from bot.slack import home_blocks
from bot.slack import limits
from bot.slack.ids import ActionId, BlockId
from tests.slack.block_rules import problems


def test_usage_lists_only_what_the_powers_allow(policy, groups):
    security = home_blocks.usage_lines(powers_of(policy, "USECURITY1", groups))
    assert any("revoke" in line for line in security) and not any("[account]" in line for line in security)
    assert home_blocks.usage_lines(None) == [home_blocks.NO_ROLE_LINE]


def test_the_usage_message_escapes_the_unknown_word(policy, groups):
    text, shown = home_blocks.usage_message(powers_of(policy, "UAGENT1", groups), unknown="<@U1>&")
    assert "`&lt;@U1&gt;&amp;` is not" in shown[0]["text"]["text"] and "<@U1>" not in text
    assert problems(shown, surface="message") == []


@pytest.mark.parametrize("account", [None, ("acme", "ACME <Corp> & co")])
def test_the_flag_modal_reads_back_what_it_lays_out(account):
    view = home_blocks.flag_modal(FlagFormView(account, frozenset({"sensitive"})))
    assert problems(view, surface="modal") == []
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    values = {
        BlockId.FLAG_ACCOUNT.value: {inputs[BlockId.FLAG_ACCOUNT.value]["action_id"]: {"selected_option": {"value": "acme"}}},
        BlockId.FLAG_WHICH.value: {inputs[BlockId.FLAG_WHICH.value]["action_id"]: {"selected_option": inputs[BlockId.FLAG_WHICH.value]["options"][0]}},
        BlockId.FLAG_VALUE.value: {inputs[BlockId.FLAG_VALUE.value]["action_id"]: {"selected_option": inputs[BlockId.FLAG_VALUE.value]["options"][1]}},
        BlockId.FLAG_REFERENCE.value: {inputs[BlockId.FLAG_REFERENCE.value]["action_id"]: {"value": "MSA-1"}},
        BlockId.FLAG_REASON.value: {inputs[BlockId.FLAG_REASON.value]["action_id"]: {"value": "the reason"}},
    }
    assert home_blocks.flag_form_from_state(values) == FlagForm("acme", "opted_out", False, "MSA-1", "the reason")
    if account is not None:
        assert "ACME &lt;Corp&gt; &amp; co" in view["blocks"][0]["text"]["text"]


def test_flag_errors_go_under_the_field():
    assert home_blocks.flag_errors("why", FlagField.REASON) == {BlockId.FLAG_REASON.value: "why"}
    assert home_blocks.flag_errors("<no>", None) == {BlockId.FLAG_ACCOUNT.value: "&lt;no&gt;"}


def test_flag_changed_text_says_what_happened():
    unchanged = FlagChanged("acme", "ACME", AccountFlag.SENSITIVE, True, FlagChange(False))
    assert "nothing changed" in home_blocks.flag_changed_text(unchanged)
    cleared = FlagChanged("acme", "ACME", AccountFlag.SENSITIVE, False, FlagChange(True))
    assert home_blocks.flag_changed_text(cleared).startswith("`sensitive` cleared from *ACME* (acme)")


# ---------------------------------------------------------------- the Home tab


def full_home(policy, groups, slack_id: str) -> "HomeView":
    """A Home with every list as long as the Home shows it, from hostile user text."""
    from datetime import datetime, timedelta, timezone

    from bot.domain import home
    from bot.domain.anomalies import AlertView, Rule
    from bot.domain.checkpoints import Checkpoint
    from tests.slack.test_blocks import ask, extension_view, hostile_request, session_view

    now = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
    request = hostile_request()
    session = session_view(request, expires_at=now + timedelta(minutes=25))
    powers = powers_of(policy, slack_id, groups)
    alert = AlertView("a1", Rule.ACCOUNT_BURST, "acme", now, request.account, request.account_name, "UAGENT1", None, None, {})
    checkpoint = Checkpoint.from_json('{"kid": "k", "seq": 41, "hash": "' + "ab" * 32 + '", "time": "2030-01-07T08:00:00Z", "signature": "s"}')
    return home.HomeView(
        slack_id, "Europe/Paris", now, powers,
        agent=home.AgentHome((session,) * home.LIVE_SHOWN, (request,) * home.PENDING_SHOWN, (request,) * home.RECENT_SHOWN, True),
        queue=(ask(request), ask(request, extension=extension_view(request))) * (home.QUEUE_SHOWN // 2),
        security=home.SecurityHome((session,) * home.SECURITY_LIVE_SHOWN, 40, (alert,) * home.ALERTS_SHOWN, checkpoint),
    )


def test_a_full_home_fits_slacks_limits_and_escapes_user_text(policy, groups):
    from tests.fakes.slack_api import block_kit_errors

    view = home_blocks.home_tab(full_home(policy, groups, "USECURITY1"))
    assert view["type"] == "home" and len(view["blocks"]) <= limits.HOME_BLOCKS_MAX
    assert block_kit_errors(view=view, surface="home") == []
    text = json.dumps(view, ensure_ascii=False)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "30 more live" in text and "`abababababababab…`" in text
    block_ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))  # a view's block ids are unique


def test_the_home_offers_the_tools_the_powers_allow(policy, groups):
    from bot.domain.home import HomeView

    def tools(slack_id):
        view = home_blocks.home_tab(HomeView(slack_id, None, datetime.now(timezone.utc), powers_of(policy, slack_id, groups)))
        return [e["action_id"] for b in view["blocks"] if b.get("block_id") == BlockId.HOME_TOOLS.value for e in b["elements"]]

    assert tools("UAGENT1") == [ActionId.HOME_REQUEST.value]
    assert tools("USECURITY1") == [ActionId.HOME_FLAG.value]
    assert tools("UNOBODY1") == []
