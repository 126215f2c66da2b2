"""The directory importer and account flags, on both databases."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.db.base import Base
from bot.db.models import Account, AccountFlag, AccountFlagSetting, Assignment, AuditEvent, CustomerUser
from bot.domain import directory
from bot.domain.audit import Actor, verify_chain
from bot.domain.directory import DirectoryError, ImportReport
from tests.conftest import REPO_ROOT

IMPORTER = Actor(slack_id="UREVOPS1", role="revops")

CSV_TEXT = """kind,account,name,user,email,protected,agent
account,acme,ACME Corp,,,,
account,globex,Globex,,,,
user,acme,Alice Admin,u-alice,alice@acme.example,true,
user,acme,Bob Builder,u-bob,bob@acme.example,,
user,globex,Carol,u-carol,carol@globex.example,false,
assignment,acme,,,,,UAGENT1
assignment,globex,,,,,UAGENT2
"""
RECORDS = [
    {"kind": "account", "account": "acme", "name": "ACME Corp"},
    {"kind": "account", "account": "globex", "name": "Globex"},
    {"kind": "user", "account": "acme", "user": "u-alice", "email": "alice@acme.example", "name": "Alice Admin", "protected": True},
    {"kind": "user", "account": "acme", "user": "u-bob", "email": "bob@acme.example", "name": "Bob Builder"},
    {"kind": "user", "account": "globex", "user": "u-carol", "email": "carol@globex.example", "name": "Carol", "protected": False},
    {"kind": "assignment", "account": "acme", "agent": "UAGENT1"},
    {"kind": "assignment", "account": "globex", "agent": "UAGENT2"},
]
EXPECTED = ImportReport(accounts_created=2, users_created=3, assignments_created=2, rows=7)


def json_array_text(records: list[dict]) -> str:
    # one record per line after the opening bracket, so record i starts on line i + 2
    return "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n"


def jsonl_text(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


FORMATS = {"csv": lambda: CSV_TEXT, "json": lambda: json_array_text(RECORDS), "jsonl": lambda: jsonl_text(RECORDS)}


def write(tmp_path: Path, suffix: str, text: str) -> Path:
    path = tmp_path / f"directory.{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


def run_import(session_factory, path: Path) -> ImportReport:
    with session_factory() as db, db.begin():
        return directory.import_directory(db, path, actor=IMPORTER)


def row_counts(session_factory) -> dict[str, int]:
    """Rows in every table the app owns, the audit log and its head included."""
    with session_factory() as db:
        return {
            table.name: db.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def directory_state(session_factory) -> dict:
    with session_factory() as db:
        return {
            "accounts": sorted((a.external_id, a.name) for a in db.execute(select(Account)).scalars()),
            "users": sorted(
                (u.account.external_id, u.external_id, u.email, u.name, u.protected)
                for u in db.execute(select(CustomerUser)).scalars()
            ),
            "assignments": sorted(
                (a.agent_slack_id, a.account_id) for a in db.execute(select(Assignment)).scalars()
            ),
        }


@pytest.mark.parametrize("suffix", FORMATS)
def test_import_creates_accounts_users_and_assignments(session_factory, tmp_path, suffix):
    report = run_import(session_factory, write(tmp_path, suffix, FORMATS[suffix]()))
    assert report == EXPECTED
    state = directory_state(session_factory)
    assert state["accounts"] == [("acme", "ACME Corp"), ("globex", "Globex")]
    assert state["users"] == [
        ("acme", "u-alice", "alice@acme.example", "Alice Admin", True),
        ("acme", "u-bob", "bob@acme.example", "Bob Builder", False),
        ("globex", "u-carol", "carol@globex.example", "Carol", False),
    ]
    assert len(state["assignments"]) == 2


@pytest.mark.parametrize("suffix", FORMATS)
def test_import_is_idempotent(session_factory, tmp_path, suffix):
    path = write(tmp_path, suffix, FORMATS[suffix]())
    run_import(session_factory, path)
    before = directory_state(session_factory)
    again = run_import(session_factory, path)
    assert again == ImportReport(unchanged=7, rows=7)
    assert directory_state(session_factory) == before


def test_a_changed_row_updates_in_place(session_factory, tmp_path):
    run_import(session_factory, write(tmp_path, "csv", CSV_TEXT))
    changed = CSV_TEXT.replace("Bob Builder,u-bob,bob@acme.example,,", "Robert Builder,u-bob,bob@acme.example,true,")
    changed = changed.replace("account,globex,Globex,", "account,globex,Globex Corporation,")
    report = run_import(session_factory, write(tmp_path, "csv", changed))
    assert (report.accounts_updated, report.users_updated, report.unchanged) == (1, 1, 5)
    assert ("acme", "u-bob", "bob@acme.example", "Robert Builder", True) in directory_state(session_factory)["users"]


def test_a_successful_import_is_audited(session_factory, tmp_path):
    run_import(session_factory, write(tmp_path, "jsonl", FORMATS["jsonl"]()))
    with session_factory() as db:
        event = db.execute(select(AuditEvent).where(AuditEvent.type == "directory.imported")).scalar_one()
        assert event.actor_slack_id == "UREVOPS1"
        details = json.loads(event.details)
        assert details["file"] == "directory.jsonl"
        assert details["accounts_created"] == 2 and len(details["sha256"]) == 64
        assert verify_chain(db)[1] is None


# A bad row late in each file: everything before it is valid and must not be written either.
BAD_FILES = {
    "csv": (CSV_TEXT + "user,acme,Dave,u-dave,not-an-email,,\n", 9, "not an e-mail address"),
    "json": (json_array_text([*RECORDS, {"kind": "user", "account": "acme", "user": "u-dave", "email": "not-an-email", "name": "Dave"}]), 9, "not an e-mail address"),
    "jsonl": (jsonl_text([*RECORDS, {"kind": "assignment", "account": "acme", "agent": "dave"}]), 8, "not a Slack user id"),
}


@pytest.mark.parametrize("suffix", BAD_FILES)
def test_a_bad_row_names_its_line_and_nothing_is_written(session_factory, tmp_path, suffix):
    text, line, reason = BAD_FILES[suffix]
    before = row_counts(session_factory)
    with pytest.raises(DirectoryError) as raised:
        run_import(session_factory, write(tmp_path, suffix, text))
    assert f"line {line}:" in str(raised.value)
    assert reason in str(raised.value)
    assert row_counts(session_factory) == before


@pytest.mark.parametrize(
    ("suffix", "text", "line", "reason"),
    [
        ("csv", "kind,account,name\naccount,acme,ACME\naccount,acme,ACME,extra\n", 3, "more values than header columns"),
        ("csv", "account,name\nacme,ACME\n", 1, "'kind' column"),
        ("csv", "kind,account,name,colour\naccount,acme,ACME,red\n", 2, "unknown field(s) for a account row: colour"),
        ("json", '[\n{"kind": "account", "account": "acme", "name": "ACME"},\n{"kind": "account", "account": "a b", "name": "X"}\n]', 3, "not a valid account id"),
        ("json", '[\n{"kind": "account", "account": "acme", "name": "ACME"}\n{"kind": "account"}\n]', 3, "expected ',' or ']'"),
        ("json", '{"kind": "account"}', 1, "array of records"),
        ("json", '[\n  {"kind": "account", "account": "acme", "name": ["A"]}\n]', 2, "must be a string, number or boolean"),
        ("jsonl", '{"kind": "account", "account": "acme", "name": "ACME"}\n\n{"kind": "account", "account": "x",\n', 3, "not valid JSON"),
        ("jsonl", '{"kind": "robot", "account": "acme"}\n', 1, "kind must be one of"),
        ("jsonl", '{"kind": "user", "account": "acme", "user": "u1", "email": "a@b.example", "name": "A", "protected": "maybe"}\n'
         '{"kind": "account", "account": "acme", "name": "ACME"}\n', 1, "protected must be true or false"),
    ],
    ids=[
        "csv-extra-value", "csv-no-kind-column", "csv-unknown-column", "json-bad-account-id", "json-missing-comma",
        "json-not-an-array", "json-nested-value", "jsonl-broken-json", "jsonl-unknown-kind", "jsonl-bad-boolean",
    ],
)
def test_malformed_files_name_the_line(session_factory, tmp_path, suffix, text, line, reason):
    before = row_counts(session_factory)
    with pytest.raises(DirectoryError) as raised:
        run_import(session_factory, write(tmp_path, suffix, text))
    assert f"line {line}:" in str(raised.value)
    assert reason in str(raised.value)
    assert row_counts(session_factory) == before


def test_a_reference_to_an_unknown_account_is_refused(session_factory, tmp_path):
    text = jsonl_text([RECORDS[0], {"kind": "assignment", "account": "nowhere", "agent": "UAGENT1"}])
    before = row_counts(session_factory)
    with pytest.raises(DirectoryError, match=r"line 2: account 'nowhere' is neither in this file nor known"):
        run_import(session_factory, write(tmp_path, "jsonl", text))
    assert row_counts(session_factory) == before


def test_rows_may_refer_to_accounts_imported_earlier(session_factory, tmp_path):
    run_import(session_factory, write(tmp_path, "csv", CSV_TEXT))
    later = jsonl_text([{"kind": "user", "account": "globex", "user": "u-dan", "email": "dan@globex.example", "name": "Dan"}])
    assert run_import(session_factory, write(tmp_path, "jsonl", later)).users_created == 1


def test_unsupported_file_type_is_refused(session_factory, tmp_path):
    with pytest.raises(DirectoryError, match="unsupported file type '.xlsx'"):
        run_import(session_factory, write(tmp_path, "xlsx", CSV_TEXT))


def test_a_missing_file_is_a_directory_error(session_factory, tmp_path):
    with pytest.raises(DirectoryError, match="cannot read"):
        run_import(session_factory, tmp_path / "absent.csv")


@pytest.mark.parametrize("example", ["directory.csv", "directory.json"])
def test_the_shipped_examples_import(session_factory, example):
    report = run_import(session_factory, REPO_ROOT / "examples" / example)
    assert report.accounts_created > 0 and report.users_created > 0 and report.assignments_created > 0


def test_the_two_examples_describe_the_same_directory(session_factory):
    run_import(session_factory, REPO_ROOT / "examples" / "directory.csv")
    assert run_import(session_factory, REPO_ROOT / "examples" / "directory.json").unchanged == 8


# --- account flags -------------------------------------------------------------------------


@pytest.fixture
def imported(session_factory, tmp_path):
    run_import(session_factory, write(tmp_path, "csv", CSV_TEXT))


def set_flag(session_factory, flag: AccountFlag, *, on: bool, actor: Actor, note: str, account: str = "acme") -> bool:
    with session_factory() as db, db.begin():
        return directory.set_flag(db, account_external_id=account, flag=flag, on=on, actor=actor, note=note)


def flag_events(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        return list(
            db.execute(select(AuditEvent).where(AuditEvent.type == "account.flag_changed").order_by(AuditEvent.seq)).scalars()
        )


def test_setting_and_clearing_a_flag_is_audited_with_who_and_why(session_factory, imported):
    revops = Actor(slack_id="UREVOPS1", email="revops@corp.example", role="revops")
    assert set_flag(session_factory, AccountFlag.SENSITIVE, on=True, actor=revops, note="MSA 4.2")
    with session_factory() as db:
        setting = db.execute(select(AccountFlagSetting)).scalar_one()
        assert (setting.flag, setting.set_by, setting.note) == ("sensitive", "UREVOPS1", "MSA 4.2")
    assert set_flag(session_factory, AccountFlag.SENSITIVE, on=False, actor=revops, note="contract amended")
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(AccountFlagSetting)).scalar_one() == 0

    events = flag_events(session_factory)
    assert [(e.account, e.actor_slack_id, e.actor_email, e.actor_role) for e in events] == [
        ("acme", "UREVOPS1", "revops@corp.example", "revops")
    ] * 2
    assert [json.loads(e.details) for e in events] == [
        {"flag": "sensitive", "value": True, "note": "MSA 4.2"},
        {"flag": "sensitive", "value": False, "note": "contract amended"},
    ]


def test_a_flag_set_by_e_mail_records_the_e_mail(session_factory, imported):
    set_flag(session_factory, AccountFlag.OPTED_OUT, on=True, actor=Actor(email="ops@corp.example", role="cli"), note="DPA")
    with session_factory() as db:
        assert db.execute(select(AccountFlagSetting.set_by)).scalar_one() == "ops@corp.example"


def test_setting_a_flag_that_is_already_set_writes_nothing(session_factory, imported):
    set_flag(session_factory, AccountFlag.REGULATED, on=True, actor=IMPORTER, note="first")
    before = row_counts(session_factory)
    assert not set_flag(session_factory, AccountFlag.REGULATED, on=True, actor=IMPORTER, note="again")
    assert row_counts(session_factory) == before


def test_clearing_a_flag_that_is_not_set_writes_nothing(session_factory, imported):
    before = row_counts(session_factory)
    assert not set_flag(session_factory, AccountFlag.REGULATED, on=False, actor=IMPORTER, note="clear")
    assert row_counts(session_factory) == before


def test_a_flag_change_needs_a_note(session_factory, imported):
    before = row_counts(session_factory)
    with pytest.raises(DirectoryError, match="note"):
        set_flag(session_factory, AccountFlag.FLAGGED, on=True, actor=IMPORTER, note="   ")
    assert row_counts(session_factory) == before


def test_a_flag_on_an_unknown_account_is_refused(session_factory, imported):
    with pytest.raises(DirectoryError, match="unknown account 'nowhere'"):
        set_flag(session_factory, AccountFlag.FLAGGED, on=True, actor=IMPORTER, note="x", account="nowhere")
