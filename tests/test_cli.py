"""`impersonation-bot …` run in-process through `main()`, against the test database (both
backends), plus the real console script in subprocesses for `serve`."""
from __future__ import annotations

import argparse
import json
import re
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bot import cli
from bot.db.base import Base
from bot.db.engine import make_engine, make_session_factory
from bot.db.models import AccountFlagSetting, AuditEvent
from bot.web import gunicorn_conf
from tests.conftest import REPO_ROOT
from tests.fakes.attacker import rewrite
from tests.fakes.slack_api import FakeSlack
from tests.slack.signed import slash_command

CONSOLE_SCRIPT = Path(sys.executable).with_name("impersonation-bot")
SETTINGS_VARIABLES = (
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "DATABASE_URL",
    "IMPERSONATION_POLICY", "PUBLIC_BASE_URL", "PRODUCT_LAUNCH_URL", "SIGNING_KEY_FILE",
    "AUDIT_CHECKPOINT_FILE", "IMPERSONATION_ENV", "PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS",
    "HOST", "MIGRATION_DATABASE_URL", "LOG_FORMAT", "LOG_LEVEL",
)
DIRECTORY_CSV = """kind,account,name,user,email,protected,agent
account,acme,ACME Corp,,,,
user,acme,Alice Admin,u-alice,alice@acme.example,true,
user,acme,Bob Builder,u-bob,bob@acme.example,,
assignment,acme,,,,,UAGENT1
"""


@pytest.fixture
def workdir(monkeypatch, tmp_path) -> Path:
    """An empty working directory (no .env, no policy.toml) and no settings in the
    environment; each variable is set then deleted so monkeypatch also undoes what
    load_dotenv() might write."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def on_db(workdir, monkeypatch, db_url) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def row_counts(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as db:
            return {
                t.name: db.execute(select(func.count()).select_from(t)).scalar_one() for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def rows_of(db_url: str, model) -> list:
    """Every row of `model`'s table, read in a fresh engine (the CLI under test made its own)."""
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as db:
            return list(db.execute(select(model)).scalars())
    finally:
        engine.dispose()


