"""The gunicorn settings of the web process (bot/web/gunicorn_conf.py, the Procfile's `web`)."""
from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

import crossplane
import pytest
from gunicorn.glogging import Logger
from gunicorn.util import import_app, load_class

MODULE = "bot.web.gunicorn_conf"
SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "impersonation-bot.conf"
SETTINGS_VARIABLES = (
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PORT", "WEB_CONCURRENCY", "DATABASE_URL", "IMPERSONATION_POLICY",
    "IMPERSONATION_ENV", "HOST",
)


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in SETTINGS_VARIABLES:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # load_conf imports the module afresh (its values are read from the environment at import);
    # afterwards the module everything else imported is put back, so that no later test holds
    # a module object that bot.cli no longer sees
    # (both where the import system looks: sys.modules, and the package's attribute that
    # `from bot.web import gunicorn_conf` reads)
    import bot.web

    original = sys.modules.get(MODULE)
    yield monkeypatch
    if original is not None:
        sys.modules[MODULE] = bot.web.gunicorn_conf = original
    else:
        sys.modules.pop(MODULE, None)


def load_conf():
    sys.modules.pop(MODULE, None)
    return importlib.import_module(MODULE)


def test_settings(env):
    env.setenv("PORT", "4321")
    conf = load_conf()
    assert conf.bind == "127.0.0.1:4321"  # dev: loopback only
    assert (conf.worker_class, conf.workers, conf.threads) == ("gthread", 2, 4)  # the default database is SQLite
    assert conf.accesslog == "-"
    assert conf.preload_app is False
    assert conf.control_socket_disable is True
    logger_class = load_class(conf.logger_class)
    assert issubclass(logger_class, Logger) and logger_class.__name__ == "RedactingGunicornLogger"


@pytest.mark.parametrize(
    ("environment", "host", "bind"),
    [("production", None, "0.0.0.0:3000"), ("dev", None, "127.0.0.1:3000"), ("dev", "0.0.0.0", "0.0.0.0:3000"), ("production", "10.0.0.5", "10.0.0.5:3000")],
)
def test_the_interface_is_loopback_in_dev_and_every_one_elsewhere_unless_host_says(env, environment, host, bind):
    env.setenv("IMPERSONATION_ENV", environment)
    if host is not None:
        env.setenv("HOST", host)
    assert load_conf().bind == bind


@pytest.mark.parametrize(("database_url", "threads"), [("sqlite:///bot.db", 4), ("postgresql+psycopg://bot@db/bot", 8)])
def test_threads_per_worker_follow_the_database(env, database_url, threads):
    # SQLite writes one transaction at a time: more threads only queue on its writer lock
    env.setenv("DATABASE_URL", database_url)
    assert load_conf().threads == threads


def test_web_concurrency_sets_the_worker_count(env):
    env.setenv("WEB_CONCURRENCY", "5")
    assert load_conf().workers == 5


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_a_bad_web_concurrency_stops_with_one_line(env, capsys, value):
    env.setenv("WEB_CONCURRENCY", value)
    with pytest.raises(SystemExit) as raised:
        load_conf()
    assert raised.value.code == 2
    assert capsys.readouterr().err == f"impersonation-bot: WEB_CONCURRENCY must be a positive whole number, got {value!r}\n"


def test_a_bad_port_stops_with_one_line(env, capsys):
    env.setenv("PORT", "http")
    with pytest.raises(SystemExit) as raised:
        load_conf()
    assert raised.value.code == 2
    assert "PORT must be a number" in capsys.readouterr().err


def test_the_master_checks_the_configuration_before_forking(env, capsys):
    conf = load_conf()
    with pytest.raises(SystemExit) as raised:
        conf.on_starting(server=None)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("impersonation-bot: SLACK_BOT_TOKEN") and "manifest.yaml" in err and err.count("\n") == 1


def test_the_wsgi_app_named_in_the_procfile_refuses_a_bad_configuration(env):
    # gunicorn prints an AppImportError's message and halts instead of respawning workers.
    from gunicorn.errors import AppImportError

    sys.modules.pop("bot.web.wsgi", None)
    try:
        with pytest.raises(AppImportError, match="SLACK_BOT_TOKEN"):
            import_app("bot.web.wsgi:app")
    finally:
        sys.modules.pop("bot.web.wsgi", None)


@pytest.fixture
def restore_gc_and_switch_interval():
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)
    gc.unfreeze()


def test_each_worker_hands_the_gil_over_every_millisecond(env, restore_gc_and_switch_interval):
    load_conf().post_fork(server=None, worker=None)
    assert sys.getswitchinterval() == pytest.approx(0.001)


def test_each_worker_freezes_what_exists_once_its_app_is_built(env, restore_gc_and_switch_interval):
    # What the app holds for its lifetime leaves the collector's full passes (gc.freeze):
    # a full pass over it stopped every thread of a worker for 160-220 ms under load.
    gc.unfreeze()
    built_app = [object() for _ in range(1000)]  # a container the app keeps, as its own are
    conf = load_conf()
    assert any(tracked is built_app for tracked in gc.get_objects())
    conf.post_worker_init(worker=None)
    assert gc.get_freeze_count() > 1000
    assert not any(tracked is built_app for tracked in gc.get_objects())  # frozen: never walked again
    born_later = [built_app]  # what requests create afterwards is collected as before
    assert any(tracked is born_later for tracked in gc.get_objects())


def test_nginx_closes_idle_upstream_connections_before_gunicorn_does(env):
    """Otherwise nginx can send a POST on a connection gunicorn is closing: a 502 it does not retry."""
    site = crossplane.parse(str(SITE), single=True, check_ctx=False, comments=False)
    (upstream,) = [d for d in site["config"][0]["parsed"] if d["directive"] == "upstream"]
    (timeout,) = [d["args"][0] for d in upstream["block"] if d["directive"] == "keepalive_timeout"]
    assert timeout.endswith("s") and int(timeout[:-1]) < load_conf().keepalive
