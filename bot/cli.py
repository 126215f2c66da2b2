"""`impersonation-bot …`: the one command-line entry point (DESIGN.md "Outside interfaces").

    serve                 web server and scheduler in one process (one machine); without Slack
                          credentials, local mode: a local workspace plays Slack (bot/local)
    web                   web server only (production: several, behind a load balancer)
    scheduler             scheduler only (production: the Procfile's `clock`)
    migrate               Alembic `upgrade head`
    directory import FILE accounts, customer users and assignments from CSV / JSON / JSONL
    accounts flag …       set or clear an account flag, audited
    audit verify          walk the audit hash chain and check signed checkpoints
    audit checkpoint      sign the chain head now (and append it to AUDIT_CHECKPOINT_FILE)
    audit export          one account's sessions (CSV, JSON, HTML/Markdown report) or the events
    digest --period P     the access review for a quarter (2026Q3) or the last N days (last-7d)
    api-keys create|revoke|list   the SaaS product's API keys (stored hashed; audited)
    webhooks add|remove|list      notification webhooks (Standard Webhooks; audited)
    keys rotate           a new signing key; the JWKS publishes the old one until its tokens expire
    db grants             least-privilege grants for the app's PostgreSQL role
    privacy erase         erase one customer user's personal data (role can_erase_personal_data); audited

Exit codes: 0 success; 1 the audit chain is broken or the database failed; 2 bad
configuration or input. Errors are one line on stderr, never a traceback. `serve` and `web`
migrate a SQLite database themselves (the single-machine default, so the first run just
works); with PostgreSQL, migrating is the `release` step's job and they refuse to start on an
out-of-date schema (docs/cli.md).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.util import CommandError
from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.config import ConfigError, Settings, load_settings
from bot.db import roles
from bot.db.engine import make_engine, make_session_factory, reading, transaction
from bot.db.migrate import upgrade_head
from bot.db.models import AccountFlag
from bot.domain import account_flags, audit, checkpoints, digests, directory, exports, log_query, personal, privacy, product_api, webhooks
from bot.domain.audit import Actor
from bot.domain.checkpoints import CheckpointError
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.directory import DirectoryError
from bot.domain.exports import ExportFormat
from bot.domain.policy import load_policy
from bot.domain.ports import NoGroups
from bot.local import run as local_mode
from bot.reports import digests as digest_files
from bot.reports import exports as export_files
from bot.wiring import (
    STARTUP_ERRORS,
    Container,
    build_container,
    configure_logging,
    current_revision,
    is_sqlite,
    load_signing_key,
    preflight,
    require_current_schema,
)

if TYPE_CHECKING:
    from flask import Flask

    from bot.slack.socket_mode import SocketModeReceiver

class UsageProblem(Exception):
    """An option's value is wrong in a way argparse cannot tell: exit 2 with this message."""


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
    except (CheckpointError, UsageProblem, product_api.ApiKeyError) as exc:  # e.g. an unreadable checkpoint file
        return _fail(str(exc), EXIT_USAGE)


#: what each account flag means, for `accounts flag --help` (DESIGN.md "Who uses it"; docs/policy.md)
FLAG_MEANINGS = {
    AccountFlag.OPTED_OUT: "the customer's contract forbids impersonation: every request is refused, whatever the role",
    AccountFlag.SENSITIVE: "the customer's data is sensitive: requests wait for approval where the policy gates it",
    AccountFlag.REGULATED: "the account is under a regulator's rules: requests wait for approval where the policy gates it",
    AccountFlag.FLAGGED: "security or RevOps marked the account for attention: requests wait for approval where the policy gates it",
}