def audit_events(db_url: str) -> list[AuditEvent]:
    return sorted(rows_of(db_url, AuditEvent), key=lambda e: e.seq)


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("impersonation-bot: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


# --- migrate ---------------------------------------------------------------------------------


def test_migrate_builds_a_fresh_sqlite_database(workdir, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'fresh.db'}")
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "migrated from an empty database to revision" in out
    assert row_counts(f"sqlite:///{workdir / 'fresh.db'}")["audit_head"] == 1


def test_migrate_is_idempotent(on_db, capsys):
    assert run(capsys, "migrate")[0] == 0
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "already at revision" in out and "migrated" not in out


def test_migrate_never_prints_the_database_password(workdir, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:s3cret-pw@127.0.0.1:1/bot")
    code, out, err = run(capsys, "migrate")
    assert code == 1
    assert "s3cret-pw" not in out + err
    assert_one_line_error(err, "database error")


# --- directory import ------------------------------------------------------------------------


def test_directory_import_prints_the_counts(on_db, workdir, capsys):
    (workdir / "directory.csv").write_text(DIRECTORY_CSV)
    code, out, _ = run(capsys, "directory", "import", "directory.csv")
    assert code == 0
    assert "accounts 1 created" in out and "customer users 2 created" in out and "assignments 1 created" in out
    code, out, _ = run(capsys, "directory", "import", "directory.csv")
    assert code == 0 and "accounts 0 created" in out and "4 unchanged" in out


def test_directory_import_records_who_ran_it(on_db, workdir, capsys):
    (workdir / "directory.csv").write_text(DIRECTORY_CSV)
    assert run(capsys, "directory", "import", "directory.csv", "--by", "ops@corp.example")[0] == 0
    [event] = audit_events(on_db)
    assert (event.type, event.actor_email, event.actor_role) == ("directory.imported", "ops@corp.example", "cli")


def test_a_bad_row_exits_2_naming_the_line_and_writes_nothing(on_db, workdir, capsys):
    (workdir / "directory.csv").write_text(DIRECTORY_CSV + "user,acme,Eve,u-eve,eve-at-acme,,\n")
    before = row_counts(on_db)
    code, out, err = run(capsys, "directory", "import", "directory.csv")
    assert code == 2 and out == ""
    assert_one_line_error(err, "directory.csv: line 6:", "not an e-mail address")
    assert row_counts(on_db) == before


def test_a_missing_file_exits_2(on_db, capsys):
    code, _, err = run(capsys, "directory", "import", "nowhere.json")
    assert code == 2
    assert_one_line_error(err, "nowhere.json", "cannot read")


def test_an_unmigrated_database_says_to_migrate(workdir, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'empty.db'}")
    (workdir / "directory.csv").write_text(DIRECTORY_CSV)
    code, _, err = run(capsys, "directory", "import", "directory.csv")
    assert code == 2
    assert_one_line_error(err, "run `impersonation-bot migrate`")


# --- accounts flag ---------------------------------------------------------------------------


@pytest.fixture
def imported(on_db, workdir, capsys):
    (workdir / "directory.csv").write_text(DIRECTORY_CSV)
    assert run(capsys, "directory", "import", "directory.csv")[0] == 0


def test_accounts_flag_sets_and_clears_with_an_audit_event(on_db, imported, capsys):
    code, out, _ = run(capsys, "accounts", "flag", "acme", "--regulated", "--by", "UREVOPS1", "--note", "MSA 4.2")
    assert code == 0 and "regulated set" in out
    code, out, _ = run(capsys, "accounts", "flag", "acme", "--regulated", "--by", "UREVOPS1", "--note", "again")
    assert code == 0 and "already set; nothing changed" in out
    code, out, _ = run(capsys, "accounts", "flag", "acme", "--regulated", "--off", "--by", "ops@corp.example", "--note", "amended")
    assert code == 0 and "regulated cleared" in out

    flag_events = [e for e in audit_events(on_db) if e.type == "account.flag_changed"]
    assert [(e.account, e.actor_slack_id, e.actor_email, e.actor_role, json.loads(e.details)) for e in flag_events] == [
        ("acme", "UREVOPS1", None, "cli", {"flag": "regulated", "value": True, "note": "MSA 4.2"}),
        ("acme", None, "ops@corp.example", "cli", {"flag": "regulated", "value": False, "note": "amended"}),
    ]
    assert row_counts(on_db)[AccountFlagSetting.__tablename__] == 0


@pytest.mark.parametrize("flag", ["--opted-out", "--sensitive", "--regulated", "--flagged"])
def test_every_flag_has_its_option(on_db, imported, capsys, flag):
    assert run(capsys, "accounts", "flag", "acme", flag, "--by", "UREVOPS1", "--note", "contract")[0] == 0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["accounts", "flag", "acme", "--sensitive", "--by", "somebody", "--note", "x"], "--by 'somebody'"),
        (["accounts", "flag", "nowhere", "--sensitive", "--by", "UREVOPS1", "--note", "x"], "unknown account 'nowhere'"),
        (["accounts", "flag", "acme", "--sensitive", "--by", "UREVOPS1", "--note", "  "], "note"),
    ],
)
def test_accounts_flag_refusals_exit_2_and_write_nothing(on_db, imported, capsys, argv, fragment):
    before = row_counts(on_db)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, fragment)
    assert row_counts(on_db) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["accounts", "flag", "acme", "--by", "UREVOPS1", "--note", "no flag chosen"],
        ["accounts", "flag", "acme", "--sensitive", "--flagged", "--by", "UREVOPS1", "--note", "two flags"],
        ["accounts", "flag", "acme", "--sensitive", "--by", "UREVOPS1"],
        ["accounts", "flag", "acme", "--sensitive", "--note", "who?"],
    ],
)
def test_accounts_flag_usage_errors(workdir, capsys, argv):
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2


# --- audit verify ------------------------------------------------------------------------------


def test_audit_verify_on_an_intact_log(on_db, imported, capsys):
    run(capsys, "accounts", "flag", "acme", "--sensitive", "--by", "UREVOPS1", "--note", "MSA 4.2")
    code, out, _ = run(capsys, "audit", "verify")
    assert (code, out) == (0, "audit chain OK: 2 events\n")


