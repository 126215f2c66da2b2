"""`impersonation-bot audit checkpoint | verify | export`, run
in-process through `main()` on both databases, with an attacker who switches the audit
table's triggers off (tests/fakes/attacker.py) to rewrite history."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from werkzeug.serving import make_server

from bot.db.engine import make_engine, make_session_factory
from bot.db.models import AuditEvent
from bot.domain import audit
from bot.domain.keys import load_or_create_signing_key
from tests.conftest import REPO_ROOT
from tests.fakes.attacker import disable_audit_triggers
from tests.test_cli import audit_events, run, workdir  # noqa: F401 - fixtures and helpers

DIRECTORY_JSON = [
    {"kind": "account", "account": "acme", "name": "ACME Corp"},
    {"kind": "user", "account": "acme", "user": "u-bob", "email": "bob@acme.example", "name": "Bob Builder"},
]


@pytest.fixture
def deployment(workdir, monkeypatch, db_url, tmp_path) -> Path:
    """A configured deployment: the test database, a signing key, a checkpoint file. Returns
    the checkpoint file's path."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SIGNING_KEY_FILE", str(tmp_path / "signing_key.pem"))
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "checkpoints" / "audit.jsonl"))
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bot.example")
    load_or_create_signing_key(tmp_path / "signing_key.pem", allow_create=True)
    return tmp_path / "checkpoints" / "audit.jsonl"


@pytest.fixture
def six_events(deployment, workdir, capsys) -> None:
    """seq 1: the directory import; seq 2-6: flag changes on acme."""
    (workdir / "directory.json").write_text(json.dumps(DIRECTORY_JSON))
    assert run(capsys, "directory", "import", "directory.json")[0] == 0
    for n, flag in enumerate(["--sensitive", "--flagged", "--sensitive", "--flagged", "--sensitive"]):
        off = ["--off"] if n in (2, 3) else []
        assert run(capsys, "accounts", "flag", "acme", flag, *off, "--by", "UREVOPS1", "--note", f"change {n}")[0] == 0


@pytest.fixture
def attacker(db_url) -> Engine:
    engine = make_engine(db_url)
    disable_audit_triggers(engine)
    yield engine
    engine.dispose()


def checkpoint_now(capsys) -> dict:
    code, out, err = run(capsys, "audit", "checkpoint")
    assert (code, err) == (0, "")
    return json.loads(out)


