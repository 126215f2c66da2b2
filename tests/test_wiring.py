"""Start-up wiring (bot/wiring.py): the container is built from Settings against the real
database and the project's fake Slack Web API, and every configuration problem is one of
STARTUP_ERRORS with a message that says what to fix."""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time

import pytest
from alembic import command
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from bot import wiring
from bot.config import ConfigError, Settings, load_settings
from bot.db.engine import make_engine
from bot.db.migrate import alembic_config
from bot.domain.keys import KeyError_, load_or_create_signing_key
from bot.domain.policy import PolicyError
from tests.conftest import REPO_ROOT, TEST_POLICY
from tests.fakes.slack_api import FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def make_settings(tmp_path, db_url, fake_slack):
    """Settings for one test: an explicit mapping, so nothing leaks in from the environment."""
    policy = tmp_path / "policy.toml"
    policy.write_text(TEST_POLICY)

    def _make(**overrides: str) -> Settings:
        env = {
            "SLACK_BOT_TOKEN": fake_slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake_slack.url,
            "DATABASE_URL": db_url,
            "IMPERSONATION_POLICY": str(policy),
            "SIGNING_KEY_FILE": str(tmp_path / "keys" / "signing_key.pem"),
            "PUBLIC_BASE_URL": "http://bot.test",
            "PRODUCT_LAUNCH_URL": "http://product.test/launch",
        }
        env.update(overrides)
        return load_settings({k: v for k, v in env.items() if v is not None})

    return _make


def signed_headers(body: str, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/json",
    }


# --- the container ----------------------------------------------------------------------


def test_build_container_wires_the_real_app(make_settings, fake_slack):
    container = wiring.build_container(make_settings())
    try:
        assert container.ctx.sessions is container.session_factory
        assert container.ctx.policy is container.policy and "support" in container.policy.roles
        assert container.ctx.public_base_url == "http://bot.test"
        assert container.slack_client.base_url == fake_slack.url
        assert type(container.ctx.people).__name__ == "SlackPeople"
        assert type(container.ctx.groups).__name__ == "SlackGroups"
        assert fake_slack.calls_to("auth.test"), "Bolt verifies the token at start-up"

        client = container.web_app.test_client()
        assert client.get("/healthz").status_code == 200
        jwks = client.get("/.well-known/jwks.json").get_json()
        assert [key["kid"] for key in jwks["keys"]] == [container.signing_key.kid]
    finally:
        container.close()
    fake_slack.assert_no_violations()


def test_slack_requests_are_verified_with_the_configured_secret(make_settings):
    container = wiring.build_container(make_settings())
    try:
        client = container.web_app.test_client()
        body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "legacy"})
        good = client.post("/slack/events", data=body, headers=signed_headers(body))
        assert (good.status_code, good.get_json()) == (200, {"challenge": "c-123"})
        forged = client.post("/slack/events", data=body, headers=signed_headers(body, secret="not-the-secret"))
        assert forged.status_code == 401
    finally:
        container.close()


def test_the_slack_client_retries_rate_limits_and_server_errors(make_settings, fake_slack):
    client = wiring.make_slack_client(make_settings())
    kinds = {type(handler) for handler in client.retry_handlers}
    assert {ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, ServerErrorRetryHandler} <= kinds

    fake_slack.fail_next("auth.test", "ratelimited", status=429, retry_after=0)
    assert client.auth_test()["ok"]
    fake_slack.fail_next("auth.test", "internal_error", status=503)
    assert client.auth_test()["ok"]
    assert len(fake_slack.calls_to("auth.test")) == 4


def test_a_token_slack_refuses_stops_start_up_without_showing_it(make_settings):
    with pytest.raises(ConfigError) as raised:
        wiring.build_container(make_settings(SLACK_BOT_TOKEN="xoxb-not-the-token"))
    assert "invalid_auth" in str(raised.value)
    assert "xoxb-not-the-token" not in str(raised.value)


def test_configuration_errors_come_before_any_slack_call(make_settings, fake_slack, tmp_path):
    (tmp_path / "policy.toml").write_text(TEST_POLICY.replace("max_minutes = 60", "max_minutes = 0", 1))
    with pytest.raises(PolicyError, match=r"roles.support.max_minutes \(line \d+\)"):
        wiring.build_container(make_settings())
    assert fake_slack.calls == []


def test_build_web_app_from_env(make_settings, monkeypatch, tmp_path):
    settings = make_settings()
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_SIGNING_SECRET": settings.slack_signing_secret,
        "SLACK_API_URL": settings.slack_api_url,
        "DATABASE_URL": settings.database_url,
        "IMPERSONATION_POLICY": str(settings.policy_path),
        "SIGNING_KEY_FILE": str(settings.signing_key_file),
    }.items():
        monkeypatch.setenv(name, value)
    app = wiring.build_web_app_from_env()
    assert app.test_client().get("/healthz").status_code == 200


