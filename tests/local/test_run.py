"""Local mode's start-up decisions (bot/local/run.py): when `serve` starts it, and where it
refuses to."""
from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings
from bot.local import demo, run


@pytest.mark.parametrize(
    ("env", "local"),
    [
        ({}, True),
        ({"SLACK_BOT_TOKEN": ""}, True),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, False),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, False),  # half configured: serve says what is missing
        ({"SLACK_SIGNING_SECRET": "s"}, False),
        ({"SLACK_APP_TOKEN": "xapp-1"}, False),
    ],
)
def test_local_mode_only_without_any_slack_credential(env, local):
    assert run.wants_local_mode(env) is local


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_local_mode_refuses_outside_dev(environment):
    settings = load_settings({"IMPERSONATION_ENV": environment}, read_dotenv=False)
    with pytest.raises(ConfigError, match="IMPERSONATION_ENV=dev"):
        run.refuse_outside_dev(settings)


def test_local_mode_starts_nothing_outside_dev(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"IMPERSONATION_ENV": "production"}, read_dotenv=False)
    with pytest.raises(ConfigError):
        run.start(settings, migrate=lambda _settings: pytest.fail("migrated"))
    assert not (tmp_path / run.STATE_DIR).exists()


def test_the_bot_runs_locally_against_the_workspace_and_the_demo_product():
    settings = load_settings({"PORT": "4000"}, read_dotenv=False)
    env = run.local_environment(settings, workspace_url="http://localhost:4001", signing_secret="s" * 64, bot_token="xoxb-local-1")
    local = load_settings(env, read_dotenv=False)
    assert local.slack_api_url == "http://localhost:4001/api/"
    assert local.public_base_url == "http://localhost:4000"
    assert local.product_launch_url == "http://127.0.0.1:4002/impersonation/launch"
    assert local.database_url.startswith("sqlite:///") and local.database_url.endswith(".local-workspace/impersonation.db")
    assert local.policy_path == demo.POLICY_PATH and local.host == "127.0.0.1" and local.is_dev
    local.require_urls()
