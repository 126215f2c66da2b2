"""bot/slack/blocks/home.py: the Home tab within Slack's limits, with the tools the powers allow."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from bot.domain.home import HomeView
from bot.domain.policy import powers_of
from bot.slack import limits
from bot.slack.blocks.home import home_tab
from bot.slack.ids import ActionId, BlockId


def full_home(policy, groups, slack_id: str) -> HomeView:
    """A Home with every list as long as the Home shows it, from hostile user text."""
    from datetime import datetime, timedelta, timezone

    from bot.domain import home
    from bot.domain.anomalies import AlertView, Rule
    from bot.domain.checkpoints import Checkpoint
    from tests.slack.blocks.factories import ask, extension_view, hostile_request, session_view

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

    view = home_tab(full_home(policy, groups, "USECURITY1"))
    assert view["type"] == "home" and len(view["blocks"]) <= limits.HOME_BLOCKS_MAX
    assert block_kit_errors(view=view, surface="home") == []
    text = json.dumps(view, ensure_ascii=False)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "30 more live" in text and "`abababababababab…`" in text
    block_ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))  # a view's block ids are unique


def test_the_home_offers_the_tools_the_powers_allow(policy, groups):
    def tools(slack_id):
        view = home_tab(HomeView(slack_id, None, datetime.now(timezone.utc), powers_of(policy, slack_id, groups)))
        return [e["action_id"] for b in view["blocks"] if b.get("block_id") == BlockId.HOME_TOOLS.value for e in b["elements"]]

    assert tools("UAGENT1") == [ActionId.HOME_REQUEST.value]
    assert tools("USECURITY1") == [ActionId.HOME_FLAG.value]
    assert tools("UNOBODY1") == []