# --- the CSRF secret every worker agrees on -------------------------------------------------


def test_csrf_secret_is_derived_from_the_signing_key(tmp_path):
    path = tmp_path / "key.pem"
    key = load_or_create_signing_key(path, allow_create=True)
    same_key_in_another_worker = load_or_create_signing_key(path, allow_create=False)
    other = load_or_create_signing_key(tmp_path / "other.pem", allow_create=True)

    secret = wiring.derive_csrf_secret(key)
    assert len(secret) == 32
    assert wiring.derive_csrf_secret(same_key_in_another_worker) == secret
    assert wiring.derive_csrf_secret(other) != secret
    raw = key.private_key.private_bytes_raw()
    assert secret != raw and raw not in secret


# --- preflight: everything checked before serving -------------------------------------------


def test_preflight_without_slack_credentials(make_settings):
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET not set.*manifest.yaml"):
        wiring.preflight(make_settings(SLACK_SIGNING_SECRET=None))


def test_preflight_with_a_missing_policy_file(make_settings, tmp_path):
    with pytest.raises(PolicyError, match="copy policy.example.toml"):
        wiring.preflight(make_settings(IMPERSONATION_POLICY=str(tmp_path / "absent.toml")))


def test_dev_generates_the_signing_key_once_owner_only(make_settings):
    settings = make_settings()
    wiring.preflight(settings)
    path = settings.signing_key_file
    first = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wiring.preflight(settings)
    assert path.read_bytes() == first


def test_outside_dev_a_missing_signing_key_stops_start_up(make_settings):
    settings = make_settings(
        IMPERSONATION_ENV="production", PUBLIC_BASE_URL="https://bot.test", PRODUCT_LAUNCH_URL="https://product.test/launch"
    )
    with pytest.raises(KeyError_, match="does not exist"):
        wiring.preflight(settings)
    assert not settings.signing_key_file.exists()


def test_outside_dev_an_existing_signing_key_is_used(make_settings, tmp_path):
    path = tmp_path / "provisioned.pem"
    key = load_or_create_signing_key(path, allow_create=True)
    settings = make_settings(IMPERSONATION_ENV="production", SIGNING_KEY_FILE=str(path))
    assert wiring.load_signing_key(settings).kid == key.kid


# --- the schema revision ------------------------------------------------------------------------


def test_an_empty_database_is_refused_with_what_to_do(make_settings, tmp_path):
    settings = make_settings(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigError, match="no schema yet; run `impersonation-bot migrate`"):
        wiring.preflight(settings)


def test_an_older_schema_is_refused_with_what_to_do(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    problem = wiring.schema_problem(engine)
    engine.dispose()
    assert problem is not None
    assert "at revision 0001 but the code needs" in problem and "run `impersonation-bot migrate`" in problem


def test_a_schema_newer_than_the_code_is_refused(engine):
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'fffffffffff'"))
    problem = wiring.schema_problem(engine)
    assert problem is not None and "does not know" in problem


def test_example_policy_and_key_make_a_working_dev_setup(make_settings, tmp_path):
    policy = tmp_path / "example.toml"
    shutil.copyfile(REPO_ROOT / "policy.example.toml", policy)
    container = wiring.build_container(make_settings(IMPERSONATION_POLICY=str(policy)))
    container.close()
    assert os.path.exists(container.settings.signing_key_file)


def test_an_unreachable_slack_api_is_one_clear_error(make_settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"cannot reach the Slack Web API at http://127.0.0.1:{port}/api/"):
        wiring.build_container(make_settings(SLACK_API_URL=f"http://127.0.0.1:{port}/api/"))


# --- start-up checks: one line each ---------------------------------------------------------------


def _one_line(error: Exception) -> str:
    message = str(error)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"PUBLIC_BASE_URL": "bot.example.com"}, "PUBLIC_BASE_URL 'bot.example.com' must be an absolute http(s) URL"),
        ({"PUBLIC_BASE_URL": "ftp://bot.example.com"}, "PUBLIC_BASE_URL 'ftp://bot.example.com' must be an absolute"),
        ({"PRODUCT_LAUNCH_URL": "https://app.example.com:99999/launch"}, "PRODUCT_LAUNCH_URL 'https://app.example.com:99999/launch' is not a URL"),
        ({"PRODUCT_LAUNCH_URL": "https://app.example.com/la unch"}, "PRODUCT_LAUNCH_URL 'https://app.example.com/la unch' contains white space"),
        ({"PRODUCT_LAUNCH_URL": "https://u:p@app.example.com/launch"}, "PRODUCT_LAUNCH_URL must not carry credentials"),
    ],
)
def test_a_malformed_url_stops_start_up_with_one_line(make_settings, overrides, fragment):
    with pytest.raises(ConfigError) as refused:
        wiring.preflight(make_settings(**overrides))
    assert fragment in _one_line(refused.value)


