"""The directory: accounts, customer users and agent assignments, and account flags.

`import_directory` is an idempotent upsert from CSV or JSON. Every row is validated before
anything is written; the first bad row is reported with its line number and the whole file
is refused (one transaction).

File format (docs/directory-import.md): each record has a `kind`:
- `account`: `account`, `name`
- `user`: `account`, `user`, `email`, `name`, `protected` (true/false, default false)
- `assignment`: `account`, `agent` (a Slack user id)
CSV has these as header columns (unused columns empty); JSON is an array of objects, or
JSON Lines (`.jsonl`) with one object per line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bot.db.models import Account, AccountFlag, AccountFlagSetting, Assignment, CustomerUser
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,31}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
TRUE_WORDS = {"true", "yes", "1", "y"}
FALSE_WORDS = {"false", "no", "0", "n", ""}
KINDS = {
    "account": {"kind", "account", "name"},
    "user": {"kind", "account", "user", "email", "name", "protected"},
    "assignment": {"kind", "account", "agent"},
}


class DirectoryError(Exception):
    """Bad input; the message names the line (for imports) or the account."""


@dataclass
class ImportReport:
    accounts_created: int = 0
    accounts_updated: int = 0
    users_created: int = 0
    users_updated: int = 0
    assignments_created: int = 0
    unchanged: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Row:
    line: int
    values: dict[str, str] = field(default_factory=dict)


def _read_rows(path: Path, text: str) -> Iterator[_Row]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "kind" not in reader.fieldnames:
            raise DirectoryError(f"{path}: line 1: a CSV header with a 'kind' column is required")
        for record in reader:
            if None in record:
                raise DirectoryError(f"{path}: line {reader.line_num}: more values than header columns")
            values = {k: (v or "").strip() for k, v in record.items() if k is not None}
            yield _Row(reader.line_num, {k: v for k, v in values.items() if v != ""} | {"kind": values.get("kind", "")})
    elif suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield _Row(number, _json_object(path, number, line))
    elif suffix == ".json":
        yield from _json_array_rows(path, text)
    else:
        raise DirectoryError(f"{path}: unsupported file type {suffix!r}; use .csv, .json or .jsonl")


def _json_object(path: Path, line: int, source: str | Any) -> dict[str, str]:
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except json.JSONDecodeError as exc:
            raise DirectoryError(f"{path}: line {line}: not valid JSON: {exc.msg}") from None
    if not isinstance(source, dict):
        raise DirectoryError(f"{path}: line {line}: each record must be a JSON object")
    values: dict[str, str] = {}
    for key, value in source.items():
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, (str, int)):
            values[key] = str(value).strip()
        elif value is None:
            continue
        else:
            raise DirectoryError(f"{path}: line {line}: {key!r} must be a string, number or boolean")
    return values


def _json_array_rows(path: Path, text: str) -> Iterator[_Row]:
    """Walk a JSON array element by element so each record keeps the line it started on."""
    decoder = json.JSONDecoder()
    position = _skip_ws(text, 0)
    if position >= len(text) or text[position] != "[":
        raise DirectoryError(f"{path}: line 1: a JSON file must hold an array of records")
    position = _skip_ws(text, position + 1)
    if position < len(text) and text[position] == "]":
        return
    while True:
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DirectoryError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
        yield _Row(line, _json_object(path, line, value))
        position = _skip_ws(text, position)
        if position < len(text) and text[position] == ",":
            position = _skip_ws(text, position + 1)
            continue
        if position < len(text) and text[position] == "]":
            if text[position + 1 :].strip():
                raise DirectoryError(f"{path}: line {text.count(chr(10), 0, position) + 1}: text after the array")
            return
        raise DirectoryError(f"{path}: line {text.count(chr(10), 0, position) + 1}: expected ',' or ']'")


def _skip_ws(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _validate(path: Path, row: _Row) -> dict[str, Any]:
    where = f"{path}: line {row.line}"
    values = row.values
    kind = values.get("kind", "")
    if kind not in KINDS:
        raise DirectoryError(f"{where}: kind must be one of account, user, assignment (got {kind!r})")
    unknown = set(values) - KINDS[kind]
    if unknown:
        raise DirectoryError(f"{where}: unknown field(s) for a {kind} row: {', '.join(sorted(unknown))}")
    account = values.get("account", "")
    if not ACCOUNT_ID.match(account):
        raise DirectoryError(f"{where}: account {account!r} is not a valid account id")
    record: dict[str, Any] = {"kind": kind, "account": account, "line": row.line}
    if kind == "account":
        name = values.get("name", "")
        if not name or len(name) > 255:
            raise DirectoryError(f"{where}: name is required (at most 255 characters)")
        record["name"] = name
    elif kind == "user":
        user = values.get("user", "")
        if not USER_ID.match(user):
            raise DirectoryError(f"{where}: user {user!r} is not a valid user id")
        email = values.get("email", "")
        if not EMAIL.match(email):
            raise DirectoryError(f"{where}: email {email!r} is not an e-mail address")
        name = values.get("name", "")
        if not name or len(name) > 255:
            raise DirectoryError(f"{where}: name is required (at most 255 characters)")
        protected = values.get("protected", "").lower()
        if protected not in TRUE_WORDS | FALSE_WORDS:
            raise DirectoryError(f"{where}: protected must be true or false (got {protected!r})")
        record |= {"user": user, "email": email, "name": name, "protected": protected in TRUE_WORDS}
    else:
        agent = values.get("agent", "")
        if not SLACK_USER_ID.match(agent):
            raise DirectoryError(f"{where}: agent {agent!r} is not a Slack user id (U… or W…)")
        record["agent"] = agent
    return record


def import_directory(db: Session, path: Path, *, actor: Actor, now: datetime | None = None) -> ImportReport:
    """Validate every row, then upsert inside the caller's transaction. Raises DirectoryError
    (and the caller rolls back) on the first bad row, so nothing from the file is written."""
    now = now or utcnow()
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryError(f"{path}: cannot read: {exc}") from None
    records = [_validate(path, row) for row in _read_rows(path, text)]
    declared = {r["account"] for r in records if r["kind"] == "account"}
    existing = {
        a.external_id: a
        for a in db.execute(select(Account).where(Account.external_id.in_({r["account"] for r in records}))).scalars()
    }
    for record in records:
        if record["kind"] != "account" and record["account"] not in declared | set(existing):
            raise DirectoryError(
                f"{path}: line {record['line']}: account {record['account']!r} is neither in this file nor known"
            )
    report = ImportReport(rows=len(records))
    accounts = dict(existing)
    for record in (r for r in records if r["kind"] == "account"):
        account = accounts.get(record["account"])
        if account is None:
            account = Account(external_id=record["account"], name=record["name"], created_at=now, updated_at=now)
            db.add(account)
            accounts[record["account"]] = account
            report.accounts_created += 1
        elif account.name != record["name"]:
            account.name, account.updated_at = record["name"], now
            report.accounts_updated += 1
        else:
            report.unchanged += 1
    db.flush()
    for record in (r for r in records if r["kind"] == "user"):
        account = accounts[record["account"]]
        user = db.execute(
            select(CustomerUser).where(
                CustomerUser.account_id == account.id, CustomerUser.external_id == record["user"]
            )
        ).scalar_one_or_none()
        fields = {"email": record["email"], "name": record["name"], "protected": record["protected"]}
        if user is None:
            db.add(CustomerUser(account_id=account.id, external_id=record["user"], created_at=now, updated_at=now, **fields))
            report.users_created += 1
        elif any(getattr(user, k) != v for k, v in fields.items()):
            for key, value in fields.items():
                setattr(user, key, value)
            user.updated_at = now
            report.users_updated += 1
        else:
            report.unchanged += 1
        db.flush()
    for record in (r for r in records if r["kind"] == "assignment"):
        account = accounts[record["account"]]
        found = db.execute(
            select(Assignment.id).where(Assignment.account_id == account.id, Assignment.agent_slack_id == record["agent"])
        ).first()
        if found is None:
            db.add(Assignment(account_id=account.id, agent_slack_id=record["agent"], created_at=now))
            db.flush()
            report.assignments_created += 1
        else:
            report.unchanged += 1
    audit.append(
        db,
        EventDraft(
            type="directory.imported",
            actor=actor,
            details={"file": path.name, "sha256": hashlib.sha256(raw).hexdigest(), **report.as_dict()},
        ),
        now=now,
    )
    return report


def set_flag(
    db: Session,
    *,
    account_external_id: str,
    flag: AccountFlag,
    on: bool,
    actor: Actor,
    note: str,
    now: datetime | None = None,
) -> bool:
    """Set or clear one flag. Returns whether anything changed; every change is audited
    (`account.flag_changed`) with who and why, in the same transaction."""
    now = now or utcnow()
    note = note.strip()
    if not note:
        raise DirectoryError("a note saying why is required when changing a flag")
    account = find_account(db, account_external_id)
    if account is None:
        raise DirectoryError(f"unknown account {account_external_id!r}")
    current = next((f for f in account.flags if f.flag == flag.value), None)
    if on and current is None:
        account.flags.append(AccountFlagSetting(flag=flag.value, set_by=actor.slack_id or actor.email or actor.role or "?", set_at=now, note=note))
    elif not on and current is not None:
        account.flags.remove(current)
    else:
        return False
    db.flush()
    audit.append(
        db,
        EventDraft(
            type="account.flag_changed",
            actor=actor,
            account=account.external_id,
            details={"flag": flag.value, "value": on, "note": note},
        ),
        now=now,
    )
    return True


def lock_account(db: Session, external_id: str) -> Account | None:
    """The account, its row locked for update until the transaction ends (PostgreSQL; SQLite
    transactions are serialised by BEGIN IMMEDIATE): changes that must be ordered with
    redemptions on the account take it first (bot/domain/links.py)."""
    return db.execute(select(Account).where(Account.external_id == external_id).with_for_update()).scalar_one_or_none()


def lock_user(db: Session, customer_user_id: int) -> None:
    """Lock a customer user's row until the transaction ends (PostgreSQL; SQLite transactions
    are serialised by BEGIN IMMEDIATE): submissions for one user are then ordered."""
    db.execute(select(CustomerUser.id).where(CustomerUser.id == customer_user_id).with_for_update())


def find_account(db: Session, external_id: str) -> Account | None:
    return db.execute(select(Account).where(Account.external_id == external_id)).scalar_one_or_none()


def find_user(db: Session, account: Account, external_id: str) -> CustomerUser | None:
    return db.execute(
        select(CustomerUser).where(CustomerUser.account_id == account.id, CustomerUser.external_id == external_id)
    ).scalar_one_or_none()


def is_assigned(db: Session, agent_slack_id: str, account_id: int) -> bool:
    return (
        db.execute(
            select(Assignment.id).where(Assignment.account_id == account_id, Assignment.agent_slack_id == agent_slack_id)
        ).first()
        is not None
    )


def _like_pattern(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def account_label_named(db: Session, name: str) -> tuple[str, str] | None:
    """(account id, name) of the account whose id is exactly `name`, ignoring case. Only
    those two columns are read: this runs on every `/impersonate acme` before Slack's 3 s
    trigger expires, and loading the account (with its flags) cost as much as the rest of
    the command (bench/http_bench.py)."""
    wanted = name.strip()
    if not wanted:
        return None
    columns = select(Account.external_id, Account.name)
    # the exact spelling first (the unique index), then case-insensitively
    row = db.execute(columns.where(Account.external_id == wanted)).first()
    if row is None:
        row = db.execute(columns.where(func.lower(Account.external_id) == wanted.lower()).limit(1)).first()
    return (row[0], row[1]) if row is not None else None


def account_labels(db: Session, query: str, *, limit: int) -> list[tuple[str, str]]:
    """(account id, name) pairs for the typeahead, as `search_accounts` finds them, reading
    only those two columns."""
    statement = select(Account.external_id, Account.name).order_by(Account.external_id).limit(limit)
    if query.strip():
        pattern = _like_pattern(query.strip())
        statement = statement.where(
            or_(func.lower(Account.external_id).like(pattern, escape="\\"), func.lower(Account.name).like(pattern, escape="\\"))
        )
    return [(row[0], row[1]) for row in db.execute(statement)]


def search_accounts(db: Session, query: str, *, limit: int) -> list[Account]:
    """Typeahead over account id and name (case-insensitive substring)."""
    statement = select(Account).order_by(Account.external_id).limit(limit)
    if query.strip():
        pattern = _like_pattern(query.strip())
        statement = statement.where(
            or_(func.lower(Account.external_id).like(pattern, escape="\\"), func.lower(Account.name).like(pattern, escape="\\"))
        )
    return list(db.execute(statement).scalars())


def search_users(db: Session, account: Account, query: str, *, limit: int) -> list[CustomerUser]:
    statement = (
        select(CustomerUser).where(CustomerUser.account_id == account.id).order_by(CustomerUser.name).limit(limit)
    )
    if query.strip():
        pattern = _like_pattern(query.strip())
        statement = statement.where(
            or_(
                func.lower(CustomerUser.external_id).like(pattern, escape="\\"),
                func.lower(CustomerUser.name).like(pattern, escape="\\"),
                func.lower(CustomerUser.email).like(pattern, escape="\\"),
            )
        )
    return list(db.execute(statement).scalars())
