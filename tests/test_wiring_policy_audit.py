"""Start-up audits the policy in force: bot.wiring.build_container, which
`serve`, every `web` worker and `scheduler` go through, records `policy.changed` when the
policy file differs from the one last recorded, and only then."""
from __future__ import annotations

import json

from bot import wiring
from tests.slack.conftest import audit_events
from tests.test_wiring import fake_slack, make_settings  # noqa: F401 - fixtures


def test_start_up_records_the_policy_once_and_then_each_change(make_settings, session_factory):
    settings = make_settings()
    for _ in range(2):
        wiring.build_container(settings).close()
    (first,) = audit_events(session_factory, "policy.changed")
    assert json.loads(first.details)["source"] == str(settings.policy_path)

    text = settings.policy_path.read_text()
    settings.policy_path.write_text(text.replace("redeem_window_minutes = 5", "redeem_window_minutes = 7"))
    wiring.build_container(settings).close()
    first, second = audit_events(session_factory, "policy.changed")
    details = json.loads(second.details)
    assert details["changes"] == ["links.redeem_window_minutes: 5 → 7"]
    assert details["previous_sha256"] == json.loads(first.details)["sha256"]