def test_audit_verify_names_the_first_tampered_event(on_db, imported, capsys):
    # seq 1 is the import; seq 2 and 3 are these
    assert run(capsys, "accounts", "flag", "acme", "--sensitive", "--by", "UREVOPS1", "--note", "first")[0] == 0
    assert run(capsys, "accounts", "flag", "acme", "--flagged", "--by", "UREVOPS1", "--note", "second")[0] == 0
    engine = make_engine(on_db)
    try:
        # One byte of event 2 changes, with the triggers dropped as an attacker with file access would.
        rewrite(engine, "UPDATE audit_events SET details = replace(details, 'first', 'First') WHERE seq = 2")
    finally:
        engine.dispose()
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1
    assert out == "audit chain BROKEN at seq 2: hash does not match the event's contents; 1 event(s) before it verified\n"


# --- serve, web and scheduler -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["web", "scheduler"])
def test_without_slack_credentials_each_process_stops_with_one_message(workdir, monkeypatch, capsys, command):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'bot.db'}")
    code, out, err = run(capsys, command)
    assert code == 2 and out == ""
    assert_one_line_error(err, "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "manifest.yaml")


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_serve_without_slack_credentials_outside_dev_refuses_local_mode(workdir, monkeypatch, capsys, environment):
    monkeypatch.setenv("IMPERSONATION_ENV", environment)
    code, out, err = run(capsys, "serve")
    assert code == 2 and out == ""
    assert_one_line_error(err, "local mode", "IMPERSONATION_ENV=dev", "SLACK_BOT_TOKEN")
    assert not (workdir / ".local-workspace").exists()


@pytest.mark.parametrize("command", ["serve", "web", "scheduler"])
def test_an_app_token_of_the_wrong_kind_stops_start_up_with_one_message(workdir, monkeypatch, capsys, command):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'bot.db'}")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-the-bot-token-again")
    code, out, err = run(capsys, command)
    assert code == 2 and out == ""
    assert_one_line_error(err, "SLACK_APP_TOKEN must be an app-level token starting with 'xapp-'", "a bot token")
    assert "the-bot-token-again" not in err


