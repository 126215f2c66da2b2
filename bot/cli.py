"""`impersonation-bot …`: the one command-line entry point (DESIGN.md "Outside interfaces").

    serve                 web server and scheduler in one process (one machine)
    web                   web server only (production: several, behind a load balancer)
    scheduler             scheduler only (production: the Procfile's `clock`)
    migrate               Alembic `upgrade head`
    directory import FILE accounts, customer users and assignments from CSV / JSON / JSONL
    accounts flag …       set or clear an account flag, audited
    audit verify          walk the audit hash chain

Exit codes: 0 success; 1 the audit chain is broken or the database failed; 2 bad
configuration or input. Errors are one line on stderr, never a traceback. `serve` and `web`
migrate a SQLite database themselves (the single-machine default, so the first run just
works); with PostgreSQL, migrating is the `release` step's job and they refuse to start on an
out-of-date schema (docs/cli.md).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.util import CommandError
from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings, load_settings
from bot.db.engine import make_engine, make_session_factory, transaction
from bot.db.migrate import upgrade_head
from bot.db.models import AccountFlag
from bot.domain import audit, directory
from bot.domain.audit import Actor
from bot.domain.directory import DirectoryError
from bot.wiring import (
    STARTUP_ERRORS,
    Container,
    build_container,
    configure_logging,
    is_sqlite,
    preflight,
    require_current_schema,
)

if TYPE_CHECKING:
    from flask import Flask

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
PROG = "impersonation-bot"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(load_settings(), args)
    except STARTUP_ERRORS as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CommandError as exc:  # Alembic: e.g. the database is at a revision this code lacks
        return _fail(f"migration failed: {exc}", EXIT_USAGE)
    except SQLAlchemyError as exc:
        return _fail(f"database error: {describe_database_error(exc)}", EXIT_FAILURE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Safe, audited impersonation of customer users, requested in Slack.",
        epilog="Configuration comes from the environment and .env (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web server and the scheduler in one process")
    serve.set_defaults(run=run_serve)
    web = commands.add_parser("web", help="run the web server only (gunicorn)")
    web.set_defaults(run=run_web)
    scheduler = commands.add_parser("scheduler", help="run the scheduler only (the Procfile's clock)")
    scheduler.set_defaults(run=run_scheduler)
    migrate = commands.add_parser("migrate", help="bring the database schema up to date (alembic upgrade head)")
    migrate.set_defaults(run=run_migrate)

    directory_cmd = commands.add_parser("directory", help="the directory of accounts, users and assignments")
    directory_sub = directory_cmd.add_subparsers(dest="directory_command", required=True, metavar="COMMAND")
    importer = directory_sub.add_parser(
        "import", help="upsert accounts, customer users and assignments from a .csv, .json or .jsonl file"
    )
    importer.add_argument("file", type=Path, metavar="FILE")
    importer.add_argument("--by", metavar="WHO", help="who runs the import (Slack user id or e-mail), for the audit log")
    importer.set_defaults(run=run_directory_import)

    accounts = commands.add_parser("accounts", help="account flags set from contracts")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="COMMAND")
    flag = accounts_sub.add_parser("flag", help="set (or with --off clear) one flag on an account; audited")
    flag.add_argument("account", metavar="ACCOUNT", help="the account id, as in the directory")
    which = flag.add_mutually_exclusive_group(required=True)
    for member in AccountFlag:
        which.add_argument(
            f"--{member.value.replace('_', '-')}", dest="flag", action="store_const", const=member,
            help=f"the {member.value.replace('_', ' ')} flag",
        )
    flag.add_argument("--off", action="store_true", help="clear the flag instead of setting it")
    flag.add_argument("--by", required=True, metavar="WHO", help="who decided (Slack user id U…/W… or e-mail)")
    flag.add_argument("--note", required=True, metavar="TEXT", help="why (contract clause, ticket …)")
    flag.set_defaults(run=run_accounts_flag)

    audit_cmd = commands.add_parser("audit", help="the audit log")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_sub.add_parser("verify", help="check the hash chain; name the first bad event")
    verify.set_defaults(run=run_audit_verify)
    return parser


# --- web and scheduler --------------------------------------------------------------------


def run_serve(settings: Settings, _args: argparse.Namespace) -> int:
    migrate_if_sqlite(settings)
    configure_logging()
    # Built before gunicorn starts, so every configuration problem stops us with one line;
    # this container lives in gunicorn's master and serves only the scheduler.
    master = build_container(settings)
    GunicornServer(settings, master=master).run()
    return EXIT_OK


def run_web(settings: Settings, _args: argparse.Namespace) -> int:
    migrate_if_sqlite(settings)
    preflight(settings)
    configure_logging()
    GunicornServer(settings, master=None).run()
    return EXIT_OK


def run_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.jobs.scheduler import background_scheduler, run_until_stopped

    configure_logging()
    container = build_container(settings)
    try:
        run_until_stopped(background_scheduler(container.ctx))
    finally:
        container.close()
    return EXIT_OK


class GunicornServer(BaseApplication):
    """gunicorn run in-process with the settings of bot/web/gunicorn_conf.py (the same ones
    the Procfile's `web` line uses), overridable with GUNICORN_CMD_ARGS as in gunicorn itself.

    Each worker builds its own Container after the fork (its own engine and connection pool).
    With `master` (serve), a BackgroundScheduler runs in gunicorn's master process: started
    once when gunicorn is ready, however many workers there are, and stopped on exit.
    """

    def __init__(self, settings: Settings, *, master: Container | None) -> None:
        self._settings = settings
        # Made once: gunicorn re-runs load_config on SIGHUP, and must not start a second one.
        self._hooks = scheduler_hooks(master) if master is not None else {}
        super().__init__(prog=PROG)

    def load_config(self) -> None:
        from bot.web import gunicorn_conf

        for name, value in vars(gunicorn_conf).items():
            if name in self.cfg.settings and value is not None:
                self.cfg.set(name, value)
        overrides = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for name, value in vars(overrides).items():
            if value is not None and name != "args":
                self.cfg.set(name.lower(), value)
        for hook, function in self._hooks.items():
            self.cfg.set(hook, function)

    def load(self) -> Flask:
        try:
            return build_container(self._settings).web_app
        except STARTUP_ERRORS as exc:
            # gunicorn prints this one line and halts instead of respawning workers forever.
            raise AppImportError(str(exc)) from None


def scheduler_hooks(master: Container) -> dict[str, Callable[..., None]]:
    """gunicorn server hooks that run the BackgroundScheduler in the master process."""
    from bot.jobs.scheduler import background_scheduler

    scheduler = background_scheduler(master.ctx)

    def when_ready(_server: object) -> None:
        scheduler.start()

    def post_fork(_server: object, _worker: object) -> None:
        # The worker inherited the master's pool; SQLAlchemy's rule for fork is to drop it in
        # the child without closing, so the master's connections are not shut from under it.
        master.engine.dispose(close=False)

    def on_exit(_server: object) -> None:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        master.close()

    return {"when_ready": when_ready, "post_fork": post_fork, "on_exit": on_exit}


def migrate_if_sqlite(settings: Settings) -> None:
    """SQLite is the single-machine default: migrate on start so the first run needs no
    separate step. PostgreSQL deployments migrate in their `release` step instead, so that
    several web hosts starting at once never race to run DDL."""
    if is_sqlite(settings.database_url):
        engine = make_engine(settings.database_url)
        try:
            upgrade_head(engine)
        finally:
            engine.dispose()


# --- database commands --------------------------------------------------------------------


def run_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    try:
        upgrade_head(engine)
        require_current_schema(engine)
    finally:
        engine.dispose()
    print(f"{safe_url(settings.database_url)}: schema is up to date")
    return EXIT_OK


def run_directory_import(settings: Settings, args: argparse.Namespace) -> int:
    actor = actor_from(args.by) if args.by else Actor.system("cli")
    with database(settings) as sessions, transaction(sessions) as db:
        report = directory.import_directory(db, args.file, actor=actor)
    print(
        f"{args.file}: {report.rows} rows; accounts {report.accounts_created} created, "
        f"{report.accounts_updated} updated; customer users {report.users_created} created, "
        f"{report.users_updated} updated; assignments {report.assignments_created} created; "
        f"{report.unchanged} unchanged"
    )
    return EXIT_OK


def run_accounts_flag(settings: Settings, args: argparse.Namespace) -> int:
    actor = actor_from(args.by)
    flag: AccountFlag = args.flag
    on = not args.off
    with database(settings) as sessions, transaction(sessions) as db:
        changed = directory.set_flag(
            db, account_external_id=args.account, flag=flag, on=on, actor=actor, note=args.note
        )
    state = "set" if on else "cleared"
    if changed:
        print(f"{args.account}: {flag.value} {state} (audited as account.flag_changed)")
    else:
        print(f"{args.account}: {flag.value} was already {state}; nothing changed")
    return EXIT_OK


def run_audit_verify(settings: Settings, _args: argparse.Namespace) -> int:
    with database(settings) as sessions, sessions() as db:
        checked, problem = audit.verify_chain(db)
    if problem is None:
        print(f"audit chain OK: {checked} events")
        return EXIT_OK
    print(f"audit chain BROKEN at seq {problem.seq}: {problem.reason}; {checked} event(s) before it verified")
    return EXIT_FAILURE


@contextmanager
def database(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    try:
        require_current_schema(engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def actor_from(who: str) -> Actor:
    """`--by`: a Slack user id or an e-mail address, recorded as the actor with role `cli`
    (the change came through the command line, by someone holding database credentials)."""
    who = who.strip()
    if directory.SLACK_USER_ID.match(who):
        return Actor(slack_id=who, role="cli")
    if directory.EMAIL.match(who):
        return Actor(email=who, role="cli")
    raise DirectoryError(f"--by {who!r}: give a Slack user id (U…/W…) or an e-mail address")


def safe_url(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)


def describe_database_error(exc: SQLAlchemyError) -> str:
    """The driver's own first line (e.g. "connection refused"), without SQLAlchemy's SQL
    echo and parameters, which may hold data that does not belong on a terminal."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else 'no details'}"


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
