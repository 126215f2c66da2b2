"""Whether who signed in with Slack is the requesting agent (bot/domain/sign_in.py)."""
from __future__ import annotations

import pytest

from bot.domain.sign_in import SignedInAgent, is_requester

REQUEST = dict(agent_slack_id="UAGENT1", agent_enterprise_user_id="W0AGENT1", team_id="T0AGENTS")


@pytest.mark.parametrize(
    ("signed_in", "request_", "expected"),
    [
        (SignedInAgent("UAGENT1", "T0AGENTS"), REQUEST, True),
        # the same person by their Enterprise Grid id, in the request's workspace or its org
        (SignedInAgent("W0AGENT1", "T0AGENTS", "E0CORP"), REQUEST, True),
        (SignedInAgent("W0AGENT1", "T0OTHER", "T0AGENTS"), REQUEST, True),
        # someone else, even in the same workspace
        (SignedInAgent("UINTRUDER", "T0AGENTS"), REQUEST, False),
        (SignedInAgent("W0INTRUDER", "T0AGENTS", "E0CORP"), REQUEST, False),
        # the agent's id, but signed in to another workspace
        (SignedInAgent("UAGENT1", "T0OTHER"), REQUEST, False),
        (SignedInAgent("UAGENT1", "T0OTHER", "E0OTHER"), REQUEST, False),
        # a request that recorded no workspace compares the person only
        (SignedInAgent("UAGENT1", "T0ANY"), {**REQUEST, "team_id": None}, True),
        (SignedInAgent("UINTRUDER", "T0ANY"), {**REQUEST, "team_id": None}, False),
        # a requester without a Grid id: no W… id stands in for them
        (SignedInAgent("W0AGENT1", "T0AGENTS"), {**REQUEST, "agent_enterprise_user_id": None}, False),
    ],
)
def test_is_requester(signed_in, request_, expected):
    assert is_requester(signed_in, **request_) is expected