def event_hash(engine: Engine, seq: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": seq}).scalar_one()


# --- audit checkpoint ----------------------------------------------------------------------------


def test_checkpoint_prints_a_signed_head_and_appends_it_to_the_file(six_events, deployment, capsys, db_url):
    made = checkpoint_now(capsys)
    assert made["seq"] == 6 and set(made) == {"kid", "seq", "hash", "time", "signature"}
    assert [json.loads(line) for line in deployment.read_text().splitlines()] == [made]
    assert run(capsys, "audit", "verify") == (0, "audit chain OK: 6 events; 1 checkpoint(s) match (newest at seq 6)\n", "")


def test_checkpoint_refuses_to_sign_over_a_rewrite_since_the_last_one(six_events, deployment, capsys, attacker):
    """The events since the newest checkpoint are re-checked before signing (the ones before it
    are vouched for by that checkpoint, and `audit verify` walks them all)."""
    checkpoint_now(capsys)
    for note in ("later 1", "later 2"):
        assert run(capsys, "accounts", "flag", "acme", "--regulated", *(["--off"] if note == "later 2" else []), "--by", "UREVOPS1", "--note", note)[0] == 0
    with attacker.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = replace(details, 'later 1', 'later 9') WHERE seq = 7"))
    code, out, err = run(capsys, "audit", "checkpoint")
    assert (code, out) == (1, "")
    assert err.startswith("impersonation-bot: audit chain BROKEN at seq 7:") and err.count("\n") == 1
    assert len(deployment.read_text().splitlines()) == 1


# --- audit verify: each way of rewriting history -----------------------------------------------------


def change_one_byte(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = replace(details, 'change 1', 'change 7') WHERE seq = 3"))


def details_not_json(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = '{\"note\": \"change 1' WHERE seq = 3"))


def details_not_text_json_accepts(engine: Engine) -> None:
    """Valid JSON, but not an object the app writes: a bare number with a float in it."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = '[1.5, NaN]' WHERE seq = 3"))


def delete_a_middle_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))


def reorder_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = -3 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 4"))
        conn.execute(text("UPDATE audit_events SET seq = 4 WHERE seq = -3"))


def forge_a_row(engine: Engine) -> None:
    """Event 3 replaced by a forged one whose hash is computed correctly (the encoding is public)."""
    sessions = make_session_factory(engine)
    with sessions() as db:
        original = db.get(AuditEvent, 3)
        forged = AuditEvent(
            seq=3, occurred_at=original.occurred_at, type="account.flag_changed", actor_slack_id="UNOBODY",
            actor_email=None, actor_role="cli", account="acme", customer_user=None, request_id=None, session_id=None,
            details=audit.canonical_json({"flag": "flagged", "note": "nothing to see", "value": False}),
            prev_hash=original.prev_hash, hash="", encoding=audit.CURRENT_ENCODING,
        )
        forged.hash = audit.hash_event_row(forged)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    with sessions() as db, db.begin():
        db.add(forged)


def delete_newest_rows(engine: Engine) -> None:
    """The two newest events deleted and the head moved back: the chain alone looks whole."""
    kept = event_hash(engine, 4)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq > 4"))
        conn.execute(text("UPDATE audit_head SET seq = 4, hash = :h WHERE id = 1"), {"h": kept})


@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason"),
    [
        (change_one_byte, 3, "hash does not match the event's contents"),
        (details_not_json, 3, "hash does not match the event's contents"),
        (details_not_text_json_accepts, 3, "hash does not match the event's contents"),
        (delete_a_middle_row, 3, "sequence gap: expected 3, found 4"),
        (reorder_rows, 3, "prev_hash does not match the previous event's hash"),
        (forge_a_row, 3, "event 3 is not the event 4 was chained to: it was replaced or forged"),
        (delete_newest_rows, 5, "log ends at 4 but a checkpoint vouches for 6: newest rows were deleted"),
    ],
    ids=["one changed byte", "details not JSON", "details with non-finite numbers", "a deleted middle row", "reordered rows", "a forged row", "deleted newest rows"],
)
def test_verify_names_the_first_bad_seq_and_exits_1(six_events, deployment, capsys, attacker, tamper, first_bad, reason):
    checkpoint_now(capsys)
    assert run(capsys, "audit", "verify")[0] == 0
    tamper(attacker)
    code, out, err = run(capsys, "audit", "verify")
    assert (code, err) == (1, "")
    assert out.startswith(f"audit chain BROKEN at seq {first_bad}: {reason}")
    assert out.count("\n") == 1


def test_deleted_newest_rows_pass_the_chain_alone_and_only_a_checkpoint_catches_them(six_events, deployment, capsys, attacker):
    checkpoint_now(capsys)
    delete_newest_rows(attacker)
    deployment.rename(deployment.with_suffix(".kept"))
    assert run(capsys, "audit", "verify") == (0, "audit chain OK: 4 events\n", "")
    code, out, _ = run(capsys, "audit", "verify", "--checkpoints", str(deployment.with_suffix(".kept")))
    assert code == 1 and out.startswith("audit chain BROKEN at seq 5:")


def test_a_chain_rewritten_end_to_end_is_caught_by_the_checkpoint(six_events, deployment, capsys, attacker, db_url):
    """Every hash from event 3 on recomputed: the chain is self-consistent; the checkpoint is not fooled."""
    checkpoint_now(capsys)
    with attacker.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = replace(details, 'change 1', 'change 8') WHERE seq = 3"))
    sessions = make_session_factory(attacker)
    previous = event_hash(attacker, 2)
    with sessions() as db:
        rows = [db.get(AuditEvent, seq) for seq in range(3, 7)]
        for row in rows:
            row.prev_hash = previous
            row.hash = audit.hash_event_row(row)
            previous = row.hash
        forged = [(row.seq, row.prev_hash, row.hash) for row in rows]
    with attacker.begin() as conn:
        for seq, prev, digest in forged:
            conn.execute(text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"), {"p": prev, "h": digest, "s": seq})
        conn.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": previous})
    assert run(capsys, "audit", "verify", "--checkpoints", "/dev/null")[1] == "audit chain OK: 6 events\n"
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1
    assert out.startswith("audit chain BROKEN at seq 6: event hash differs from the signed checkpoint: the chain was rewritten at or before this seq")


def test_verify_with_the_public_key_or_the_jwks_and_refuses_another_key(six_events, deployment, capsys, tmp_path):
    checkpoint_now(capsys)
    key = load_or_create_signing_key(tmp_path / "signing_key.pem", allow_create=False)
    (tmp_path / "public.pem").write_text(key.public_pem())
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.public_jwk()]}))
    other = load_or_create_signing_key(tmp_path / "other.pem", allow_create=True)
    (tmp_path / "other_public.pem").write_text(other.public_pem())
    assert run(capsys, "audit", "verify", "--public-key", str(tmp_path / "public.pem"))[0] == 0
    assert run(capsys, "audit", "verify", "--jwks", str(tmp_path / "jwks.json"))[0] == 0
    # rotated keys: either may have signed
    assert run(capsys, "audit", "verify", "--public-key", str(tmp_path / "other_public.pem"), "--public-key", str(tmp_path / "public.pem"))[0] == 0
    code, out, _ = run(capsys, "audit", "verify", "--public-key", str(tmp_path / "other_public.pem"))
    assert code == 1 and "invalid signature or an unknown key" in out


def test_verify_accepts_a_chain_whose_checkpoints_were_signed_under_two_keys(six_events, deployment, capsys, tmp_path, monkeypatch):
    first = checkpoint_now(capsys)
    old = load_or_create_signing_key(tmp_path / "signing_key.pem", allow_create=False)
    (tmp_path / "old_public.pem").write_text(old.public_pem())
    # the key is replaced; the chain goes on, and the next checkpoint is signed with the new key
    monkeypatch.setenv("SIGNING_KEY_FILE", str(tmp_path / "new_signing_key.pem"))
    new = load_or_create_signing_key(tmp_path / "new_signing_key.pem", allow_create=True)
    assert run(capsys, "accounts", "flag", "acme", "--regulated", "--by", "UREVOPS1", "--note", "after the new key")[0] == 0
    second = checkpoint_now(capsys)
    # each checkpoint names the key that signed it
    assert (first["kid"], second["kid"]) == (old.kid, new.kid) and old.kid != new.kid
    lines = [json.loads(line) for line in deployment.read_text().splitlines()]
    assert [c["kid"] for c in lines] == [old.kid, new.kid]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [old.public_jwk(), new.public_jwk()]}))
    code, out, _ = run(capsys, "audit", "verify", "--public-key", str(tmp_path / "old_public.pem"), "--public-key", str(tmp_path / "new_signing_key.pem"))
    assert code == 0 and "2 checkpoint(s) match" in out, out
    assert run(capsys, "audit", "verify", "--jwks", str(tmp_path / "jwks.json"))[0] == 0
    # without the old key's public half the first checkpoint cannot be checked
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "invalid signature or an unknown key" in out


def test_verify_with_an_unreadable_checkpoint_file_exits_2(six_events, deployment, capsys, tmp_path):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    code, out, err = run(capsys, "audit", "verify", "--checkpoints", str(tmp_path / "bad.jsonl"))
    assert (code, out) == (2, "")
    assert err.startswith("impersonation-bot: ") and "line 1" in err and err.count("\n") == 1
    code, _, err = run(capsys, "audit", "verify", "--checkpoints", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read" in err


# --- audit export -----------------------------------------------------------------------------------


def test_export_csv_to_a_file_is_audited(six_events, deployment, capsys, tmp_path, db_url):
    target = tmp_path / "out" / "acme.csv"
    code, out, _ = run(capsys, "audit", "export", "--account", "acme", "--since", "90d", "--format", "csv", "--output", str(target), "--by", "auditor@corp.example")
    assert code == 0 and out.startswith(f"{target}: ") and "recorded in the audit log" in out
    assert next(csv.reader(io.StringIO(target.read_text())))[0] == "session_id"
    assert [p.name for p in target.parent.iterdir()] == ["acme.csv"]  # no temporary file left
    exported = [e for e in audit_events(db_url) if e.type == "log.exported"]
    assert [(e.actor_email, e.actor_role, json.loads(e.details)["format"]) for e in exported] == [("auditor@corp.example", "cli", "csv")]


def test_the_markdown_report_states_the_verification_and_a_fresh_checkpoint(six_events, deployment, capsys):
    checkpoint_now(capsys)
    code, out, _ = run(capsys, "audit", "export", "--account", "acme", "--format", "md")
    assert code == 0
    assert "In the last 90 days, none of our staff accessed ACME Corp's account." in out
    # verified and signed just before the export recorded itself (seq 7)
    assert "the whole chain was verified: 6 events, intact, and the earlier signed checkpoint still matches it" in out
    signed = json.loads(re.search(r"```json\n(.*)\n```", out).group(1))
    assert signed["seq"] == 6
    assert json.loads(deployment.read_text().splitlines()[-1]) == signed
    assert "https://bot.example/.well-known/jwks.json" in out


def test_the_html_report_says_so_when_the_log_is_broken(six_events, deployment, capsys, attacker):
    change_one_byte(attacker)
    code, out, _ = run(capsys, "audit", "export", "--account", "acme", "--format", "html")
    assert code == 0 and "FAILED verification at event 3" in out and "```" not in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--format", "csv"], "--account is required for --format csv"),
        (["--account", "nowhere", "--format", "csv"], "unknown account 'nowhere'"),
        (["--account", "acme", "--since", "yesterday", "--format", "json"], "since: takes a number of days"),
        (["--account", "acme", "--agent", "bob", "--format", "json"], "agent: must mention a person"),
        (["--format", "jsonl", "--since", "soon"], "--since 'soon'"),
    ],
)
def test_bad_export_options_exit_2_with_one_line(six_events, deployment, capsys, argv, fragment):
    code, out, err = run(capsys, "audit", "export", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("impersonation-bot: ") and fragment in err and err.count("\n") == 1


def run_documented_verifier(tmp_path: Path, events: Path, checkpoint_line: str) -> subprocess.CompletedProcess:
    """docs/audit.md's standalone script, as written, on `events` with one checkpoint and the
    deployment's public key."""
    key = load_or_create_signing_key(tmp_path / "signing_key.pem", allow_create=False)
    (tmp_path / "public.pem").write_text(key.public_pem())
    docs = (REPO_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Verifying without this program"):]
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "verify_audit.py").write_text(script)
    checkpoints = tmp_path / "for_this_export.jsonl"
    checkpoints.write_text(checkpoint_line + "\n")
    return subprocess.run(
        [sys.executable, str(tmp_path / "verify_audit.py"), str(events), str(checkpoints), str(tmp_path / "public.pem")],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )


def test_an_auditor_verifies_the_export_with_only_the_public_key(six_events, deployment, capsys, tmp_path):
    """The standalone script in docs/audit.md, run as written, on a real export."""
    checkpoint_now(capsys)
    assert run(capsys, "audit", "export", "--format", "jsonl", "--output", str(tmp_path / "events.jsonl"))[0] == 0
    checkpoint_now(capsys)

    def verify(events: Path) -> subprocess.CompletedProcess:
        return run_documented_verifier(tmp_path, events, deployment.read_text().splitlines()[0])  # the checkpoint made before the export

    result = verify(tmp_path / "events.jsonl")
    assert (result.returncode, result.stdout) == (0, "OK: 7 events; 1 signed checkpoint(s) match\n"), result.stderr
    # One byte changed in the export: the script says where.
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    tampered = [*lines[:3], lines[3].replace("change 2", "change 5"), *lines[4:]]
    assert tampered != lines
    (tmp_path / "tampered.jsonl").write_text("\n".join(tampered) + "\n", encoding="utf-8")
    result = verify(tmp_path / "tampered.jsonl")
    assert result.returncode == 1 and "BROKEN at seq 4" in result.stderr
    # The newest events dropped from the export: the checkpoint (of seq 6) says so.
    (tmp_path / "short.jsonl").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    result = verify(tmp_path / "short.jsonl")
    assert result.returncode == 1 and "BROKEN at seq 5" in result.stderr


def test_verify_fetches_the_jwks_from_a_url(six_events, deployment, capsys, tmp_path):
    checkpoint_now(capsys)
    key = load_or_create_signing_key(tmp_path / "signing_key.pem", allow_create=False)
    body = json.dumps({"keys": [key.public_jwk()]}).encode()

    def jwks_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server("127.0.0.1", 0, jwks_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
        assert run(capsys, "audit", "verify", "--jwks", url)[0] == 0
    finally:
        server.shutdown()
        thread.join(timeout=5)
    code, _, err = run(capsys, "audit", "verify", "--jwks", url)  # the server is gone
    assert code == 2 and "cannot read the JWKS" in err


def test_keys_rotate_then_audit_verify_checks_checkpoints_under_both_keys_by_default(six_events, deployment, capsys, tmp_path, monkeypatch):
    import shutil

    from tests.conftest import REPO_ROOT

    shutil.copyfile(REPO_ROOT / "policy.example.toml", tmp_path / "policy.toml")
    monkeypatch.setenv("IMPERSONATION_POLICY", str(tmp_path / "policy.toml"))
    first = checkpoint_now(capsys)
    code, out, err = run(capsys, "keys", "rotate", "--by", "security@corp.example")
    assert (code, err) == (0, ""), err
    assert "published in the JWKS until" in out
    assert run(capsys, "accounts", "flag", "acme", "--regulated", "--by", "UREVOPS1", "--note", "after rotation")[0] == 0
    second = checkpoint_now(capsys)
    assert first["kid"] != second["kid"]
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and "2 checkpoint(s) match" in out, out
    code, _, err = run(capsys, "keys", "rotate", "--by", "someone")
    assert code == 2 and "--by" in err


def test_an_auditor_verifies_legacy_and_rfc_8785_events_alike(deployment, capsys, tmp_path, db_url):
    """Events written before RFC 8785 (legacy encoding), then events written now, keys outside
    the BMP in both: `audit verify` and the documented script accept the chain, and the
    script refuses an event whose encoding was switched in the export."""
    from datetime import datetime, timezone

    from bot.domain.audit import Actor, EventDraft
    from tests.fakes.legacy_audit import legacy_append

    details = {"😀": "grin", "ｚ": "fullwidth z", "n": 1}
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            for n in range(2):
                legacy_append(conn, occurred_at=moment, type="action.recorded", details={**details, "n": n}, account="acme")
        with make_session_factory(engine)() as db, db.begin():
            audit.append(db, EventDraft(type="action.recorded", actor=Actor(slack_id="UAGENT1"), account="acme", details=details), now=moment)
    finally:
        engine.dispose()
    assert run(capsys, "audit", "verify")[:2] == (0, "audit chain OK: 3 events\n")
    checkpoint = checkpoint_now(capsys)
    assert run(capsys, "audit", "export", "--format", "jsonl", "--output", str(tmp_path / "events.jsonl"))[0] == 0
    result = run_documented_verifier(tmp_path, tmp_path / "events.jsonl", json.dumps(checkpoint))
    assert (result.returncode, result.stdout) == (0, "OK: 4 events; 1 signed checkpoint(s) match\n"), result.stderr
    # the RFC 8785 event presented as a legacy one: its hash no longer holds
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert '"encoding":2,' in lines[2]
    (tmp_path / "downgraded.jsonl").write_text("\n".join([*lines[:2], lines[2].replace('"encoding":2,', ""), *lines[3:]]) + "\n")
    result = run_documented_verifier(tmp_path, tmp_path / "downgraded.jsonl", json.dumps(checkpoint))
    assert result.returncode == 1 and "BROKEN at seq 3" in result.stderr