def _production(make_settings, tmp_path, **overrides):
    path = tmp_path / "provisioned.pem"
    if not path.exists():
        load_or_create_signing_key(path, allow_create=True)
    env = {
        "IMPERSONATION_ENV": "production", "SIGNING_KEY_FILE": str(path),
        "PUBLIC_BASE_URL": "https://bot.example.com", "PRODUCT_LAUNCH_URL": "https://app.example.com/launch",
    }
    env.update(overrides)
    return make_settings(**env)


def test_outside_dev_both_urls_must_be_https(make_settings, tmp_path):
    wiring.preflight(_production(make_settings, tmp_path))  # the good case starts
    with pytest.raises(ConfigError) as refused:
        wiring.preflight(_production(make_settings, tmp_path, PUBLIC_BASE_URL="http://bot.example.com"))
    assert "PUBLIC_BASE_URL 'http://bot.example.com' must use https outside dev" in _one_line(refused.value)
    with pytest.raises(ConfigError) as refused:
        wiring.preflight(_production(make_settings, tmp_path, PRODUCT_LAUNCH_URL="http://app.example.com/launch"))
    assert "PRODUCT_LAUNCH_URL 'http://app.example.com/launch' must use https" in _one_line(refused.value)


def test_outside_dev_a_missing_product_launch_url_stops_start_up_not_the_first_redemption(make_settings, tmp_path):
    with pytest.raises(ConfigError) as refused:
        wiring.preflight(_production(make_settings, tmp_path, PRODUCT_LAUNCH_URL=None))
    assert _one_line(refused.value).startswith("PRODUCT_LAUNCH_URL not set")
    # in dev it may be left out while trying the bot
    wiring.preflight(make_settings(PRODUCT_LAUNCH_URL=None))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_outside_dev_a_signing_key_others_can_read_stops_start_up(make_settings, tmp_path, mode):
    settings = _production(make_settings, tmp_path)
    settings.signing_key_file.chmod(mode)
    with pytest.raises(KeyError_) as refused:
        wiring.preflight(settings)
    assert f"(mode {mode:04o}); make it readable only by its owner: chmod 600" in _one_line(refused.value)
    settings.signing_key_file.chmod(0o400)
    wiring.preflight(settings)

# --- Sign in with Slack (policy links.require_slack_sign_in) ----------------------------------


@pytest.fixture
def sign_in_policy(tmp_path):
    policy = tmp_path / "sign-in.toml"
    policy.write_text(TEST_POLICY.replace("[links]\n", "[links]\nrequire_slack_sign_in = true\n", 1))
    return str(policy)


def test_a_policy_requiring_sign_in_without_the_apps_credentials_stops_start_up(make_settings, sign_in_policy):
    with pytest.raises(ConfigError, match="links.require_slack_sign_in.*SLACK_CLIENT_ID and SLACK_CLIENT_SECRET"):
        wiring.preflight(make_settings(IMPERSONATION_POLICY=sign_in_policy))
    with pytest.raises(ConfigError, match="SLACK_CLIENT_SECRET"):
        wiring.build_container(make_settings(IMPERSONATION_POLICY=sign_in_policy, SLACK_CLIENT_ID="1.2"))


def test_the_container_wires_sign_in_with_slack_from_the_environment(make_settings, sign_in_policy):
    from tests.fakes.slack_oidc import FakeSlackOidc

    with FakeSlackOidc() as provider:
        settings = make_settings(
            IMPERSONATION_POLICY=sign_in_policy,
            SLACK_CLIENT_ID=provider.client_id,
            SLACK_CLIENT_SECRET=provider.client_secret,
            SLACK_OIDC_ISSUER=provider.issuer + "/",
        )
        wiring.preflight(settings)
        container = wiring.build_container(settings)
        try:
            client = container.web_app.test_client()
            # the return address exists (without the flow's cookie it refuses)
            assert client.get("/l/oidc/callback?code=x&state=y").status_code == 403
            csp = client.get("/l/unknown").headers["Content-Security-Policy"]
            assert f"form-action 'self' http://product.test {provider.issuer};" in csp
        finally:
            container.close()


def test_without_sign_in_credentials_there_is_no_return_address(make_settings):
    container = wiring.build_container(make_settings())
    try:
        assert container.web_app.test_client().get("/l/oidc/callback?code=x&state=y").status_code == 404
    finally:
        container.close()