def test_web_with_a_broken_policy_names_the_key(workdir, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{workdir / 'bot.db'}")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    example = (REPO_ROOT / "policy.example.toml").read_text(encoding="utf-8")
    (workdir / "policy.toml").write_text(example.replace("redeem_window_minutes = 5", "redeem_window_minutes = 11"))
    line = example.splitlines().index("redeem_window_minutes = 5") + 1
    code, _, err = run(capsys, "web")
    assert code == 2
    assert_one_line_error(err, f"policy.toml: links.redeem_window_minutes (line {line})")


def test_the_gunicorn_server_uses_the_project_settings(workdir, monkeypatch):
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--bind 127.0.0.1:4999")
    settings = cli.load_settings()
    server = cli.GunicornServer(settings, master=None)
    cfg = server.cfg
    assert (cfg.worker_class_str, cfg.workers, cfg.threads) == ("gthread", 2, 4)  # SQLite (the workdir's database)
    assert cfg.bind == ["127.0.0.1:4999"]
    assert cfg.logger_class.__name__ == "RedactingGunicornLogger"
    assert cfg.accesslog == "-"


def test_socket_mode_workers_close_their_connection_on_exit_and_refuse_preload(workdir, monkeypatch):
    settings = cli.load_settings()
    server = cli.GunicornServer(settings, master=None, socket_mode=True)
    assert server.cfg.worker_exit == server._close_socket_mode
    server.cfg.worker_exit(None, None)  # in the master (a vanished worker): nothing to close
    # without Socket Mode, every worker's own exit hook (the refusal summary) runs alone
    assert cli.GunicornServer(settings, master=None).cfg.worker_exit is gunicorn_conf.worker_exit

    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--preload")
    preloading = cli.GunicornServer(settings, master=None, socket_mode=True)
    with pytest.raises(cli.AppImportError, match="cannot be used with gunicorn's --preload"):
        preloading.load()


def test_the_socket_mode_exit_hook_also_runs_every_workers_exit_hook(workdir, monkeypatch):
    ran: list[tuple[object, object]] = []
    monkeypatch.setattr(gunicorn_conf, "worker_exit", lambda server, worker: ran.append((server, worker)))
    server = cli.GunicornServer(cli.load_settings(), master=None, socket_mode=True)
    server.cfg.worker_exit("master", "worker")
    assert ran == [("master", "worker")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _subprocess_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env.update(values)
    return env


def test_serve_with_half_the_slack_credentials_exits_2_with_one_clear_message(tmp_path):
    """Without any credential `serve` runs local mode (docs/local-workspace.md); a half
    configured Slack app is told what is missing instead."""
    database = tmp_path / "impersonation.db"
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "serve"],
        cwd=tmp_path,
        env=_subprocess_env(DATABASE_URL=f"sqlite:///{database}", SLACK_BOT_TOKEN="xoxb-1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "SLACK_SIGNING_SECRET", "manifest.yaml")
    assert not (tmp_path / ".local-workspace").exists()
    # `serve` migrated the SQLite database first (docs/cli.md), so the next command just works
    assert row_counts(f"sqlite:///{database}")["audit_head"] == 1


def _start_serve(tmp_path, fake: FakeSlack, port: int, *, split: bool = False, **env: str) -> subprocess.Popen:
    """`impersonation-bot serve` in tmp_path against the fake Slack, one gunicorn worker on
    `port`; with `split`, stderr apart from stdout."""
    return subprocess.Popen(
        [str(CONSOLE_SCRIPT), "serve"],
        cwd=tmp_path,
        env=_subprocess_env(
            SLACK_BOT_TOKEN=fake.bot_token,
            SLACK_SIGNING_SECRET="test-signing-secret",
            SLACK_API_URL=fake.url,
            DATABASE_URL=f"sqlite:///{tmp_path / 'impersonation.db'}",
            GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port} --workers 1",
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if split else subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_runs_web_and_scheduler_and_stops_on_sigterm(tmp_path, log_format):
    shutil.copyfile(REPO_ROOT / "policy.example.toml", tmp_path / "policy.toml")
    port = _free_port()
    with FakeSlack() as fake:
        process = _start_serve(tmp_path, fake, port, split=True, LOG_FORMAT=log_format)
        try:
            health = None
            for _ in range(300):  # wait for gunicorn to listen (liveness only, nothing timed)
                try:
                    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    if process.poll() is not None:
                        break
                    time.sleep(0.1)
            link = requests.get(f"http://127.0.0.1:{port}/l/not-a-real-token-0123456789", timeout=5)
        finally:
            process.send_signal(signal.SIGTERM)
            access, errors = process.communicate(timeout=60)
    output = access + errors
    assert health is not None and health.status_code == 200, output
    assert link.status_code == 404
    assert process.returncode == 0, output
    assert "scheduler started: " in errors and "scheduler stopped" in errors
    assert "Using worker: gthread" in errors and "Listening at: http://127.0.0.1:" in errors
    # the access log is on stdout (docs/cli.md), and nothing else is
    assert "GET /healthz" in access and "GET /healthz" not in errors and "scheduler" not in access
    assert "/l/<redacted>" in access and "not-a-real-token" not in output
    assert "Traceback" not in output
    # quiet: nothing per job added or run, no warning about the token Bolt was handed
    for noise in ("Adding job", "Added job", "Running job", "executed successfully", "will be unused", "schema is up to date"):
        assert noise not in output, noise
    if log_format == "json":
        records = [json.loads(line) for line in output.splitlines() if line.strip()]
        assert {r["logger"] for r in records} >= {"gunicorn.error", "gunicorn.access", "bot.jobs.scheduler"}


@pytest.mark.slow
def test_serve_in_socket_mode_answers_slack_over_the_socket_and_the_browser_over_http(tmp_path):
    shutil.copyfile(REPO_ROOT / "policy.example.toml", tmp_path / "policy.toml")
    port = _free_port()
    with FakeSlack() as fake:
        process = _start_serve(tmp_path, fake, port, SLACK_APP_TOKEN=fake.app_token)
        socket_mode = fake.socket_mode
        try:
            socket_mode.wait_for_connections(1, timeout=60)  # the worker connected
            trigger = fake.issue_trigger_id()
            envelope_id = socket_mode.send_http_body(slash_command("acme", trigger_id=trigger))
            ack = socket_mode.ack(envelope_id, timeout=30)
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        closed = socket_mode.live_connections == 0
    assert ack == {"envelope_id": envelope_id}, output
    (opened,) = fake.calls_to("views.open")
    assert opened.ok and opened.args["trigger_id"] == trigger
    assert health.status_code == 200
    assert process.returncode == 0, output
    assert closed and "Socket Mode connection closed" in output
    assert fake.app_token not in output and "xapp-" not in output
    assert socket_mode.violations == [] and fake.violations == []
    assert "Traceback" not in output


def test_procfile_runs_release_web_and_clock():
    # A Procfile runner starts each line from the repository root with no virtualenv
    # activated: the command must name the installed console script by its path.
    processes = dict(line.split(": ", 1) for line in (REPO_ROOT / "Procfile").read_text(encoding="utf-8").splitlines())
    assert set(processes) == {"release", "web", "clock"}
    parser = cli.build_parser()
    for name, command in processes.items():
        executable, *argv = shlex.split(command)
        assert (REPO_ROOT / executable).resolve() == CONSOLE_SCRIPT.resolve(), name
        assert parser.parse_args(argv).run is {"release": cli.run_migrate, "web": cli.run_web, "clock": cli.run_scheduler}[name]


def test_the_console_script_is_installed():
    assert CONSOLE_SCRIPT.exists(), "install the project (pip install -e .) so `impersonation-bot` exists"
    result = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("serve", "web", "scheduler", "migrate", "directory", "accounts", "audit"):
        assert command in result.stdout


def test_serve_keeps_the_web_workers_hooks_beside_the_schedulers(monkeypatch):
    # serve's post_fork (drop the master's pool in the child) replaces the one in
    # bot/web/gunicorn_conf.py, so it must run that one too (the workers' GIL interval).
    from types import SimpleNamespace

    from bot.web import gunicorn_conf

    calls: list[object] = []
    monkeypatch.setattr(gunicorn_conf, "post_fork", lambda server, worker: calls.append(("gil", worker)))
    master = SimpleNamespace(ctx=None, engine=SimpleNamespace(dispose=lambda close: calls.append(("dispose", close))))
    hooks = cli.scheduler_hooks(master)
    hooks["post_fork"]("server", "worker")
    assert calls == [("gil", "worker"), ("dispose", False)]


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_command_says_what_it_does_and_every_option_more_than_its_name():
    for path, parser in _parsers(cli.build_parser()):
        assert parser.description, f"`{' '.join(path)} --help` has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            name = (action.option_strings[-1] if action.option_strings else action.dest).lstrip("-")
            own_words = set(name.replace("-", " ").replace("_", " ").lower().split()) | {"the", "flag", "a", "an"}
            words = set(re.findall(r"[a-z]+", (action.help or "").lower()))
            assert len(words - own_words) >= 3, f"`{' '.join(path)} {name}`: help {action.help!r} only repeats the name"


@pytest.mark.slow
def test_serve_sums_every_workers_requests_in_metrics(tmp_path):
    """Two gunicorn workers: whichever answers the scrape reports the requests both served
    (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by serve)."""
    shutil.copyfile(REPO_ROOT / "policy.example.toml", tmp_path / "policy.toml")
    port = _free_port()
    token = "metrics-token-for-the-test"
    with FakeSlack() as fake:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve"],
            cwd=tmp_path,
            env={
                **{k: v for k, v in _subprocess_env().items() if k != "PROMETHEUS_MULTIPROC_DIR"},
                "SLACK_BOT_TOKEN": fake.bot_token, "SLACK_SIGNING_SECRET": "test-signing-secret",
                "SLACK_API_URL": fake.url, "DATABASE_URL": f"sqlite:///{tmp_path / 'impersonation.db'}",
                "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 2", "METRICS_TOKEN": token,
            },
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            for _ in range(300):  # wait for gunicorn to listen (liveness only, nothing timed)
                try:
                    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    if process.poll() is not None:
                        break
                    time.sleep(0.1)
            for _ in range(40):  # a new connection each: gunicorn's workers take turns accepting
                assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5, headers={"Connection": "close"}).status_code == 200
            totals = set()
            for _ in range(6):
                body = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}", "Connection": "close"}, timeout=5).text
                (line,) = [l for l in body.splitlines() if l.startswith('impbot_http_requests_total{') and 'route="/healthz"' in l]
                totals.add(float(line.rsplit(" ", 1)[1]))
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert totals == {41.0}, output  # the first probe and the 40: the same sum from either worker