def _command(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose own --help opens with the sentence the command list shows."""
    return group.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Safe, audited impersonation of customer users, requested in Slack.",
        epilog="Configuration comes from the environment and .env (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(commands, "serve", "run the web server and the scheduler in one process")
    serve.set_defaults(run=run_serve)
    web = _command(commands, "web", "run the web server only (gunicorn)")
    web.set_defaults(run=run_web)
    scheduler = _command(commands, "scheduler", "run the scheduler only (the Procfile's clock)")
    scheduler.set_defaults(run=run_scheduler)
    migrate = _command(commands, "migrate", "bring the database schema up to date (alembic upgrade head)")
    migrate.set_defaults(run=run_migrate)

    directory_cmd = _command(commands, "directory", "the directory of accounts, users and assignments")
    directory_sub = directory_cmd.add_subparsers(dest="directory_command", required=True, metavar="COMMAND")
    importer = _command(directory_sub, "import", "upsert accounts, customer users and assignments from a .csv, .json or .jsonl file"
    )
    importer.add_argument("file", type=Path, metavar="FILE", help="the directory file; its format follows the extension (docs/directory-import.md)")
    importer.add_argument("--by", metavar="WHO", help="who runs the import (Slack user id or e-mail), for the audit log")
    importer.set_defaults(run=run_directory_import)

    accounts = _command(commands, "accounts", "account flags set from contracts")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="COMMAND")
    flag = _command(accounts_sub, "flag", "set (or with --off clear) one flag on an account; audited")
    flag.add_argument("account", metavar="ACCOUNT", help="the account id, as in the directory")
    which = flag.add_mutually_exclusive_group(required=True)
    for member in AccountFlag:
        which.add_argument(
            f"--{member.value.replace('_', '-')}", dest="flag", action="store_const", const=member,
            help=FLAG_MEANINGS[member],
        )
    flag.add_argument("--off", action="store_true", help="clear the flag instead of setting it")
    flag.add_argument("--by", required=True, metavar="WHO", help="who decided (Slack user id U…/W… or e-mail)")
    flag.add_argument("--note", required=True, metavar="TEXT", help="why (contract clause, ticket …)")
    flag.set_defaults(run=run_accounts_flag)

    audit_cmd = _command(commands, "audit", "the audit log")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = _command(audit_sub, "verify", "check the hash chain and signed checkpoints; name the first bad event"
    )
    verify.add_argument(
        "--checkpoints", type=Path, metavar="FILE",
        help="signed checkpoints, one JSON object per line (default: AUDIT_CHECKPOINT_FILE, if set)",
    )
    keys = verify.add_mutually_exclusive_group()
    keys.add_argument(
        "--public-key", type=Path, action="append", metavar="PEM", dest="public_keys",
        help="an Ed25519 public key (PEM) the checkpoints are signed with; repeat for rotated keys "
        "(default: the public half of SIGNING_KEY_FILE and every key `keys rotate` recorded)",
    )
    keys.add_argument("--jwks", metavar="URL-OR-FILE", help="a JWK Set holding the public keys, e.g. PUBLIC_BASE_URL/.well-known/jwks.json")
    verify.set_defaults(run=run_audit_verify)
    checkpoint = _command(audit_sub, "checkpoint", "sign the chain head now; print it and append it to AUDIT_CHECKPOINT_FILE if set"
    )
    checkpoint.set_defaults(run=run_audit_checkpoint)
    export = _command(audit_sub, "export", "export one account's sessions, the customer access report, or the raw events; audited"
    )
    export.add_argument("--account", metavar="ACCOUNT", help="the account id (required except for --format jsonl)")
    export.add_argument("--agent", metavar="SLACK_ID", help="only this agent's sessions (U…/W…)")
    export.add_argument("--since", metavar="WHEN", help="90d (days before now; the default, except for jsonl: all) or a date, 2026-01-01 (UTC)")
    export.add_argument("--until", metavar="WHEN", help="7d or a date, 2026-03-31, included (default: now)")
    export.add_argument(
        "--format", required=True, choices=[f.value for f in ExportFormat],
        help="csv / json: sessions; html / md: the customer-facing access report; jsonl: the audit events",
    )
    export.add_argument("--output", type=Path, metavar="FILE", help="write here (atomically) instead of to stdout")
    export.add_argument("--by", metavar="WHO", help="who exports (Slack user id or e-mail), for the audit log")
    export.set_defaults(run=run_audit_export)

    api_keys = _command(commands, "api-keys", "the SaaS product's API keys (docs/product-api.md)")
    api_keys_sub = api_keys.add_subparsers(dest="api_keys_command", required=True, metavar="ACTION")
    create_key = _command(api_keys_sub, "create", "issue a key for a product; it is shown once, stored hashed")
    create_key.add_argument("--product", required=True, metavar="NAME", help="the product's name, e.g. app")
    create_key.add_argument("--by", required=True, metavar="WHO", help="who: a Slack user id or an e-mail address, for the audit log")
    create_key.set_defaults(run=run_api_keys_create)
    revoke_key = _command(api_keys_sub, "revoke", "revoke a key at once; audited")
    revoke_key.add_argument("key_id", help="the key id, as `api-keys list` shows it")
    revoke_key.add_argument("--by", required=True, metavar="WHO", help="who: a Slack user id or an e-mail address, for the audit log")
    revoke_key.set_defaults(run=run_api_keys_revoke)
    list_keys = _command(api_keys_sub, "list", "every key issued (never the key itself)")
    list_keys.set_defaults(run=run_api_keys_list)

    hooks = _command(commands, "webhooks", "notification webhooks to products and customers' systems (docs/product-integration.md)")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    add_hook = _command(hooks_sub, "add", "subscribe an endpoint; its signing secret is shown once; audited")
    add_hook.add_argument("--url", required=True, help="where events are POSTed: https (plain http only to localhost)")
    add_hook.add_argument(
        "--events", metavar="TYPES",
        help="comma-separated: " + ", ".join(t.value for t in webhooks.EventType) + " (default: all)",
    )
    add_hook.add_argument("--account", metavar="ID", help="only this account's events (a customer's admin system); default: every account")
    add_hook.add_argument("--description", default="", help="what the endpoint is, for `webhooks list`")
    add_hook.add_argument("--by", required=True, metavar="WHO", help="who: a Slack user id or an e-mail address, for the audit log")
    add_hook.set_defaults(run=run_webhooks_add)
    remove_hook = _command(hooks_sub, "remove", "stop sending to an endpoint, pending deliveries included; audited")
    remove_hook.add_argument("subscription_id", help="the id `webhooks list` shows (ep_…)")
    remove_hook.add_argument("--by", required=True, metavar="WHO", help="who: a Slack user id or an e-mail address, for the audit log")
    remove_hook.set_defaults(run=run_webhooks_remove)
    list_hooks = _command(hooks_sub, "list", "the subscribed endpoints (never their secrets)")
    list_hooks.add_argument("--all", action="store_true", help="removed ones too")
    list_hooks.set_defaults(run=run_webhooks_list)

    keys_cmd = _command(commands, "keys", "the Ed25519 key that signs hand-off tokens and audit checkpoints")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = _command(
        keys_sub, "rotate", "replace SIGNING_KEY_FILE with a new key; the JWKS keeps the old one until its tokens expire"
    )
    rotate.add_argument("--by", required=True, metavar="WHO", help="who: a Slack user id or an e-mail address, for the audit log")
    rotate.add_argument(
        "--restart-within", type=float, default=1.0, metavar="HOURS",
        help="hours within which every web and clock process will be restarted onto the new key (default 1)",
    )
    rotate.set_defaults(run=run_keys_rotate)

    db_cmd = _command(commands, "db", "database administration")
    db_sub = db_cmd.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    grants = _command(db_sub, "grants", "grant the least-privilege app role its rights (PostgreSQL; docs/postgresql.md)"
    )
    grants.add_argument("--schema", required=True, help="the schema the owner role migrated, e.g. impbot")
    grants.add_argument("--app-role", required=True, help="the role the web and clock processes log in as, e.g. impbot_app")
    grants.add_argument("--print-only", action="store_true", help="print the statements, change nothing")
    grants.set_defaults(run=run_db_grants)

    digest = _command(commands, "digest", "the access review for a period (as posted to the security channel); audited"
    )
    digest.add_argument("--period", required=True, metavar="PERIOD", help="a quarter, 2026Q3, or the last N days, last-7d")
    digest.add_argument("--format", choices=digest_files.FORMATS, default="md", help="md (default), html or csv")
    digest.add_argument("--output", type=Path, metavar="FILE", help="write here (atomically) instead of to stdout")
    digest.add_argument("--by", metavar="WHO", help="who asks (Slack user id or e-mail), for the audit log")
    digest.set_defaults(run=run_digest)

    privacy_cmd = _command(commands, "privacy", "personal data held about customer users (docs/privacy.md)")
    privacy_sub = privacy_cmd.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    erase = _command(
        privacy_sub, "erase",
        "erase one customer user's personal data (their id and reasons in the audit log, their name and e-mail); audited",
    )
    erase.add_argument("--account", required=True, metavar="ACCOUNT", help="the customer user's account id, as in the directory")
    erase.add_argument("--customer-user", required=True, metavar="USER", help="the customer user's id in the product, as in the directory")
    erase.add_argument(
        "--as", required=True, dest="as_slack_id", metavar="SLACK_ID",
        help="who erases: a Slack user id whose role has can_erase_personal_data in the policy",
    )
    erase.set_defaults(run=run_privacy_erase)
    return parser


# --- web and scheduler --------------------------------------------------------------------


def prepare_metrics_dir() -> None:
    """gunicorn's workers each count their own requests; prometheus-client sums them from
    files in PROMETHEUS_MULTIPROC_DIR (bot/web/metrics.py). Set before anything imports
    prometheus-client (it picks its storage at import) and before gunicorn forks, to a fresh
    directory per run: stale files from an earlier run would be summed in."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="impersonation-bot-metrics-")


def run_serve(settings: Settings, _args: argparse.Namespace) -> int:
    prepare_metrics_dir()
    local = None
    if local_mode.wants_local_mode():
        # No Slack credentials: the same bot against the local workspace (bot/local/run.py)
        local = local_mode.start(settings, migrate=migrate_if_sqlite)
        settings = local.settings
    migrate_if_sqlite(settings)
    configure_logging(settings)
    # Built before gunicorn starts, so every configuration problem stops us with one line;
    # this container lives in gunicorn's master and serves only the scheduler.
    master = build_container(settings)
    if local is not None:
        local.attach(master.ctx)
        print(f"local mode (no Slack credentials): open {local.workspace_url} — the bot with a local "
              f"workspace and the demo product, nothing leaves this machine", file=sys.stderr, flush=True)
    GunicornServer(settings, master=master, socket_mode=settings.socket_mode).run()
    return EXIT_OK


def run_web(settings: Settings, _args: argparse.Namespace) -> int:
    prepare_metrics_dir()
    migrate_if_sqlite(settings)
    preflight(settings)
    configure_logging(settings)
    GunicornServer(settings, master=None).run()
    return EXIT_OK


def run_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.jobs.scheduler import background_scheduler, run_until_stopped

    configure_logging(settings)
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

    With `socket_mode` (serve with SLACK_APP_TOKEN), each worker also opens one Socket Mode
    connection into its own Bolt app, and closes it gracefully when the worker exits (SIGTERM
    to gunicorn reaches every worker). In the workers, not the master: the master forks, and
    a child would inherit the open WebSocket, keeping a connection Slack delivers to that
    nobody reads. Slack spreads payloads over an app's connections (at most 10), so
    WEB_CONCURRENCY workers share them as they share HTTP requests.
    """

    def __init__(self, settings: Settings, *, master: Container | None, socket_mode: bool = False) -> None:
        self._settings = settings
        self._socket_mode = socket_mode
        #: this worker's Socket Mode connection (set in the worker by load(); None in the master)
        self._receiver: SocketModeReceiver | None = None
        # Made once: gunicorn re-runs load_config on SIGHUP, and must not start a second one.
        self._hooks = scheduler_hooks(master) if master is not None else {}
        if socket_mode:
            self._hooks["worker_exit"] = self._close_socket_mode
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

    # A Flask app is a WSGI application; gunicorn's stubs type the environ MutableMapping, Flask's
    # (typeshed's WSGIEnvironment) a dict, so the override differs on paper only.
    def load(self) -> Flask:  # type: ignore[override]
        try:
            if self._socket_mode and self.cfg.preload_app:
                # preloading builds the app in the master, which then forks (see above)
                raise ConfigError("Socket Mode (SLACK_APP_TOKEN) cannot be used with gunicorn's --preload")
            container = build_container(self._settings)
            if self._socket_mode:
                from bot.slack.socket_mode import start_socket_mode

                try:
                    self._receiver = start_socket_mode(container.slack_app, self._settings.slack_app_token or "")
                except BaseException:
                    container.close()
                    raise
            return container.web_app
        except STARTUP_ERRORS as exc:
            # gunicorn prints this one line and halts instead of respawning workers forever.
            raise AppImportError(str(exc)) from None

    def _close_socket_mode(self, server: object, worker: object) -> None:
        """worker_exit in Socket Mode: close this worker's connection, then what every worker
        does as it stops (bot/web/gunicorn_conf.py worker_exit)."""
        from bot.web import gunicorn_conf

        # gunicorn also calls worker_exit in the master for a worker that vanished; there
        # `_receiver` is None (it is set only in the worker's copy of this object).
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None
        gunicorn_conf.worker_exit(server, worker)


def scheduler_hooks(master: Container) -> dict[str, Callable[..., None]]:
    """gunicorn server hooks that run the BackgroundScheduler in the master process."""
    from bot.jobs import scheduler as jobs
    from bot.web import gunicorn_conf

    scheduler = jobs.background_scheduler(master.ctx)

    def when_ready(_server: object) -> None:
        jobs.start(scheduler)

    def post_fork(server: object, worker: object) -> None:
        gunicorn_conf.post_fork(server, worker)  # replaced by this hook in `serve`, so called here
        # The worker inherited the master's pool; SQLAlchemy's rule for fork is to drop it in
        # the child without closing, so the master's connections are not shut from under it.
        master.engine.dispose(close=False)

    def on_exit(_server: object) -> None:
        jobs.stop(scheduler)
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
    # MIGRATION_DATABASE_URL: the schema owner's credentials, used for DDL only; the app's
    # processes never hold them (docs/postgresql.md)
    url = settings.migration_database_url or settings.database_url
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        upgrade_head(engine)
        require_current_schema(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"{safe_url(url)}: already at revision {after}, nothing to do")
    else:
        print(f"{safe_url(url)}: migrated from {before or 'an empty database'} to revision {after}")
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
    with database(settings) as sessions:
        change = account_flags.change_flag(sessions, account_external_id=args.account, flag=flag, on=on, actor=actor, note=args.note)
    state = "set" if on else "cleared"
    if change.changed:
        print(f"{args.account}: {flag.value} {state} (audited as account.flag_changed)")
    else:
        print(f"{args.account}: {flag.value} was already {state}; nothing changed")
    if change.revoked:
        ids = ", ".join(s.id for s in change.revoked)
        print(f"{args.account}: revoked {len(change.revoked)} live session(s) at once ({ids}); the agents and the security channel are told")
    return EXIT_OK


def run_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    path = args.checkpoints or settings.checkpoint_file
    if args.checkpoints is None and path is not None and not path.exists():
        path = None  # AUDIT_CHECKPOINT_FILE is set but no checkpoint has been made yet
    found = checkpoints.read_file(path) if path is not None else []
    public_keys = verifying_keys(settings, args) if found else {}
    # A read-only transaction (no SQLite write lock held while the app keeps appending), and
    # one worker process per core over a long chain (bot.domain.audit.verify_chain).
    with database(settings) as sessions, reading(sessions) as db:
        if found and not (args.jwks or args.public_keys):
            # by default, every key this deployment has recorded (keys rotate), retired or not
            from bot.domain import keyring

            public_keys = {**keyring.public_keys(db), **public_keys}
        result = checkpoints.verify_log(db, found, public_keys, workers=os.cpu_count() or 1)
        # values the events refer to by a keyed hash (docs/privacy.md): each must still match it
        altered = personal.altered(db)
    if result.problem is None:
        line = f"audit chain OK: {result.events} events"
        if result.newest_checkpoint is not None:
            line += f"; {result.checkpoints} checkpoint(s) match (newest at seq {result.newest_checkpoint.seq})"
        print(line)
        if altered:
            print(f"personal values ALTERED: {len(altered)} no longer match the references the events hold (first {altered[0]})")
            return EXIT_FAILURE
        return EXIT_OK
    line = f"audit chain BROKEN at seq {result.problem.seq}: {result.problem.reason}"
    if isinstance(result.problem, audit.ChainProblem):
        line += f"; {min(result.events, result.problem.seq - 1)} event(s) before it verified"
    else:
        line += f" (checkpoints from {path})"
    print(line)
    return EXIT_FAILURE


def verifying_keys(settings: Settings, args: argparse.Namespace) -> checkpoints.PublicKeys:
    """The public keys checkpoints must be signed with: --public-key files, a --jwks document,
    or by default the public half of SIGNING_KEY_FILE (never generated here)."""
    if args.jwks:
        return checkpoints.public_keys_from_jwks(read_jwks(args.jwks), source=args.jwks)
    paths = args.public_keys or [settings.signing_key_file]
    keys: checkpoints.PublicKeys = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(
                f"cannot read the public key {path}: {exc.strerror or exc}; give --public-key PEM or --jwks URL"
            ) from None
        keys.update(checkpoints.public_keys_from_pem(data, source=str(path)))
    return keys


#: a JWK Set is a few hundred bytes; anything much larger is not one
JWKS_MAX_BYTES = 1024 * 1024


def read_jwks(where: str) -> object:
    try:
        if where.startswith(("https://", "http://")):
            with urllib.request.urlopen(where, timeout=10) as response:  # noqa: S310 - scheme checked above
                data = response.read(JWKS_MAX_BYTES + 1)
        else:
            data = Path(where).read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the JWKS {where}: {exc}") from None
    if len(data) > JWKS_MAX_BYTES:
        raise CheckpointError(f"the JWKS {where} is larger than {JWKS_MAX_BYTES} bytes")
    try:
        return json.loads(data)
    except ValueError:
        raise CheckpointError(f"the JWKS {where} is not JSON") from None


def run_audit_checkpoint(settings: Settings, _args: argparse.Namespace) -> int:
    key = load_signing_key(settings)
    with database(settings) as sessions:
        try:
            made = checkpoints.store_checkpoint(sessions, key, settings.checkpoint_file)
        except checkpoints.ChainTampered as exc:
            return _fail(f"{exc}; nothing was signed (run `impersonation-bot audit verify`)", EXIT_FAILURE)
    print(made.to_json())
    return EXIT_OK


def run_audit_export(settings: Settings, args: argparse.Namespace) -> int:
    now = utcnow()
    actor = actor_from(args.by) if args.by else Actor.system("cli")
    fmt = ExportFormat(args.format)
    with database(settings) as sessions:
        if fmt is ExportFormat.JSONL:
            since = _moment(args.since, now=now, end_of_day=False, option="--since")
            until = _moment(args.until, now=now, end_of_day=True, option="--until")
            if args.agent:
                return _fail("--agent does not apply to --format jsonl (events are exported whole)", EXIT_USAGE)
            export = export_files.events_file(
                exports.events_export(sessions, actor=actor, account=args.account, since=since, until=until, now=now)
            )
        else:
            if not args.account:
                return _fail(f"--account is required for --format {fmt.value}", EXIT_USAGE)
            query = log_query.resolve(
                log_query.LogOptions(account=args.account, agent=args.agent, since=args.since, until=args.until), now=now
            )
            if isinstance(query, log_query.QueryError):
                return _fail(f"{query.problem}", EXIT_USAGE)
            chain = chain_statement(settings, sessions, now=now) if fmt is not ExportFormat.CSV else None
            result = exports.access_export(sessions, query, fmt, actor=actor, via="cli", chain=chain, now=now)
            if isinstance(result, log_query.UnknownAccount):
                return _fail(f"unknown account {result.account!r}", EXIT_USAGE)
            export = export_files.access_file(result)
        if args.output is None:
            write_stdout(export.chunks)
            return EXIT_OK
        written = write_atomically(args.output, export.chunks)
    print(f"{args.output}: {written} bytes ({fmt.value}); the export is recorded in the audit log")
    return EXIT_OK


def run_api_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    actor = actor_from(args.by)
    with database(settings) as sessions, transaction(sessions) as db:
        key_id, plaintext = product_api.create_api_key(db, product=args.product, actor=actor)
    print(f"key id {key_id} for product {args.product} (audited as api_key.created)")
    print("the key, shown once — give it to the product now; only its hash is kept:")
    print(plaintext)
    return EXIT_OK


def run_api_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    actor = actor_from(args.by)
    with database(settings) as sessions, transaction(sessions) as db:
        revoked = product_api.revoke_api_key(db, args.key_id, actor=actor)
    if not revoked:
        return _fail(f"no live key with id {args.key_id!r} (already revoked, or never issued)", EXIT_USAGE)
    print(f"{args.key_id}: revoked (audited as api_key.revoked)")
    return EXIT_OK


def run_api_keys_list(settings: Settings, _args: argparse.Namespace) -> int:
    with database(settings) as sessions, reading(sessions) as db:
        keys = product_api.list_api_keys(db)
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}Z by {key.revoked_by}" if key.revoked_at else "live"
        print(f"{key.key_id}  {key.product}  created {key.created_at:%Y-%m-%d %H:%M}Z by {key.created_by}  {state}")
    if not keys:
        print("no API keys issued")
    return EXIT_OK


def run_webhooks_add(settings: Settings, args: argparse.Namespace) -> int:
    actor = actor_from(args.by)
    events = args.events.split(",") if args.events else None
    with database(settings) as sessions:
        try:
            made = webhooks.subscribe(sessions, url=args.url, event_types=events, account=args.account, description=args.description, actor=actor)
        except webhooks.WebhookConfigError as problem:
            raise UsageProblem(str(problem)) from None
    print(f"subscription {made.id} (audited as webhook.subscribed)")
    print("its signing secret, shown once — give it to the endpoint's owner now:")
    print(made.secret)
    return EXIT_OK


def run_webhooks_remove(settings: Settings, args: argparse.Namespace) -> int:
    actor = actor_from(args.by)
    with database(settings) as sessions:
        removed = webhooks.remove(sessions, args.subscription_id, actor=actor)
    if not removed:
        return _fail(f"no live subscription with id {args.subscription_id!r} (already removed, or never made)", EXIT_USAGE)
    print(f"{args.subscription_id}: removed (audited as webhook.removed)")
    return EXIT_OK


def run_webhooks_list(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as sessions:
        found = webhooks.subscriptions(sessions, include_removed=args.all)
    for hook in found:
        state = f"removed {hook.removed_at:%Y-%m-%d %H:%M}Z" if hook.removed_at else "live"
        scope = f"account {hook.account}" if hook.account else "every account"
        print(f"{hook.id}  {hook.url}  {','.join(hook.event_types)}  {scope}  created {hook.created_at:%Y-%m-%d %H:%M}Z by {hook.created_by}  {state}  {hook.description}".rstrip())
    if not found:
        print("no webhook subscriptions")
    return EXIT_OK


def run_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from bot.domain import keyring

    actor = actor_from(args.by)
    if not 0 < args.restart_within <= 24 * 7:
        raise UsageProblem("--restart-within: give hours between 0 and 168")
    policy = load_policy(settings.policy_path)
    load_signing_key(settings)  # the current key must exist (and be owner-only outside dev)
    with database(settings) as sessions:
        done = keyring.rotate(
            sessions, settings.signing_key_file, policy, actor=actor, restart_within=timedelta(hours=args.restart_within)
        )
    print(f"{settings.signing_key_file}: new key {done.new_kid} (audited as signing_key.rotated)")
    print(f"old key {done.old_kid}: published in the JWKS until {done.old_published_until:%Y-%m-%d %H:%M}Z;")
    print(f"restart every web and clock process within {args.restart_within:g} h; copy the new key to every host first")
    return EXIT_OK


def run_db_grants(settings: Settings, args: argparse.Namespace) -> int:
    try:
        statements = roles.app_role_grants(schema=args.schema, app_role=args.app_role)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.print_only:
        print(";\n".join(statements) + ";")
        return EXIT_OK
    url = settings.migration_database_url or settings.database_url  # granting is the owner's job
    if is_sqlite(url):
        return _fail("db grants is for PostgreSQL; SQLite has no roles", EXIT_USAGE)
    engine = make_engine(url)
    try:
        require_current_schema(engine)
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
                print(statement + ";")
    finally:
        engine.dispose()
    return EXIT_OK


def run_digest(settings: Settings, args: argparse.Namespace) -> int:
    """`digest --period 2026Q3|last-7d`: the same review the scheduler posts,
    the chain verified with this deployment's checkpoints; generating it is audited."""
    now = utcnow()
    try:
        period = digests.parse_period(args.period, now=now)
    except digests.PeriodError as exc:
        raise UsageProblem(str(exc)) from None
    actor = actor_from(args.by) if args.by else Actor.system("cli")
    policy = load_policy(settings.policy_path)
    with database(settings) as sessions:
        ctx = DomainContext(
            sessions=sessions,
            policy=policy,
            signing_key=load_signing_key(settings),
            public_base_url=settings.public_base_url,
            product_launch_url=settings.product_launch_url,
            checkpoint_file=settings.checkpoint_file,
        )
        report = digests.make_report(ctx, period, by=actor, now=now)
    text = digest_files.render(report, args.format).encode("utf-8")
    if args.output is None:
        write_stdout(iter([text]))
    else:
        written = write_atomically(args.output, iter([text]))
        print(f"{args.output}: {written} bytes ({args.format}); generating it is recorded in the audit log")
    return EXIT_OK if report.chain is None or report.chain.ok else EXIT_FAILURE


def run_privacy_erase(settings: Settings, args: argparse.Namespace) -> int:
    """The CLI has no identity of its own: `--as` names who erases, and the policy (with its
    Slack user groups when SLACK_BOT_TOKEN is set) decides whether they may."""
    if not directory.SLACK_USER_ID.match(args.as_slack_id):
        return _fail(f"--as {args.as_slack_id!r}: give a Slack user id (U…/W…)", EXIT_USAGE)
    policy = load_policy(settings.policy_path)
    signing_key = load_signing_key(settings)
    groups = NoGroups()
    if settings.slack_bot_token:
        from bot.slack.people import SlackGroups
        from bot.wiring import make_slack_client

        groups = SlackGroups(make_slack_client(settings))  # type: ignore[assignment]
    with database(settings) as sessions:
        ctx = DomainContext(
            sessions=sessions, policy=policy, signing_key=signing_key, public_base_url=settings.public_base_url,
            product_launch_url=settings.product_launch_url, groups=groups,
        )
        result = privacy.erase_customer_user(ctx, account=args.account, customer_user=args.customer_user, by_slack_id=args.as_slack_id)
    if isinstance(result, privacy.EraseRefused):
        return _fail(f"refused: {result.message} (audited as privacy.erase_refused)", EXIT_USAGE)
    held = "their name and e-mail in the directory, " if result.in_directory else ""
    print(
        f"erased: {held}{result.values} personal value(s) of the audit log and the reasons of {result.requests} request(s); "
        f"audited as privacy.erased, subject {result.subject}"
    )
    return EXIT_OK


def _moment(value: str | None, *, now: datetime, end_of_day: bool, option: str) -> datetime | None:
    if value is None:
        return None
    moment = log_query.parse_moment(value, now=now, end_of_day=end_of_day)
    if moment is None:
        raise UsageProblem(f"{option} {value!r}: give a number of days (90d) or a date (2026-01-01)")
    return moment


def chain_statement(settings: Settings, sessions: sessionmaker[Session], *, now: datetime) -> exports.ChainStatement:
    """The report's integrity statement: the whole chain verified now, with this deployment's
    own checkpoints (AUDIT_CHECKPOINT_FILE) when there are any, and, if it is intact, a fresh
    checkpoint of the head signed now (appended to the file too, like any other)."""
    key = load_signing_key(settings)
    path = settings.checkpoint_file
    own = [c for c in checkpoints.read_file(path) if c.kid == key.kid] if path is not None and path.exists() else []
    with sessions() as db:
        verification = checkpoints.verify_log(db, own, {key.kid: key.public_key})
    signed = None
    if verification.ok:
        try:
            signed = checkpoints.store_checkpoint(sessions, key, path, now=now)
        except checkpoints.ChainTampered:
            signed = None
    jwks = f"{settings.public_base_url}/.well-known/jwks.json"
    return exports.ChainStatement(now, verification, signed, jwks)


def write_stdout(chunks: Iterator[bytes]) -> None:
    out = getattr(sys.stdout, "buffer", None)
    for chunk in chunks:
        if out is not None:
            out.write(chunk)
        else:
            sys.stdout.write(chunk.decode("utf-8"))
    sys.stdout.flush()


def write_atomically(path: Path, chunks: Iterator[bytes]) -> int:
    """Write beside `path`, then rename over it: nothing is half-written (a failure leaves
    any earlier file in place and no partial one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return written


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
