"""The audit log: hash chain, canonical encoding, and the database refusing to rewrite it."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.db.models import Account, AuditEvent, AuditHead
from bot.domain import audit
from bot.domain.audit import GENESIS_HASH, Actor, EventDraft, canonical_json, encode_event, verify_chain
from tests.fakes.attacker import rewrite

OCCURRED = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def append(session_factory, type_: str = "test.happened", **details) -> AuditEvent:
    with session_factory() as db, db.begin():
        return audit.append(
            db,
            EventDraft(type=type_, actor=Actor(slack_id="UAGENT1", role="support"), account="acme", details=details),
            now=OCCURRED,
        )


def test_events_form_a_chain_from_the_genesis_hash(session_factory):
    first = append(session_factory, n=1)
    second = append(session_factory, n=2)
    third = append(session_factory, n=3)
    assert [e.seq for e in (first, second, third)] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3
    with session_factory() as db:
        head = db.get(AuditHead, 1)
        assert (head.seq, head.hash) == (3, third.hash)
        assert verify_chain(db) == (3, None)


def draft(n: int) -> EventDraft:
    return EventDraft(type="test.happened", actor=Actor(slack_id="UAGENT1"), details={"n": n})


def numbers(session_factory) -> list[int]:
    with session_factory() as db:
        return [int(json.loads(d)["n"]) for d in db.execute(select(AuditEvent.details).order_by(AuditEvent.seq)).scalars()]


def test_events_are_written_at_commit_in_the_order_recorded(session_factory):
    with session_factory() as db, db.begin():
        first, second = audit.append(db, draft(1), now=OCCURRED), audit.append(db, draft(2), now=OCCURRED)
        # chained at commit, after the transaction's other statements (the head is held briefly)
        assert first.seq is None and db.execute(select(func.count()).select_from(AuditEvent)).scalar() == 0
        third = audit.append_now(db, draft(3), now=OCCURRED)  # writes what was recorded before it, then itself
        assert (first.seq, second.seq, third.seq) == (1, 2, 3)
        fourth = audit.append(db, draft(4), now=OCCURRED)
    assert fourth.seq == 4 and numbers(session_factory) == [1, 2, 3, 4]
    with session_factory() as db:
        assert verify_chain(db) == (4, None)


def test_a_rolled_back_transaction_or_savepoint_takes_its_events_with_it(session_factory):
    with pytest.raises(RuntimeError), session_factory() as db, db.begin():
        audit.append(db, draft(1), now=OCCURRED)
        raise RuntimeError("the change failed")
    with session_factory() as db, db.begin():
        audit.append(db, draft(2), now=OCCURRED)
        savepoint = db.begin_nested()
        audit.append(db, draft(3), now=OCCURRED)
        savepoint.rollback()
        with db.begin_nested():  # a released savepoint keeps its events for the commit
            audit.append(db, draft(4), now=OCCURRED)
        assert db.execute(select(func.count()).select_from(AuditEvent)).scalar() == 0
    assert numbers(session_factory) == [2, 4]
    with session_factory() as db:
        assert verify_chain(db) == (2, None)


def test_a_float_is_refused_when_recorded_not_at_commit(session_factory):
    with session_factory() as db, db.begin():
        with pytest.raises(TypeError, match="floats"):
            audit.append(db, EventDraft(type="test.happened", details={"ratio": 0.5}))
        audit.append(db, draft(1), now=OCCURRED)
    assert numbers(session_factory) == [1]


def test_an_empty_log_verifies(session_factory):
    with session_factory() as db:
        assert verify_chain(db) == (0, None)


def test_stored_events_rehash_to_their_hash_after_a_round_trip(session_factory):
    # Times, non-ASCII text and nested details come back from the database exactly as hashed.
    event = append(session_factory, note="Zoë’s “contract” §4 — 日本", nested={"list": [1, "two", None, True]})
    with session_factory() as db:
        stored = db.get(AuditEvent, event.seq)
        assert stored.occurred_at == OCCURRED
        assert audit.hash_event_row(stored) == event.hash



AWKWARD = 'quote " backslash \\ newline \n tab \t nul-ish \x01 \x1f del \x7f Zoë 日本 😀 <!channel> &amp;'


def test_awkward_text_in_every_field_rehashes_and_verifies(session_factory):
    # On PostgreSQL the server finishes each hash (audit._APPEND_POSTGRESQL); every text field
    # must still hash exactly as the published encoding says, several events to a transaction.
    with session_factory() as db, db.begin():
        events = [
            audit.append(
                db,
                EventDraft(
                    type=f"test.awkward{n}", actor=Actor(slack_id=AWKWARD[:32], email=AWKWARD, role=AWKWARD[:64]),
                    account=AWKWARD[:128], customer_user=AWKWARD, request_id=AWKWARD[:36], session_id=AWKWARD[-36:],
                    details={"text": AWKWARD, "n": n},
                ),
                now=OCCURRED,
            )
            for n in range(3)
        ]
    assert [e.seq for e in events] == [1, 2, 3]
    with session_factory() as db:
        for event in events:
            assert audit.hash_event_row(db.get(AuditEvent, event.seq)) == event.hash
        assert verify_chain(db) == (3, None)


def test_the_rest_of_the_transaction_commits_with_its_events_or_not_at_all(engine, session_factory):
    # Changes still waiting to be flushed at commit go in the same transaction as the events.
    now = OCCURRED
    with session_factory() as db, db.begin():
        db.add(Account(external_id="acme", name="ACME", created_at=now, updated_at=now))
        audit.append(db, draft(1), now=now)
    with pytest.raises(IntegrityError), session_factory() as db, db.begin():
        db.add(Account(external_id="acme", name="ACME again", created_at=now, updated_at=now))  # unique
        audit.append(db, draft(2), now=now)
    assert numbers(session_factory) == [1]
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(Account)).scalar() == 1
        assert verify_chain(db) == (1, None)


def test_an_event_the_database_refuses_takes_the_change_with_it(engine, session_factory):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    now = OCCURRED
    with pytest.raises(DBAPIError, match="too long"), session_factory() as db, db.begin():
        db.add(Account(external_id="acme", name="ACME", created_at=now, updated_at=now))
        audit.append(db, draft(1), now=now)
        audit.append(db, EventDraft(type="t" * 65, actor=Actor(slack_id="UAGENT1"), details={}), now=now)
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(Account)).scalar() == 0
        assert verify_chain(db) == (0, None)
    append(session_factory, n=3)  # the connection and the head are fine afterwards
    with session_factory() as db:
        assert verify_chain(db) == (1, None)


optional_text = st.none() | st.text(max_size=40)


@given(
    seq=st.integers(min_value=1, max_value=10**12),
    prev_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    type_=st.text(min_size=1, max_size=40),
    fields=st.fixed_dictionaries(
        {name: optional_text for name in ("actor_slack_id", "actor_email", "actor_role", "account", "customer_user", "request_id", "session_id")}
    ),
    details=st.dictionaries(
        st.text(max_size=10), st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=20), max_size=4
    ),
    encoding=st.sampled_from(audit.Encoding),
)
def test_the_frame_the_database_finishes_is_the_published_encoding(seq, prev_hash, type_, fields, details, encoding):
    stored = canonical_json(details) if encoding is audit.Encoding.JCS else audit.legacy_json(details)
    event = AuditEvent(occurred_at=OCCURRED, type=type_, details=stored, encoding=encoding, **fields)
    before, between, after = audit._hash_frame(event)
    assert before + prev_hash.encode() + between + str(seq).encode() + after == encode_event(
        seq=seq, occurred_at=audit.format_time(OCCURRED), type=type_, details=event.details, prev_hash=prev_hash,
        encoding=encoding, **fields
    )

# The canonical encodings are a published format (docs/audit.md): auditors recompute hashes
# with their own tools, so these bytes must never change silently. The legacy encoding's, as
# every event before RFC 8785 was hashed:
LEGACY_GOLDEN_BYTES = (
    '{"account":"acme","actor":{"email":"revops@corp.example","role":"revops","slack_id":"UREVOPS1"},'
    '"customer_user":null,"details":{"flag":"sensitive","n":3,"note":"MSA §4.2 — “sensitive”","value":true},'
    '"occurred_at":"2026-01-02T03:04:05.000006Z",'
    '"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"request_id":null,"seq":1,"session_id":null,"type":"account.flag_changed"}'
).encode("utf-8")
LEGACY_GOLDEN_HASH = "1849fcadecf91509b80cf130e14418c063de075659d0fef4a50bb070d230007d"
# RFC 8785's, as events are hashed now: the same event with "encoding":2, and a key outside
# the BMP ("😀", U+1F600, UTF-16 D83D DE00) sorting before "ｚ" (U+FF5A), which follows it
# in code point order (the legacy encoding's).
JCS_GOLDEN_BYTES = (
    '{"account":"acme","actor":{"email":"revops@corp.example","role":"revops","slack_id":"UREVOPS1"},'
    '"customer_user":null,"details":{"flag":"sensitive","n":3,"note":"MSA §4.2 — “sensitive”","value":true,'
    '"😀":"grin","ｚ":"fullwidth z"},"encoding":2,"occurred_at":"2026-01-02T03:04:05.000006Z",'
    '"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"request_id":null,"seq":1,"session_id":null,"type":"account.flag_changed"}'
).encode("utf-8")
JCS_GOLDEN_HASH = "1428e73162aeb767b6691fecdad671bce2b5720d55315a8d94200a3128d6e883"


GOLDEN_DETAILS = {"value": True, "note": "MSA §4.2 — “sensitive”", "flag": "sensitive", "n": 3}


@pytest.mark.parametrize(
    "encoding, details, golden_bytes, golden_hash",
    [
        (audit.Encoding.LEGACY, GOLDEN_DETAILS, LEGACY_GOLDEN_BYTES, LEGACY_GOLDEN_HASH),
        (audit.Encoding.JCS, {**GOLDEN_DETAILS, "ｚ": "fullwidth z", "😀": "grin"}, JCS_GOLDEN_BYTES, JCS_GOLDEN_HASH),
    ],
)
def test_canonical_encodings_are_stable(encoding, details, golden_bytes, golden_hash):
    encoded = encode_event(
        seq=1,
        occurred_at=audit.format_time(OCCURRED),
        type="account.flag_changed",
        actor_slack_id="UREVOPS1",
        actor_email="revops@corp.example",
        actor_role="revops",
        account="acme",
        customer_user=None,
        request_id=None,
        session_id=None,
        details=canonical_json(details) if encoding is audit.Encoding.JCS else audit.legacy_json(details),
        prev_hash=GENESIS_HASH,
        encoding=encoding,
    )
    assert encoded == golden_bytes
    assert hashlib.sha256(encoded).hexdigest() == golden_hash


def test_the_legacy_encoding_sorts_a_name_outside_the_bmp_last():
    details = {"ｚ": "fullwidth z", "😀": "grin"}
    assert audit.legacy_json(details) == '{"ｚ":"fullwidth z","😀":"grin"}'
    assert canonical_json(details) == '{"😀":"grin","ｚ":"fullwidth z"}'


def test_an_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="unknown audit event encoding"):
        encode_event(
            seq=1, occurred_at=audit.format_time(OCCURRED), type="t", actor_slack_id=None, actor_email=None,
            actor_role=None, account=None, customer_user=None, request_id=None, session_id=None, details="{}",
            prev_hash=GENESIS_HASH, encoding=3,
        )


def test_canonical_json_sorts_keys_and_has_no_white_space():
    assert canonical_json({"b": [1, {"d": None, "c": "é"}], "a": True}) == '{"a":true,"b":[1,{"c":"é","d":null}]}'


@pytest.mark.parametrize("details", [{"x": 1.5}, {"x": [1, 2.0]}, {"x": {"y": float("nan")}}])
def test_floats_are_refused(details):
    with pytest.raises(TypeError, match="floats"):
        canonical_json(details)


def test_a_float_in_details_writes_nothing(session_factory):
    with pytest.raises(TypeError, match="floats"):
        append(session_factory, ratio=0.5)
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == 0
        assert db.get(AuditHead, 1).seq == 0


def test_non_string_keys_are_refused():
    with pytest.raises(TypeError, match="keys must be strings"):
        canonical_json({1: "x"})


# --- the database refuses to rewrite history ---------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET details = '{}' WHERE seq = 1",
        "UPDATE audit_events SET prev_hash = hash",
        "DELETE FROM audit_events WHERE seq = 1",
        "DELETE FROM audit_events",
    ],
)
def test_the_database_refuses_update_and_delete(engine, session_factory, statement):
    event = append(session_factory, n=1)
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    with session_factory() as db:
        assert db.get(AuditEvent, 1).hash == event.hash
        assert verify_chain(db) == (1, None)


def test_postgresql_refuses_truncate(engine, session_factory):
    if engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL (SQLite's DELETE is covered above)")
    append(session_factory, n=1)
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE refused"):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    with session_factory() as db:
        assert verify_chain(db) == (1, None)


# --- with the triggers gone, the chain still tells --------------------------------------


@pytest.fixture
def three_events(session_factory):
    return [append(session_factory, n=n) for n in (1, 2, 3)]


def test_an_edited_event_is_found(engine, session_factory, three_events):
    rewrite(engine, "UPDATE audit_events SET details = replace(details, '2', '7') WHERE seq = 2")
    with session_factory() as db:
        checked, problem = verify_chain(db)
    assert (checked, problem.seq) == (1, 2)
    assert "hash does not match" in problem.reason


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(engine, session_factory, three_events):
    with session_factory() as db:
        row = db.get(AuditEvent, 2)
        row.details = canonical_json({"n": 7})
        forged = audit.hash_event_row(row)
    rewrite(engine, "UPDATE audit_events SET details = :d, hash = :h WHERE seq = 2", d=canonical_json({"n": 7}), h=forged)
    with session_factory() as db:
        checked, problem = verify_chain(db)
    # Event 3 is intact but chained to another event 2: the edited event is the first bad one.
    assert (checked, problem.seq) == (1, 2) and "replaced or forged" in problem.reason


def test_a_removed_event_is_found(engine, session_factory, three_events):
    rewrite(engine, "DELETE FROM audit_events WHERE seq = 2")
    with session_factory() as db:
        _, problem = verify_chain(db)
    assert problem.seq == 2 and "gap" in problem.reason


def test_removing_the_newest_event_disagrees_with_the_head(engine, session_factory, three_events):
    rewrite(engine, "DELETE FROM audit_events WHERE seq = 3")
    with session_factory() as db:
        checked, problem = verify_chain(db)
    assert checked == 2 and problem.seq == 3 and "head" in problem.reason
