"""The fast verification path (bot/domain/audit.py, "verifying"): the bytes it hashes are the
reference encoder's, it accepts an event only when they provably are, and splitting the chain
across worker processes reports exactly what the in-order walk reports."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bot.db.models import AuditEvent
from bot.domain import audit
from bot.domain.audit import Actor, Encoding, EventDraft, canonical_json, encode_event, encode_stored, verify_chain
from tests.fakes.attacker import rewrite

OCCURRED = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def json_values(limit: int):
    """JSON values as audit details may hold them: no floats (both encoders refuse them), and
    integers up to `limit` (RFC 8785 carries ±(2^53 − 1); the legacy encoding any)."""
    return st.recursive(
        st.none() | st.booleans() | st.integers(min_value=-limit, max_value=limit) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )


#: each encoding, with the encoder of its details text and the integers it carries
ENCODERS = {Encoding.JCS: (canonical_json, 2**53 - 1), Encoding.LEGACY: (audit.legacy_json, 10**30)}
details_in = st.sampled_from(Encoding).flatmap(
    lambda encoding: st.tuples(st.just(encoding), st.dictionaries(st.text(max_size=8), json_values(ENCODERS[encoding][1]), max_size=5))
)
optional_text = st.none() | st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    encoded=details_in,
    seq=st.integers(min_value=1, max_value=2**53 - 1),  # RFC 8785 carries no more (a chain counts from 1)
    type_=st.text(max_size=30),
    slack_id=optional_text,
    email=optional_text,
    role=optional_text,
    account=optional_text,
    user=optional_text,
    request_id=optional_text,
    session_id=optional_text,
    prev_hash=st.text(max_size=64),
)
def test_the_fast_encoder_writes_the_reference_bytes(encoded, seq, type_, slack_id, email, role, account, user, request_id, session_id, prev_hash):
    encoding, details = encoded
    fields = dict(
        seq=seq, occurred_at=audit.format_time(OCCURRED), type=type_, actor_slack_id=slack_id, actor_email=email,
        actor_role=role, account=account, customer_user=user, request_id=request_id, session_id=session_id,
        details=ENCODERS[encoding][0](details), prev_hash=prev_hash, encoding=encoding,
    )
    assert encode_stored(**fields) == encode_event(**fields)


@pytest.mark.parametrize("encoding", list(Encoding))
@pytest.mark.parametrize(
    "details",
    [
        {},
        {"note": "Zoë’s “contract” §4 — 日本", "emoji": "🔒", "nul": "\u0000", "ctl": "\u001f\u007f", "quote": "\"\\/"},
        {"nested": {"list": [1, "two", None, True, {"z": [], "a": {}}]}, "big": 2**53 - 1, "neg": -7},
        {"line\nbreak": "tab\tand\r", "": None, "html": "<!channel> & <@U123>"},
        {"\U0001f512": "lock", "\uff5a": "fullwidth z", "z": "z"},
    ],
)
def test_tricky_details_are_canonical_and_encode_alike(details, encoding):
    stored = ENCODERS[encoding][0](details)
    assert audit.is_canonical_details(stored, encoding)
    fields = dict(
        seq=7, occurred_at=audit.format_time(OCCURRED), type="t", actor_slack_id=None, actor_email="é@x",
        actor_role=None, account="acme", customer_user=None, request_id=None, session_id=None,
        details=stored, prev_hash=audit.GENESIS_HASH, encoding=encoding,
    )
    assert encode_stored(**fields) == encode_event(**fields)


@settings(max_examples=200, deadline=None)
@given(details_in)
def test_what_append_stores_is_canonical(encoded):
    encoding, details = encoded
    assert audit.is_canonical_details(ENCODERS[encoding][0](details), encoding)


@pytest.mark.parametrize(
    "stored",
    [
        '{"n": 1}',                 # white space
        '{"b":1,"a":2}',            # keys out of order
        '{"a":1,"a":1}',            # a duplicate key
        '{"e":"\\u00e9"}',          # an escape where the character itself is canonical
        '{"x":1.0}',                # a float
        '{"x":1e3}',
        '{"x":NaN}',
        '{"x":-0}',
        '{"x":01}',                 # not JSON at all
        "{",
        "",
    ],
)
def test_non_canonical_details_are_recognised(stored):
    assert not audit.is_canonical_details(stored, Encoding.JCS)
    assert not audit.is_canonical_details(stored, Encoding.LEGACY)


def test_batch_flags_match_one_by_one_even_when_texts_only_join_up():
    # '{"a":[{}' + "," + '{}]}' + "," + '{},{}' is '{"a":[{},{}]},{},{}': three canonical
    # values, as three texts none of which is a JSON value by itself.
    tricky = ['{"a":[{}', "{}]}", "{},{}"]
    assert audit.canonical_flags(tricky, [Encoding.JCS] * 3) == [False, False, False]
    mixed = ['{"a":1}', '{"a": 1}', "{}", '{"x":1.5}', '{"b":[1,2]}']
    encodings = [Encoding.JCS, Encoding.LEGACY] * 2 + [Encoding.JCS]
    assert audit.canonical_flags(mixed, encodings) == [audit.is_canonical_details(t, e) for t, e in zip(mixed, encodings)]
    assert audit.canonical_flags(mixed, encodings) == [True, False, True, False, True]
    fine = [canonical_json({"i": i, "s": "é"}) for i in range(50)]
    assert audit.canonical_flags(fine, [Encoding.JCS] * 50) == [True] * 50


def append(session_factory, **details) -> AuditEvent:
    with session_factory() as db, db.begin():
        return audit.append(
            db,
            EventDraft(type="test.happened", actor=Actor(slack_id="UAGENT1", email="zoë@corp.example", role="support"), account="acme", details=details),
            now=OCCURRED,
        )


def test_append_hashes_what_the_reference_encoder_hashes(session_factory):
    event = append(session_factory, note="Zoë — 日本 <!here>", nested={"l": [None, True, 3]})
    with session_factory() as db:
        assert audit.hash_event_row(db.get(AuditEvent, event.seq)) == event.hash


# --- the verifier's verdict is the reference's ----------------------------------------


def test_non_canonical_details_with_a_reference_hash_still_verify(engine, session_factory):
    # Stored text with a space: the fast path cannot vouch for it, the reference encoder
    # (json.loads, then canonical) gives the stored hash, so the event is intact.
    event = append(session_factory, n=1)
    rewrite(engine, "UPDATE audit_events SET details = :d WHERE seq = :s", d='{"n": 1}', s=event.seq)
    with session_factory() as db:
        assert verify_chain(db) == (1, None)


def test_a_hash_over_non_canonical_bytes_is_refused(engine, session_factory):
    # A forger hashes the stored text as it is instead of its canonical form: the fast
    # encoder would produce those very bytes, so only the canonical check stops it.
    event = append(session_factory, n=1)
    with session_factory() as db:
        row = db.get(AuditEvent, event.seq)
        document = encode_stored(
            seq=row.seq, occurred_at=audit.format_time(row.occurred_at), type=row.type, actor_slack_id=row.actor_slack_id,
            actor_email=row.actor_email, actor_role=row.actor_role, account=row.account, customer_user=row.customer_user,
            request_id=row.request_id, session_id=row.session_id, details='{"n": 1}', prev_hash=row.prev_hash,
            encoding=row.encoding,
        )
    forged = hashlib.sha256(document).hexdigest()
    rewrite(engine, "UPDATE audit_events SET details = :d, hash = :h WHERE seq = :s", d='{"n": 1}', h=forged, s=event.seq)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_head SET hash = :h"), {"h": forged})
    with session_factory() as db:
        checked, problem = verify_chain(db)
    assert (checked, problem.seq) == (0, 1) and "hash does not match" in problem.reason


# --- worker processes ---------------------------------------------------------------------


@pytest.fixture
def small_slices(monkeypatch):
    """Split even a short chain across workers."""
    monkeypatch.setattr(audit, "MIN_EVENTS_PER_WORKER", 1)


@pytest.fixture
def twelve(session_factory):
    return [append(session_factory, n=n, text="é" * n) for n in range(1, 13)]


def both_ways(session_factory):
    with session_factory() as db:
        serial = verify_chain(db)
    with session_factory() as db:
        parallel = verify_chain(db, workers=3)
    return serial, parallel


def test_workers_agree_on_an_intact_chain(session_factory, small_slices, twelve):
    serial, parallel = both_ways(session_factory)
    assert serial == parallel == (12, None)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param("UPDATE audit_events SET details = replace(details, '7', '8') WHERE seq = 7", id="edited"),
        pytest.param("DELETE FROM audit_events WHERE seq = 5", id="deleted-in-the-first-slice"),
        pytest.param("DELETE FROM audit_events WHERE seq = 9", id="deleted-at-a-slice-boundary"),
        pytest.param("DELETE FROM audit_events WHERE seq = 12", id="deleted-newest"),
        pytest.param("UPDATE audit_events SET prev_hash = hash WHERE seq = 10", id="relinked"),
    ],
)
def test_workers_report_what_the_walk_reports(engine, session_factory, small_slices, twelve, tamper):
    rewrite(engine, tamper)
    serial, parallel = both_ways(session_factory)
    assert serial[1] is not None
    assert parallel == serial


def test_workers_find_a_forged_event_with_a_recomputed_hash(engine, session_factory, small_slices, twelve):
    with session_factory() as db:
        row = db.get(AuditEvent, 8)
        row.details = canonical_json({"n": 80})
        forged = audit.hash_event_row(row)
    rewrite(engine, "UPDATE audit_events SET details = :d, hash = :h WHERE seq = 8", d=canonical_json({"n": 80}), h=forged)
    serial, parallel = both_ways(session_factory)
    assert parallel == serial
    assert serial[1].seq == 8 and "replaced or forged" in serial[1].reason


def test_the_cli_path_verifies_with_workers(session_factory, small_slices, twelve):
    # checkpoints.verify_log passes `workers` through, as `audit verify` calls it
    from bot.domain import checkpoints

    with session_factory() as db:
        result = checkpoints.verify_log(db, [], {}, workers=2)
    assert result.ok and result.events == 12


def test_an_in_memory_sqlite_database_is_walked_in_one_process(small_slices):
    from bot.db.engine import make_engine, make_session_factory
    from bot.db.migrate import upgrade_head

    engine = make_engine("sqlite://")
    upgrade_head(engine)
    factory = make_session_factory(engine)
    for n in range(3):
        append(factory, n=n)
    with factory() as db:
        assert verify_chain(db, workers=4) == (3, None)
    engine.dispose()

