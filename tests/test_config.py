"""Settings from the environment and `.env` (DESIGN.md "Outside interfaces")."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "DATABASE_URL",
    "IMPERSONATION_POLICY",
    "PUBLIC_BASE_URL",
    "PRODUCT_LAUNCH_URL",
    "SIGNING_KEY_FILE",
    "AUDIT_CHECKPOINT_FILE",
    "IMPERSONATION_ENV",
    "PORT",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_OIDC_ISSUER",
)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No setting in the environment, and a working directory without .env. Each variable is
    set then deleted through monkeypatch, so whatever load_dotenv() writes into os.environ is
    undone after the test too."""
    for name in VARIABLES:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_those_of_design_md(clean_env):
    settings = load_settings()
    assert settings.slack_bot_token is None
    assert settings.slack_signing_secret is None
    assert settings.slack_app_token is None
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.database_url == "sqlite:///impersonation.db"
    assert settings.policy_path == Path("policy.toml")
    assert settings.public_base_url == "http://localhost:3000"
    assert settings.product_launch_url is None
    assert settings.signing_key_file == Path("signing_key.pem")
    assert settings.checkpoint_file is None
    assert settings.environment == "dev"
    assert settings.port == 3000
    assert not settings.has_slack_credentials


def test_every_variable_is_read_from_the_environment(clean_env, monkeypatch):
    values = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_API_URL": "http://127.0.0.1:9999/api/",
        "DATABASE_URL": "postgresql://bot@db/bot",
        "IMPERSONATION_POLICY": "/etc/bot/policy.toml",
        "PUBLIC_BASE_URL": "https://bot.example.com",
        "PRODUCT_LAUNCH_URL": "https://app.example.com/impersonation/launch",
        "SIGNING_KEY_FILE": "/run/secrets/signing_key.pem",
        "AUDIT_CHECKPOINT_FILE": "/var/lib/bot/checkpoints.jsonl",
        "IMPERSONATION_ENV": "production",
        "PORT": "8080",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token) == ("xoxb-1", "secret", "xapp-1")
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"
    assert settings.database_url == "postgresql://bot@db/bot"
    assert settings.policy_path == Path("/etc/bot/policy.toml")
    assert settings.public_base_url == "https://bot.example.com"
    assert settings.product_launch_url == "https://app.example.com/impersonation/launch"
    assert settings.signing_key_file == Path("/run/secrets/signing_key.pem")
    assert settings.checkpoint_file == Path("/var/lib/bot/checkpoints.jsonl")
    assert settings.environment == "production"
    assert settings.port == 8080
    assert settings.has_slack_credentials


def test_dotenv_is_read_from_the_working_directory(clean_env):
    (clean_env / ".env").write_text(
        "SLACK_BOT_TOKEN=xoxb-from-dotenv\nSLACK_SIGNING_SECRET=from-dotenv\nDATABASE_URL=sqlite:///dotenv.db\n"
    )
    settings = load_settings()
    assert settings.slack_bot_token == "xoxb-from-dotenv"
    assert settings.database_url == "sqlite:///dotenv.db"
    assert settings.has_slack_credentials


def test_the_environment_wins_over_dotenv(clean_env, monkeypatch):
    (clean_env / ".env").write_text("DATABASE_URL=sqlite:///dotenv.db\n")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///environment.db")
    assert load_settings().database_url == "sqlite:///environment.db"


def test_an_explicit_mapping_ignores_the_process_environment(clean_env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///environment.db")
    (clean_env / ".env").write_text("PORT=1234\n")
    settings = load_settings({"PORT": "5000"})
    assert (settings.database_url, settings.port) == ("sqlite:///impersonation.db", 5000)


def test_empty_values_mean_unset(clean_env):
    settings = load_settings({"SLACK_BOT_TOKEN": "", "DATABASE_URL": "", "PUBLIC_BASE_URL": ""})
    assert settings.slack_bot_token is None
    assert settings.database_url == "sqlite:///impersonation.db"
    assert settings.public_base_url == "http://localhost:3000"


def test_slack_api_url_gets_its_trailing_slash(clean_env):
    # slack_sdk appends method names to the base URL
    assert load_settings({"SLACK_API_URL": "http://fake:1/api"}).slack_api_url == "http://fake:1/api/"


def test_public_base_url_loses_its_trailing_slash(clean_env):
    assert load_settings({"PUBLIC_BASE_URL": "https://bot.example.com/"}).public_base_url == "https://bot.example.com"


@pytest.mark.parametrize("port", ["http", "-1", "80.5"])
def test_a_bad_port_is_a_config_error(clean_env, port):
    with pytest.raises(ConfigError, match="PORT"):
        load_settings({"PORT": port})


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET not set"),
        ({"SLACK_SIGNING_SECRET": "secret"}, "SLACK_BOT_TOKEN not set"),
    ],
)
def test_require_slack_says_what_to_set_and_how(clean_env, env, missing):
    settings = load_settings(env)
    with pytest.raises(ConfigError) as raised:
        settings.require_slack()
    message = str(raised.value)
    assert message.startswith(missing)
    assert "manifest.yaml" in message
    assert "\n" not in message


def test_require_slack_passes_with_both_and_no_app_token_means_http(clean_env):
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "secret"})
    settings.require_slack()  # raises ConfigError if it disagrees with has_slack_credentials
    assert settings.has_slack_credentials
    assert not settings.socket_mode  # Slack posts to the signed HTTP endpoints


def test_an_app_token_turns_socket_mode_on(clean_env):
    assert not load_settings({}).socket_mode
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_APP_TOKEN": "xapp-1-A1-2-abc"})
    assert settings.socket_mode
    settings.require_slack()  # an app-level token passes


@pytest.mark.parametrize(
    ("token", "kind"),
    [("xoxb-123-secretpart", "a bot token"), ("xoxp-123-secretpart", "a user token"), ("secretpart", None)],
)
def test_an_app_token_of_another_kind_is_refused_without_repeating_it(clean_env, token, kind):
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_APP_TOKEN": token})
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN must be an app-level token starting with 'xapp-'") as refused:
        settings.require_slack()
    message = str(refused.value)
    assert "secretpart" not in message and "connections:write" in message
    assert (kind in message) if kind else ("holds" not in message)


def test_sign_in_with_slack_settings(clean_env):
    settings = load_settings()
    assert (settings.slack_client_id, settings.slack_client_secret) == (None, None)
    assert settings.slack_oidc_issuer == "https://slack.com"
    assert not settings.has_slack_sign_in
    settings = load_settings(
        {"SLACK_CLIENT_ID": "2141029472.691202649728", "SLACK_CLIENT_SECRET": "s3cret", "SLACK_OIDC_ISSUER": "http://127.0.0.1:9/"}
    )
    assert settings.has_slack_sign_in
    assert settings.slack_oidc_issuer == "http://127.0.0.1:9"  # as discovery's `issuer` spells it
    assert "s3cret" not in repr(settings.slack_client_id)


def test_retention_days_default_and_must_be_positive_whole_numbers():
    settings = load_settings({})
    assert (settings.retention_outbox_days, settings.retention_link_days) == (30, 90)
    assert load_settings({"RETENTION_OUTBOX_DAYS": "7", "RETENTION_LINK_DAYS": "365"}).retention_link_days == 365
    for name in ("RETENTION_OUTBOX_DAYS", "RETENTION_LINK_DAYS"):
        for bad in ("0", "-1", "two", "1.5"):
            with pytest.raises(ConfigError, match=f"{name} must be a whole number of days"):
                load_settings({name: bad})
