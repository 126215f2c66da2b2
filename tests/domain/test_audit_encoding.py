"""The audit log's canonical encodings (bot/domain/audit.py, docs/audit.md "Canonical
encoding"): new events in RFC 8785 (JCS), checked against published vectors; events written
before it still verify in the legacy encoding, and neither can pass for the other."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.db.engine import make_engine, make_session_factory
from bot.db.migrate import alembic_config, upgrade_head
from bot.db.models import AuditEvent
from bot.domain import audit, checkpoints
from bot.domain.audit import Actor, Encoding, EventDraft, canonical_json, encode_event, encode_stored, verify_chain
from tests.fakes.attacker import rewrite
from tests.fakes.legacy_audit import legacy_append

OCCURRED = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)

# --- published RFC 8785 vectors -------------------------------------------------------------
#
# Each is (source, input as JSON text, expected canonical text). The inputs are parsed with
# json.loads, as the product's details are. None holds a float: the audit log refuses them.
JCS_VECTORS = [
    (
        # https://github.com/cyberphone/json-canonicalization testdata/input/weird.json and
        # testdata/output/weird.json (commit 77917fbd5d923bca23a9b5eb8851deec918016bf): U+1F602
        # (UTF-16 D83D DE02) sorts before U+FB33, and U+0080 and U+007F are written as themselves.
        "cyberphone weird.json",
        '{"\\u20ac": "Euro Sign", "1": "One", "\\u0080": "Control\\u007f", "\\ud83d\\ude02": "Smiley",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "</script>": "Browser Challenge"}',
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","\u00f6":"Latin Small Letter O With Diaeresis",'
        '"\u20ac":"Euro Sign","\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
    (
        # cyberphone testdata/input/arrays.json and testdata/output/arrays.json
        "cyberphone arrays.json",
        '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]',
        '[56,{"1":[],"10":null,"d":true}]',
    ),
    (
        # cyberphone testdata/input/french.json and testdata/output/french.json: no locale
        "cyberphone french.json",
        '{"peach": "This sorting order", "péché": "is wrong according to French",'
        ' "pêche": "but canonicalization MUST", "sin":   "ingnore locale"}',
        '{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST",'
        '"sin":"ingnore locale"}',
    ),
    (
        # cyberphone testdata/input/unicode.json and testdata/output/unicode.json: no normalisation
        "cyberphone unicode.json",
        '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}',
    ),
    (
        # RFC 8785 §3.2.3, the sorting example: property names in UTF-16 code unit order, so
        # the emoji U+1F600 (D83D DE00) comes before U+FB33; the values are named in that order.
        "RFC 8785 §3.2.3",
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}',
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
        '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
]


@pytest.mark.parametrize("source, given_text, expected", JCS_VECTORS, ids=[v[0] for v in JCS_VECTORS])
def test_canonical_json_is_rfc_8785_on_the_published_vectors(source, given_text, expected):
    value = json.loads(given_text)
    assert canonical_json(value) == expected
    assert audit.is_canonical_details(expected, Encoding.JCS)


def test_the_rfc_sorting_example_orders_the_values_as_the_rfc_names_them():
    value = json.loads(JCS_VECTORS[-1][1])
    assert list(json.loads(canonical_json(value)).values()) == [
        "Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis", "Euro Sign",
        "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh",
    ]


def test_the_legacy_encoding_sorts_keys_outside_the_bmp_by_code_point():
    # what the events written before RFC 8785 hold, and why they are labelled apart
    value = json.loads(JCS_VECTORS[0][1])
    assert audit.legacy_json(value).endswith('"\u20ac":"Euro Sign","\ufb33":"Hebrew Letter Dalet With Dagesh","\U0001f602":"Smiley"}')
    assert audit.legacy_json(value) != canonical_json(value)
    assert not audit.is_canonical_details(audit.legacy_json(value), Encoding.JCS)
    assert not audit.is_canonical_details(canonical_json(value), Encoding.LEGACY)


@pytest.mark.parametrize("value", [{"n": 2**53}, {"n": -(2**53)}, {"s": "\ud800"}])
def test_what_rfc_8785_cannot_carry_is_refused(value):
    with pytest.raises(ValueError):
        canonical_json(value)


# --- the fast paths give RFC 8785's bytes, or step aside --------------------------------------

# keys from where the two orders part: ASCII, U+E000–U+FFFF, and characters outside the BMP
awkward_keys = st.text(alphabet=st.sampled_from("aZ0é\ue000\uff5a\ufb33\U00010000\U0001f600\U0001f602\r"), max_size=3)
safe_integers = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
jcs_values = st.recursive(
    st.none() | st.booleans() | safe_integers | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(awkward_keys, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(details=st.dictionaries(awkward_keys, jcs_values, max_size=5))
def test_the_verifier_s_checks_agree_with_rfc_8785(details):
    import rfc8785

    stored = canonical_json(details)
    assert stored.encode("utf-8") == rfc8785.dumps(details)
    assert audit.is_canonical_details(stored, Encoding.JCS)
    legacy = audit.legacy_json(details)
    # legacy text passes for JCS exactly when the two encoders agree on it
    assert audit.is_canonical_details(legacy, Encoding.JCS) == (legacy == stored)
    texts, encodings = [stored, legacy, stored], [Encoding.JCS, Encoding.JCS, Encoding.LEGACY]
    assert audit.canonical_flags(texts, encodings) == [audit.is_canonical_details(t, e) for t, e in zip(texts, encodings)]
    fields = dict(
        seq=3, occurred_at=audit.format_time(OCCURRED), type="t", actor_slack_id=None, actor_email="zoë@x",
        actor_role=None, account="acme", customer_user=None, request_id=None, session_id=None,
        details=stored, prev_hash=audit.GENESIS_HASH, encoding=Encoding.JCS,
    )
    assert encode_stored(**fields) == encode_event(**fields)


def test_sixteen_digit_integers_are_settled_by_rfc_8785_itself():
    # 2^53 − 1 is the largest RFC 8785 carries; the batch check cannot vouch for 16 digits
    fine, beyond = '{"n":9007199254740991}', '{"n":9007199254740992}'
    assert audit.canonical_flags([fine, beyond], [Encoding.JCS, Encoding.JCS]) == [True, False]
    assert audit.canonical_flags([beyond], [Encoding.LEGACY]) == [True]


def test_an_unknown_encoding_is_never_canonical():
    assert audit.canonical_flags(['{"a":1}'], [3]) == [False]
    assert not audit.is_canonical_details('{"a":1}', 0)


# --- appends, on both databases ---------------------------------------------------------------

AWKWARD = {"😀": "grin", "ｚ": "fullwidth z", "a": {"\U00010000": 1, "\uffff": 2}, "n": 9007199254740991}


def append(session_factory, **details) -> AuditEvent:
    with session_factory() as db, db.begin():
        return audit.append(
            db, EventDraft(type="action.recorded", actor=Actor(slack_id="UAGENT1", role="support"), account="acme", details=details),
            now=OCCURRED,
        )


def test_appended_events_are_hashed_in_rfc_8785_by_either_database(session_factory):
    # On PostgreSQL the server computes the SHA-256 over the frame the app encoded; it must be
    # the reference encoder's, keys outside the BMP included.
    event = append(session_factory, **AWKWARD)
    with session_factory() as db:
        row = db.get(AuditEvent, event.seq)
        assert row.encoding == Encoding.JCS
        assert row.details == canonical_json(AWKWARD)
        assert row.details.index('"😀"') < row.details.index('"ｚ"')
        assert row.hash == event.hash == audit.hash_event_row(row)
        assert verify_chain(db) == (1, None)


def test_a_chain_of_legacy_events_then_rfc_8785_events_verifies(engine, session_factory):
    with engine.begin() as conn:
        for n in range(3):
            legacy_append(conn, occurred_at=OCCURRED, type="action.recorded", details={**AWKWARD, "n": n}, account="acme")
    for n in range(3):
        append(session_factory, **{**AWKWARD, "n": n})
    with session_factory() as db:
        assert db.execute(select(AuditEvent.encoding).order_by(AuditEvent.seq)).scalars().all() == [1, 1, 1, 2, 2, 2]
        assert verify_chain(db) == (6, None)
        assert checkpoints.verify_log(db, [], {}).ok


@pytest.mark.parametrize("seq, flipped", [(2, Encoding.JCS), (5, Encoding.LEGACY), (5, 3)], ids=["legacy→jcs", "jcs→legacy", "unknown"])
def test_changing_an_event_s_encoding_breaks_the_chain_there(engine, session_factory, seq, flipped):
    with engine.begin() as conn:
        for n in range(3):
            legacy_append(conn, occurred_at=OCCURRED, type="t", details={"n": n})
    for n in range(3):
        append(session_factory, n=n)
    rewrite(engine, "UPDATE audit_events SET encoding = :e WHERE seq = :s", e=int(flipped), s=seq)
    with session_factory() as db:
        checked, problem = verify_chain(db)
    assert (checked, problem.seq) == (seq - 1, seq) and "hash does not match" in problem.reason


def test_a_downgrade_with_recomputed_hash_is_still_a_rewrite(engine, session_factory, signing_key):
    # Someone relabels a JCS event as legacy and recomputes its hash that way: the event
    # verifies alone, but the next one was chained to the original (and a signed checkpoint
    # vouches for the original head).
    for n in range(3):
        append(session_factory, **{**AWKWARD, "n": n})
    with session_factory() as db:
        signed = checkpoints.make_checkpoint(db, signing_key, now=OCCURRED)
        row = db.get(AuditEvent, 2)
        row.encoding = Encoding.LEGACY
        row.details = audit.legacy_json(json.loads(row.details))
        forged = audit.hash_event_row(row)
        details = row.details
    rewrite(engine, "UPDATE audit_events SET encoding = 1, details = :d, hash = :h WHERE seq = 2", d=details, h=forged)
    with session_factory() as db:
        checked, problem = verify_chain(db)
        assert problem.seq == 2 and "replaced or forged" in problem.reason
        keys = {signing_key.kid: signing_key.public_key}
        assert checkpoints.verify_log(db, [signed], keys).ok is False


def test_rows_written_before_the_migration_are_labelled_legacy_and_verify(empty_db_url):
    # The release before RFC 8785 wrote these (schema 0011, no `encoding` column); migration
    # 0012 labels them, and the events appended after it are RFC 8785.
    from alembic import command

    engine = make_engine(empty_db_url, **({} if empty_db_url.startswith("sqlite") else {"pool_size": 2, "max_overflow": 0}))
    try:
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0011")
        with engine.begin() as conn:
            for n in range(2):
                legacy_append(conn, occurred_at=OCCURRED, type="t", details={**AWKWARD, "n": n})
        upgrade_head(engine)
        factory = make_session_factory(engine)
        append(factory, **AWKWARD)
        with factory() as db:
            assert db.execute(select(AuditEvent.encoding).order_by(AuditEvent.seq)).scalars().all() == [1, 1, 2]
            assert verify_chain(db) == (3, None)
    finally:
        engine.dispose()


def test_the_jsonl_export_carries_each_event_s_encoding(engine, session_factory):
    from bot.domain import exports

    with engine.begin() as conn:
        legacy_append(conn, occurred_at=OCCURRED, type="t", details=AWKWARD)
    append(session_factory, **AWKWARD)
    export = exports.events_export(session_factory, actor=Actor(slack_id="UAUDITOR"), now=OCCURRED)
    lines = [json.loads(line) for line in "".join(export.lines).splitlines()]
    assert ["encoding" in line for line in lines] == [False, True, True]
    for line in lines:
        claimed = line.pop("hash")
        data = canonical_json(line).encode() if "encoding" in line else audit.legacy_json(line).encode()
        assert hashlib.sha256(data).hexdigest() == claimed
