"""Signed checkpoints of the audit chain: made, kept in a file, checked
with only the public key, and never signed over a log that drifted from an earlier one."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.checkpoints import (
    ChainTampered,
    Checkpoint,
    CheckpointError,
    make_and_store_checkpoint,
    make_checkpoint,
    public_keys_from_jwks,
    public_keys_from_pem,
    read_file,
    signature_ok,
    store_checkpoint,
    verify_against,
    verify_log,
)
from bot.domain.keys import SigningKey, public_key_id
from tests.fakes.attacker import disable_audit_triggers

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def append_events(session_factory, count: int) -> None:
    with session_factory() as db, db.begin():
        for n in range(count):
            audit.append(db, EventDraft(type="test.happened", actor=Actor(slack_id="UAGENT1"), details={"n": n}))


def own_keys(signing_key: SigningKey) -> dict:
    return {signing_key.kid: signing_key.public_key}


def test_a_checkpoint_signs_the_head_and_verifies_with_the_public_key_alone(session_factory, signing_key):
    append_events(session_factory, 3)
    with session_factory() as db:
        checkpoint = make_checkpoint(db, signing_key, now=NOW)
        head_hash = db.execute(text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
    assert (checkpoint.seq, checkpoint.hash, checkpoint.time) == (3, head_hash, "2026-03-01T09:00:00.000000Z")
    assert checkpoint.kid == signing_key.kid
    # From the PEM an auditor is given, and from the JWKS the product fetches: the same key id.
    assert signature_ok(checkpoint, public_keys_from_pem(signing_key.public_pem().encode()))
    assert signature_ok(checkpoint, public_keys_from_jwks({"keys": [signing_key.public_jwk()]}))
    # The documented message, checked by hand with the raw key.
    signature = base64.urlsafe_b64decode(checkpoint.signature + "=" * (-len(checkpoint.signature) % 4))
    signing_key.public_key.verify(signature, f"impersonation-bot checkpoint v1\n3\n{head_hash}\n{checkpoint.time}".encode())


def test_any_changed_field_breaks_the_signature(session_factory, signing_key):
    append_events(session_factory, 2)
    with session_factory() as db:
        checkpoint = make_checkpoint(db, signing_key, now=NOW)
    keys = own_keys(signing_key)
    for forged in (
        Checkpoint(checkpoint.kid, checkpoint.seq + 1, checkpoint.hash, checkpoint.time, checkpoint.signature),
        Checkpoint(checkpoint.kid, checkpoint.seq, "0" * 64, checkpoint.time, checkpoint.signature),
        Checkpoint(checkpoint.kid, checkpoint.seq, checkpoint.hash, "2027-01-01T00:00:00.000000Z", checkpoint.signature),
        Checkpoint("another-kid", checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.signature),
    ):
        assert not signature_ok(forged, keys)
    assert signature_ok(checkpoint, keys)


def test_a_jwks_key_is_known_by_its_own_thumbprint_not_by_the_kid_it_claims(signing_key):
    other = SigningKey(Ed25519PrivateKey.generate())
    impostor = other.public_jwk() | {"kid": signing_key.kid}
    keys = public_keys_from_jwks({"keys": [impostor, {"kty": "RSA", "n": "x", "e": "AQAB"}]})
    assert set(keys) == {other.kid} and public_key_id(keys[other.kid]) == other.kid


@pytest.mark.parametrize(
    ("document", "message"),
    [({"nope": []}, "not a JWK Set"), ({"keys": [{"kty": "RSA"}]}, "no Ed25519 key"), ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}, "malformed")],
)
def test_unusable_jwks_are_refused(document, message):
    with pytest.raises(CheckpointError, match=message):
        public_keys_from_jwks(document)


def test_a_pem_that_is_not_ed25519_is_refused():
    with pytest.raises(CheckpointError, match="not a PEM key"):
        public_keys_from_pem(b"-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n")


def test_an_empty_log_can_be_checkpointed(session_factory, signing_key):
    with session_factory() as db:
        checkpoint = make_checkpoint(db, signing_key, now=NOW)
        assert (checkpoint.seq, checkpoint.hash) == (0, audit.GENESIS_HASH)
        assert verify_against(db, [checkpoint], own_keys(signing_key)) is None


def test_the_file_gets_one_line_per_checkpoint_and_reads_back(session_factory, signing_key, tmp_path):
    path = tmp_path / "checkpoints" / "audit.jsonl"
    append_events(session_factory, 2)
    first = store_checkpoint(session_factory, signing_key, path, now=NOW)
    append_events(session_factory, 2)
    second = store_checkpoint(session_factory, signing_key, path, now=NOW)
    assert read_file(path) == [first, second]
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [2, 4]


def test_make_and_store_checkpoint_is_the_jobs_entry_point(ctx, tmp_path):
    append_events(ctx.sessions, 1)
    path = tmp_path / "audit.jsonl"
    made = make_and_store_checkpoint(ctx, path)
    assert read_file(path) == [made] and made.seq == 1
    assert make_and_store_checkpoint(ctx, None).seq == 1  # no file: made, kept nowhere on disk
    assert read_file(path) == [made]


def test_a_bad_line_in_the_file_is_named(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"kid":"k","seq":1,"hash":"h","time":"t","signature":"s"}\n\nnot json\n')
    with pytest.raises(CheckpointError, match="line 3"):
        read_file(path)


def test_no_checkpoint_is_signed_over_a_head_that_is_not_in_the_log(session_factory, engine, signing_key):
    append_events(session_factory, 3)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": "f" * 64})
    with session_factory() as db, pytest.raises(ChainTampered) as raised:
        make_checkpoint(db, signing_key)
    assert raised.value.seq == 3


def test_no_checkpoint_is_signed_after_the_log_was_rewritten_since_the_last_one(session_factory, engine, signing_key, tmp_path):
    path = tmp_path / "audit.jsonl"
    append_events(session_factory, 4)
    store_checkpoint(session_factory, signing_key, path, now=NOW)
    append_events(session_factory, 2)
    disable_audit_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = :d WHERE seq = 5"), {"d": '{"n":99}'})
    with pytest.raises(ChainTampered) as raised:
        store_checkpoint(session_factory, signing_key, path, now=NOW)
    assert raised.value.seq == 5
    assert len(read_file(path)) == 1  # nothing appended


def test_no_checkpoint_is_signed_after_the_newest_rows_were_deleted(session_factory, engine, signing_key, tmp_path):
    path = tmp_path / "audit.jsonl"
    append_events(session_factory, 5)
    store_checkpoint(session_factory, signing_key, path, now=NOW)
    disable_audit_triggers(engine)
    with engine.begin() as conn:
        kept = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE seq > 3"))
        conn.execute(text("UPDATE audit_head SET seq = 3, hash = :h WHERE id = 1"), {"h": kept})
    with pytest.raises(ChainTampered) as raised:
        store_checkpoint(session_factory, signing_key, path, now=NOW)
    assert raised.value.seq == 4


def test_verify_log_reports_the_lowest_bad_seq_of_chain_and_checkpoints(session_factory, engine, signing_key):
    append_events(session_factory, 6)
    with session_factory() as db:
        checkpoint = make_checkpoint(db, signing_key, now=NOW)
        assert verify_log(db, [checkpoint], own_keys(signing_key)).ok
    disable_audit_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET type = 'test.hidden' WHERE seq = 2"))
    with session_factory() as db:
        result = verify_log(db, [checkpoint], own_keys(signing_key))
    assert result.problem is not None and result.problem.seq == 2
    assert (result.checkpoints, result.newest_checkpoint) == (1, checkpoint)


def test_a_checkpoint_signed_by_an_unknown_key_fails_verification(session_factory, signing_key):
    append_events(session_factory, 1)
    stranger = SigningKey(Ed25519PrivateKey.generate())
    with session_factory() as db:
        checkpoint = make_checkpoint(db, stranger, now=NOW)
        problem = verify_against(db, [checkpoint], own_keys(signing_key))
    assert problem is not None and "invalid signature or an unknown key" in problem.reason
