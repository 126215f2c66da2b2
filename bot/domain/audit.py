"""The audit log: append-only, hash-chained (DESIGN.md "The audit log", docs/audit.md).

Each event's hash is SHA-256 over its canonical encoding, which includes the previous
event's hash, so changing, removing or reordering any row breaks every hash after it.

Canonical encoding (documented for auditors in docs/audit.md, "Canonical encoding"): one JSON
object with exactly the keys of `encode_event`, UTF-8, times as RFC 3339 UTC with
microseconds and a "Z", `details` a JSON object without floats. Each event records which
encoding it was hashed in (`audit_events.encoding`, `Encoding`):

- `Encoding.JCS` (every event written now): RFC 8785 (JSON Canonicalization Scheme), by the
  `rfc8785` package, of the object with the member `"encoding":2` added.
- `Encoding.LEGACY` (events written before): `json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)`, without an `encoding` member. It differs from RFC 8785 only for keys
  outside the Basic Multilingual Plane (sorted by code point, where RFC 8785 §3.2.3 sorts by
  UTF-16 code units) and integers beyond ±(2^53 − 1), which RFC 8785 cannot carry.

The member `"encoding":2` is what makes the label safe to store beside the row: an object
with it is never a legacy encoding (those have exactly ten other top-level keys) and one
without it is never a JCS encoding here, so no bytes are the encoding of an event in both;
flipping a row's label (say, to have it checked the other way) changes the bytes hashed and
the stored hash no longer matches, as changing any other column would.
"""
from __future__ import annotations

import enum
import hashlib
import json
import multiprocessing
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

import rfc8785
from sqlalchemy import ColumnElement, String, bindparam, func, insert, select, type_coerce, update
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from bot.db.engine import make_engine, make_session_factory, reading
from bot.db.models import AuditEvent, AuditHead, ImpersonationRequest
from bot.domain import personal
from bot.domain.clock import utcnow

GENESIS_HASH = "0" * 64
_EVENT_COLUMNS = tuple(column.key for column in AuditEvent.__table__.columns)
# Built once: constructing SQLAlchemy statements per call costs more CPU than running them.
_LOCK_HEAD = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
_INSERT_EVENT = insert(AuditEvent)
_ADVANCE_HEAD = (
    update(AuditHead).where(AuditHead.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_EVENT_FIELDS = tuple(column for column in _EVENT_COLUMNS if column not in ("seq", "prev_hash", "hash"))
#: PostgreSQL: one statement locks the head, chains the event onto it and advances it. The
#: server hashes: it joins the bytes the app encoded (`_hash_frame`) around the head's hash
#: and the next sequence number — both ASCII — so the digest is exactly `_stored_bytes`'s
#: (tests/domain/test_audit.py). `FOR UPDATE` in READ COMMITTED waits for the previous
#: appender and then reads the head it committed (PostgreSQL docs, "Transaction Isolation",
#: 13.2.1), so appends queue without forking. psycopg's parameter style: sent as is.
_APPEND_POSTGRESQL = f"""
WITH head AS (
    SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE
), chained AS (
    SELECT head.seq + 1 AS seq, head.hash AS prev_hash,
           encode(sha256(%(before_prev)s || convert_to(head.hash, 'UTF8') || %(before_seq)s
                         || convert_to((head.seq + 1)::text, 'UTF8') || %(after_seq)s), 'hex') AS hash
    FROM head
), appended AS (
    INSERT INTO audit_events (seq, prev_hash, hash, {", ".join(_EVENT_FIELDS)})
    SELECT chained.seq, chained.prev_hash, chained.hash, {", ".join(f"%({field})s" for field in _EVENT_FIELDS)}
    FROM chained
    RETURNING seq, prev_hash, hash
)
UPDATE audit_head SET seq = appended.seq, hash = appended.hash FROM appended WHERE audit_head.id = 1
RETURNING appended.seq, appended.prev_hash, appended.hash
"""


@dataclass(frozen=True)
class Actor:
    """Who did it, as they were at the time (role and e-mail can change later)."""

    slack_id: str | None = None
    email: str | None = None
    role: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(slack_id=None, email=None, role=name)

    @classmethod
    def agent_of(cls, request) -> Actor:
        """The agent behind a request, as recorded when they asked (id, e-mail, role)."""
        return cls(slack_id=request.agent_slack_id, email=request.agent_email, role=request.agent_role)


@dataclass
class EventDraft:
    type: str
    actor: Actor = field(default_factory=Actor)
    account: str | None = None
    customer_user: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def about(
        cls,
        request: ImpersonationRequest,
        type: str,
        *,
        actor: Actor,
        session_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EventDraft:
        """An event about a request, naming what every such event names: its account's and
        customer user's external ids and the request's id (and the session's, when it is
        about one)."""
        return cls(
            type=type,
            actor=actor,
            account=request.account.external_id,
            customer_user=request.customer_user.external_id,
            request_id=request.id,
            session_id=session_id,
            details=details if details is not None else {},
        )


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Encoding(enum.IntEnum):
    """How an event was encoded for hashing, stored with it (`audit_events.encoding`)."""

    #: keys sorted by code point (json.dumps sort_keys): the events written before RFC 8785
    LEGACY = 1
    #: RFC 8785, with the member "encoding":2 in the hashed object
    JCS = 2


#: the encoding new events are written in
CURRENT_ENCODING = Encoding.JCS


def canonical_json(value: Any) -> str:
    """RFC 8785 (JCS) text of `value`: object keys sorted by their UTF-16 code units, no white
    space, strings with only the quotation mark, the reverse solidus and U+0000–U+001F
    escaped, everything else as itself. Floats are refused (their RFC 8785 form is the
    ECMAScript shortest round trip, which we do not rely on), and rfc8785 refuses integers
    beyond ±(2^53 − 1) and lone surrogates (ValueError)."""
    _reject_floats(value)
    return rfc8785.dumps(value).decode("utf-8")


def legacy_json(value: Any) -> str:
    """The encoding of events written before RFC 8785 (Encoding.LEGACY): keys sorted by code
    point. Kept to verify those events; nothing new is written in it."""
    _reject_floats(value)
    return _legacy_dumps(value)


#: json.dumps with legacy_json's settings, built once
_legacy_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit details (canonical encoding)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("audit detail keys must be strings")
            _reject_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _reject_floats(item)


def encode_event(
    *,
    seq: int,
    occurred_at: str,
    type: str,
    actor_slack_id: str | None,
    actor_email: str | None,
    actor_role: str | None,
    account: str | None,
    customer_user: str | None,
    request_id: str | None,
    session_id: str | None,
    details: str,
    prev_hash: str,
    encoding: int,
) -> bytes:
    """The exact bytes that are hashed (the reference encoder). `details` is the stored JSON
    text; `encoding` the event's Encoding (ValueError for any other value)."""
    document = {
        "seq": seq,
        "occurred_at": occurred_at,
        "type": type,
        "actor": {"slack_id": actor_slack_id, "email": actor_email, "role": actor_role},
        "account": account,
        "customer_user": customer_user,
        "request_id": request_id,
        "session_id": session_id,
        "details": json.loads(details),
        "prev_hash": prev_hash,
    }
    if encoding == Encoding.JCS:
        document["encoding"] = int(Encoding.JCS)
        _reject_floats(document)
        return rfc8785.dumps(document)
    if encoding == Encoding.LEGACY:
        return legacy_json(document).encode("utf-8")
    raise ValueError(f"unknown audit event encoding {encoding!r}")


def hash_event_row(row: AuditEvent) -> str:
    return hashlib.sha256(
        encode_event(
            seq=row.seq,
            occurred_at=format_time(row.occurred_at),
            type=row.type,
            actor_slack_id=row.actor_slack_id,
            actor_email=row.actor_email,
            actor_role=row.actor_role,
            account=row.account,
            customer_user=row.customer_user,
            request_id=row.request_id,
            session_id=row.session_id,
            details=row.details,
            prev_hash=row.prev_hash,
            encoding=row.encoding,
        )
    ).hexdigest()


#: Session.info key of the events recorded in the session's transaction, not yet written
_PENDING = "impersonation_audit_pending"
#: what it holds: the transaction the events belong to, and each event with the savepoint
#: (if any) it was recorded under
_Pending = tuple[SessionTransaction | None, list[tuple[SessionTransaction | None, AuditEvent]]]


def append(db: Session, draft: EventDraft, *, now: datetime | None = None) -> AuditEvent:
    """Record one event in the caller's transaction, so that it commits with the state change
    or not at all.

    The event is chained and written when the transaction commits, after its other
    statements (`_write_pending`, a `before_commit` hook), together with any other events
    the transaction recorded. Appenders queue on the chain head — `SELECT … FOR UPDATE` of
    the `audit_head` row on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers —
    so the time the head is held bounds how many changes a second the whole app commits
    (bench/http_bench.py). Written last, it is held only for the inserts and
    the commit itself, never while the rest of the change (loading rows, rendering, signing)
    runs. The returned event's `seq`, `prev_hash` and `hash` are filled in at that moment;
    a caller that needs them before the commit uses `append_now`.

    Nothing reads an event back in the transaction that recorded it (the checks a change
    makes read earlier transactions' events); `append_now` writes at once for any that must.
    The event's contents are checked here, not at commit: a float in `details` fails the call.
    Personal values are stored apart and the event holds references to them (`personal.seal`).
    """
    event = _unchained(_sealed(db, draft, now), now)
    db.connection()  # begin the transaction now if the caller has not: the event belongs to it
    root = db.get_transaction()
    pending: _Pending | None = db.info.get(_PENDING)
    if pending is None or pending[0] is not root:
        pending = (root, [])
        db.info[_PENDING] = pending
    pending[1].append((db.get_nested_transaction(), event))
    return event


def append_now(db: Session, draft: EventDraft, *, now: datetime | None = None) -> AuditEvent:
    """`append`, written at once (after any event the transaction recorded before it): for a
    caller that needs the event's sequence number inside the transaction. It takes the chain
    head from here to the commit."""
    _write_pending(db)
    event = _unchained(_sealed(db, draft, now), now)
    _write(db, [event])
    return event


def _sealed(db: Session, draft: EventDraft, now: datetime | None) -> EventDraft:
    """The draft with its personal values replaced by erasable references (docs/privacy.md)."""
    return personal.seal(db, draft, now=now or utcnow())


def _unchained(draft: EventDraft, now: datetime | None) -> AuditEvent:
    occurred = (now or utcnow()).astimezone(UTC)
    actor = draft.actor
    return AuditEvent(
        seq=None,
        # Stored and hashed at microsecond precision, which both databases keep exactly.
        occurred_at=occurred,
        type=draft.type,
        actor_slack_id=actor.slack_id,
        actor_email=actor.email,
        actor_role=actor.role,
        account=draft.account,
        customer_user=draft.customer_user,
        request_id=draft.request_id,
        session_id=draft.session_id,
        details=canonical_json(draft.details),  # refuses floats now, in the caller's hands
        encoding=CURRENT_ENCODING,
        prev_hash=None,
        hash=None,
    )


def _write(db: Session, events: list[AuditEvent]) -> None:
    """Chain `events` onto the head, in order, and write them."""
    connection = db.connection()
    if connection.dialect.name == "postgresql":
        for event in events:
            event.seq, event.prev_hash, event.hash = connection.exec_driver_sql(_APPEND_POSTGRESQL, _append_parameters(event)).one()
        return
    # SQLite: BEGIN IMMEDIATE has serialised writers already; the head is read, every event
    # chained here and inserted, and the head advanced once. Core statements, not the unit of
    # work: an append is on every state change's path, and the ORM flush machinery was most
    # of its cost (bench/http_bench.py).
    head_seq, head_hash = connection.execute(_LOCK_HEAD).one()
    rows = []
    for event in events:
        seq = head_seq + 1
        # encode_stored's bytes are encode_event's here: `details` is canonical_json's output
        # and the time format_time's (tests/domain/test_audit_verify.py checks against
        # hash_event_row).
        digest = hashlib.sha256(
            _stored_bytes(
                seq, format_time(event.occurred_at), event.type, event.actor_slack_id, event.actor_email, event.actor_role,
                event.account, event.customer_user, event.request_id, event.session_id, event.details, head_hash,
                event.encoding,
            )
        ).hexdigest()
        event.seq, event.prev_hash, event.hash = seq, head_hash, digest
        rows.append({column: getattr(event, column) for column in _EVENT_COLUMNS})
        head_seq, head_hash = seq, digest
    connection.execute(_INSERT_EVENT, rows)
    connection.execute(_ADVANCE_HEAD, {"new_seq": head_seq, "new_hash": head_hash})


def _append_parameters(event: AuditEvent) -> dict[str, Any]:
    before_prev, before_seq, after_seq = _hash_frame(event)
    parameters: dict[str, Any] = {field: getattr(event, field) for field in _EVENT_FIELDS}
    parameters.update(before_prev=before_prev, before_seq=before_seq, after_seq=after_seq)
    return parameters


def _write_and_commit_postgresql(db: Session, events: list[AuditEvent]) -> None:
    """Append `events` and commit, on PostgreSQL, without a round trip while the head is held.

    The head is locked from the first append statement until COMMIT. Sent one after the
    other, the client's turn between them (a round trip, and on a busy machine the wait for
    this thread or process to be scheduled again) would hold every other appender up too.
    In psycopg's pipeline mode (https://www.psycopg.org/psycopg3/docs/advanced/pipeline.html)
    the appends and the COMMIT leave together and the server runs them back to back, so the
    head is held for the server's work alone (bench/audit_bench.py). The rest of the
    transaction is flushed first, so it commits with the events or not at all; the ORM's own
    COMMIT that follows finds the transaction finished and sends nothing (psycopg commits
    only a connection in a transaction)."""
    db.flush()
    driver: Any = db.connection().connection.driver_connection  # psycopg's Connection
    cursors = []
    try:
        with driver.pipeline():
            for event in events:
                cursor = driver.cursor()
                cursors.append(cursor)
                cursor.execute(_APPEND_POSTGRESQL, _append_parameters(event))
            driver.commit()
        for cursor, event in zip(cursors, events):
            event.seq, event.prev_hash, event.hash = cursor.fetchone()
    except driver.Error as error:
        # as SQLAlchemy raises a driver error (IntegrityError, OperationalError, …)
        raise sa_exc.DBAPIError.instance(_APPEND_POSTGRESQL, None, error, driver.Error) from error
    finally:
        for cursor in cursors:
            cursor.close()


@sa_event.listens_for(Session, "before_commit")
def _write_pending(db: Session) -> None:
    """Write the events the transaction recorded, as its last statements. `before_commit` also
    fires when a savepoint is released: those events wait for the outermost commit."""
    if db.in_nested_transaction():
        return
    pending = db.info.pop(_PENDING, None)
    if pending is None or pending[0] is not db.get_transaction() or not pending[1]:
        return
    events = [event for _, event in pending[1]]
    if db.connection().dialect.name == "postgresql":
        _write_and_commit_postgresql(db, events)
    else:
        _write(db, events)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(db: Session, previous_transaction) -> None:
    """A rolled-back savepoint takes the events recorded inside it with it; a rolled-back
    transaction all of them."""
    pending = db.info.get(_PENDING)
    if pending is None:
        return
    if not previous_transaction.nested:
        db.info.pop(_PENDING, None)
        return
    pending[1][:] = [(nested, event) for nested, event in pending[1] if not _within(nested, previous_transaction)]


def _within(transaction, ancestor) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    reason: str


# ------------------------------------------------------------------------------ verifying
#
# `audit verify` must keep up with a log of tens of millions of events (at
# least 200,000 events/s, docs/benchmarks.md). The reference path above (an ORM row, json.loads of the details, a
# dict, json.dumps) costs about 10 µs an event. The verifier instead streams plain columns,
# builds the same bytes by concatenation (`encode_stored`) and accepts an event on that
# path only when the bytes are provably the canonical encoding: `occurred_at` has exactly
# format_time's shape and the stored `details` text is exactly the event's own encoding
# (legacy_json or canonical_json) of what it parses to (is_canonical_details). Any other
# event (a hash that does not match, odd text) is re-checked with the reference encoder, so the verdict for every event is the reference's, and so is the first
# bad sequence number. Large chains are split into slices checked by worker processes; the
# slices are joined by their boundary links, and any slice that is not clean is walked again
# in order, so a broken chain is reported exactly as the sequential walk reports it.

#: `occurred_at` as format_time writes it (4-digit years from 1000: strftime does not pad)
_CANONICAL_TIME = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
#: rows fetched per round trip while streaming the chain
STREAM_BATCH = 10_000
#: below this many events per worker, one process is quicker than starting more
MIN_EVENTS_PER_WORKER = 250_000


def _refuse_number(_text: str) -> Any:
    raise ValueError("floats and NaN/Infinity are not canonical")


# scan_once is set by JSONDecoder.__init__ (CPython's Lib/json/decoder.py); typeshed leaves it out
_scan_value = json.JSONDecoder(parse_float=_refuse_number, parse_constant=_refuse_number).scan_once  # type: ignore[attr-defined]
#: what _parse_details raises for text that is not one JSON value without floats
_NOT_A_VALUE = (ValueError, TypeError, StopIteration, RecursionError)


def _parse_details(text: str) -> Any:
    """json.loads for text that is one JSON value with nothing around it (canonical text has
    no white space), floats refused: the C scanner alone, without json.loads's wrapping."""
    value, end = _scan_value(text, 0)
    if end != len(text):
        raise ValueError("text after the value")
    return value


_OUTSIDE_BMP = re.compile(r"[\U00010000-\U0010FFFF]")
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_SIXTEEN_DIGITS = "0" * 16


def _encoders_may_differ(text: str) -> bool:
    """Whether `text` holds what the two encoders can write differently (docs/audit.md): a
    character outside the Basic Multilingual Plane (its UTF-16 code units sort below
    U+E000–U+FFFF, its code point above them) or a run of 16 digits (|n| ≤ 10^15 − 1 <
    2^53 − 1 is printed alike by both; longer may not be). Written for speed: the verifier
    asks this of every batch (a regular expression for the digits costs ten times more)."""
    if not text.isascii() and _OUTSIDE_BMP.search(text) is not None:
        return True
    return _SIXTEEN_DIGITS in text.translate(_DIGITS_TO_ZERO)


def is_canonical_details(text: str, encoding: int = CURRENT_ENCODING) -> bool:
    """Whether `text` is exactly the encoding `encoding` gives to json.loads(text), floats
    refused: then encode_stored(details=text, encoding=encoding) equals encode_event(…).

    For Encoding.JCS the C encoder's answer (legacy_json) stands unless _encoders_may_differ:
    text that is its value's legacy text has keys and strings written as themselves, so all
    its keys are then in the BMP, where code point order is UTF-16 code
    unit order; its integers have at most 15 digits, which both print as plain decimal; and
    both escape exactly the quotation mark, the reverse solidus and U+0000–U+001F, the same
    way (the two-character forms for backspace, tab, line feed, form feed and carriage
    return, else six-character escapes in lower-case hex). Other text is compared with
    canonical_json itself."""
    try:
        value = _parse_details(text)
    except _NOT_A_VALUE:
        return False
    if encoding == Encoding.LEGACY or (encoding == Encoding.JCS and not _encoders_may_differ(text)):
        return _legacy_dumps(value) == text
    if encoding != Encoding.JCS:
        return False
    try:
        return canonical_json(value) == text
    except (ValueError, TypeError):  # an integer RFC 8785 cannot carry, a lone surrogate
        return False


def canonical_flags(texts: list[str], encodings: list[int]) -> list[bool]:
    """is_canonical_details for each (text, encoding), with one json.dumps call for the whole
    batch when all are canonical (the common case). Each text is parsed on its own, so each
    parsed value v_i came from exactly t_i; then "[" + ",".join(t_i) + "]" equal to
    dumps([v_i…]), which is "[" + ",".join(dumps(v_i)) + "]", forces dumps(v_i) == t_i for
    every i: at the first i where they differed, one would be a proper prefix of the other
    followed by ",", and no complete JSON value is followed by "," inside another single JSON
    value, nor parses with ",…" left over. A JCS text is then settled as in
    is_canonical_details: on its own only where _encoders_may_differ."""
    try:
        values = [_parse_details(text) for text in texts]
    except _NOT_A_VALUE:
        return [is_canonical_details(text, encoding) for text, encoding in zip(texts, encodings)]
    joined = "[" + ",".join(texts) + "]"
    if _legacy_dumps(values) != joined:
        return [is_canonical_details(text, encoding) for text, encoding in zip(texts, encodings)]
    if not _encoders_may_differ(joined):
        return [encoding in _KNOWN_ENCODINGS for encoding in encodings]
    return [
        encoding == Encoding.LEGACY
        or (encoding == Encoding.JCS and (not _encoders_may_differ(text) or is_canonical_details(text, encoding)))
        for text, encoding in zip(texts, encodings)
    ]


_KNOWN_ENCODINGS = frozenset(Encoding)

#: the hashed object with its keys in sorted order, per encoding (encode_event's output, as a
#: template); the JCS one has the member "encoding":2 between `details` and `occurred_at`
_LEGACY_TEMPLATE = (
    '{"account":%s,"actor":{"email":%s,"role":%s,"slack_id":%s},"customer_user":%s,"details":%s,'
    '"occurred_at":%s,"prev_hash":%s,"request_id":%s,"seq":%d,"session_id":%s,"type":%s}'
)
#: by Encoding; keyed by int, as stored rows carry their encoding as a plain integer
_STORED_TEMPLATES: dict[int, str] = {
    Encoding.LEGACY: _LEGACY_TEMPLATE,
    Encoding.JCS: _LEGACY_TEMPLATE.replace('"details":%s,', f'"details":%s,"encoding":{int(Encoding.JCS)},'),
}


def _stored_bytes(
    seq: int,
    occurred_at: str,
    type: str,
    actor_slack_id: str | None,
    actor_email: str | None,
    actor_role: str | None,
    account: str | None,
    customer_user: str | None,
    request_id: str | None,
    session_id: str | None,
    details: str,
    prev_hash: str,
    encoding: int,
) -> bytes:
    # Strings go through the json module's own C encoder (the characters json.dumps(...,
    # ensure_ascii=False) writes); one %-format instead of two dozen concatenations.
    enc = encode_basestring
    return (
        _STORED_TEMPLATES[encoding]  # KeyError for an encoding we do not know
        % (
            "null" if account is None else enc(account),
            "null" if actor_email is None else enc(actor_email),
            "null" if actor_role is None else enc(actor_role),
            "null" if actor_slack_id is None else enc(actor_slack_id),
            "null" if customer_user is None else enc(customer_user),
            details,
            enc(occurred_at),
            enc(prev_hash),
            "null" if request_id is None else enc(request_id),
            seq,
            "null" if session_id is None else enc(session_id),
            enc(type),
        )
    ).encode("utf-8")


def _frame_templates(template: str) -> tuple[str, str, str]:
    """`template` cut around the two fields that come from the chain head"""
    before_prev, rest = template.split('"prev_hash":%s')
    before_seq, after_seq = rest.split('"seq":%d')
    return before_prev, before_seq, after_seq


_FRAME_TEMPLATES: dict[int, tuple[str, str, str]] = {encoding: _frame_templates(template) for encoding, template in _STORED_TEMPLATES.items()}


def _hash_frame(event: AuditEvent) -> tuple[bytes, bytes, bytes]:
    """`_stored_bytes` of `event` without its `prev_hash` and `seq`: (before, between, after)
    such that before + prev_hash + between + str(seq) + after is the encoding, for whichever
    head the event is chained onto. A hash is written as its bare hex digits and a sequence
    number as decimal digits (neither needs escaping), so the database can finish it."""
    enc = encode_basestring
    before_template, between_template, after_template = _FRAME_TEMPLATES[event.encoding]
    before = before_template % (
        "null" if event.account is None else enc(event.account),
        "null" if event.actor_email is None else enc(event.actor_email),
        "null" if event.actor_role is None else enc(event.actor_role),
        "null" if event.actor_slack_id is None else enc(event.actor_slack_id),
        "null" if event.customer_user is None else enc(event.customer_user),
        event.details,
        enc(format_time(event.occurred_at)),
    )
    between = between_template % ("null" if event.request_id is None else enc(event.request_id),)
    after = after_template % (
        "null" if event.session_id is None else enc(event.session_id),
        enc(event.type),
    )
    return (before + '"prev_hash":"').encode("utf-8"), ('"' + between + '"seq":').encode("utf-8"), after.encode("utf-8")


def encode_stored(
    *,
    seq: int,
    occurred_at: str,
    type: str,
    actor_slack_id: str | None,
    actor_email: str | None,
    actor_role: str | None,
    account: str | None,
    customer_user: str | None,
    request_id: str | None,
    session_id: str | None,
    details: str,
    prev_hash: str,
    encoding: int,
) -> bytes:
    """encode_event's bytes, built by concatenation from the stored text. Equal to
    encode_event(...) whenever `details` is canonical text for `encoding`
    (is_canonical_details), which is how append stores it; used by the verifier and the
    benchmark's history generator."""
    return _stored_bytes(
        seq, occurred_at, type, actor_slack_id, actor_email, actor_role, account, customer_user,
        request_id, session_id, details, prev_hash, encoding,
    )


def _batches(db: Session, after: int, upto: int | None, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """The events after `after` (up to `upto`) in seq order, in lists of up to `batch` plain
    tuples: _stored_bytes's arguments (the encoding last), then the hash; `occurred_at` as text in format_time's
    shape. Read through the driver's own cursor (a server-side one on PostgreSQL, so memory
    stays flat over any length): SQLAlchemy's Row objects cost more than the hashing."""
    connection = db.connection()
    postgresql = connection.dialect.name == "postgresql"
    occurred: ColumnElement[Any]
    if postgresql:
        occurred = func.to_char(func.timezone("UTC", AuditEvent.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    else:
        # SQLite keeps the text SQLAlchemy wrote, 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        raw = type_coerce(AuditEvent.occurred_at, String)
        occurred = func.substr(raw, 1, 10) + "T" + func.substr(raw, 12) + "Z"
    statement = select(
        AuditEvent.seq, occurred, AuditEvent.type, AuditEvent.actor_slack_id, AuditEvent.actor_email,
        AuditEvent.actor_role, AuditEvent.account, AuditEvent.customer_user, AuditEvent.request_id,
        AuditEvent.session_id, AuditEvent.details, AuditEvent.prev_hash, AuditEvent.encoding, AuditEvent.hash,
    ).where(AuditEvent.seq > int(after))
    if upto is not None:
        statement = statement.where(AuditEvent.seq <= int(upto))
    # Only integers and our own constants are bound, so they can be rendered inline.
    sql = str(statement.order_by(AuditEvent.seq).compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    driver: Any = connection.connection.driver_connection  # the DB-API connection
    cursor = driver.cursor(name="audit_verify") if postgresql else driver.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        cursor.close()


def _time_is_canonical(text: str) -> bool:
    if _CANONICAL_TIME.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)  # a real date and time (SQLite stores any text)
    except ValueError:
        return False
    return True


def _reference_hash_ok(db: Session, seq: int, row_hash: str) -> bool:
    """The reference encoder's verdict on the stored event `seq` (the slow path). A row the
    encoder cannot read back (details that are not JSON, a float, a value of the wrong type)
    cannot be what was hashed: it is a bad event, never a crash of the verifier."""
    stored = None
    try:
        stored = db.get(AuditEvent, seq)
        return stored is not None and hash_event_row(stored) == row_hash
    except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
        return False
    finally:
        if stored is not None:
            db.expunge(stored)


def _hash_ok(db: Session, row: tuple[Any, ...], details_canonical: bool) -> bool:
    """Whether the event's hash is the SHA-256 of its canonical encoding (the reference's
    verdict, reached on the fast path only when its bytes are provably the reference's)."""
    try:
        if (
            details_canonical
            and hashlib.sha256(_stored_bytes(*row[:13])).hexdigest() == row[13]
            and _time_is_canonical(row[1])
        ):
            return True
    except (TypeError, KeyError):  # a NULL where the schema has NOT NULL, an unknown encoding
        pass
    return _reference_hash_ok(db, row[0], row[13])


@dataclass
class _Walk:
    """Where an in-order walk of the chain has got to."""

    expected_prev: str = GENESIS_HASH
    expected_seq: int = 1
    checked: int = 0

    def run(self, db: Session, *, after: int, upto: int | None, batch: int) -> tuple[int, ChainProblem] | None:
        """Check the events after `after` in order; (events checked, first problem) or None."""
        sha256, stored_bytes, time_ok = hashlib.sha256, _stored_bytes, _time_is_canonical
        for rows in _batches(db, after, upto, batch):
            flags = canonical_flags([row[10] for row in rows], [row[12] for row in rows])
            for row, canonical in zip(rows, flags):
                seq, prev_hash, row_hash = row[0], row[11], row[13]
                if seq != self.expected_seq:
                    return self.checked, ChainProblem(self.expected_seq, f"sequence gap: expected {self.expected_seq}, found {seq}")
                if prev_hash != self.expected_prev:
                    if seq > 1 and _hash_ok(db, row, canonical):
                        # This event is intact but was chained to a different predecessor: the
                        # earliest row that can have changed is the one before it (replaced or forged).
                        return self.checked - 1, ChainProblem(
                            seq - 1, f"event {seq - 1} is not the event {seq} was chained to: it was replaced or forged"
                        )
                    return self.checked, ChainProblem(seq, "prev_hash does not match the previous event's hash")
                # _hash_ok inlined: this runs once per event
                try:
                    fast = canonical and sha256(stored_bytes(*row[:13])).hexdigest() == row_hash and time_ok(row[1])
                except (TypeError, KeyError):
                    fast = False
                if not fast and not _reference_hash_ok(db, seq, row_hash):
                    return self.checked, ChainProblem(seq, "hash does not match the event's contents")
                self.expected_prev = row_hash
                self.expected_seq += 1
                self.checked += 1
        return None


@dataclass(frozen=True)
class _SliceResult:
    """One worker's slice (after, upto]: `clean` when its events are consecutive from
    after + 1, each hash is right and each links to the one before it within the slice."""

    clean: bool
    count: int
    first_prev: str | None
    last_seq: int
    last_hash: str | None


def _check_slice(url: str, after: int, upto: int | None, batch: int) -> _SliceResult:
    engine = make_engine(url, **({} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 0}))
    try:
        with reading(make_session_factory(engine)) as db:
            expected_seq, expected_prev, count = after + 1, "", 0
            first_prev: str | None = None
            sha256, stored_bytes, time_ok = hashlib.sha256, _stored_bytes, _time_is_canonical
            for rows in _batches(db, after, upto, batch):
                flags = canonical_flags([row[10] for row in rows], [row[12] for row in rows])
                for row, canonical in zip(rows, flags):
                    if first_prev is None:
                        first_prev = expected_prev = row[11]
                    if row[0] != expected_seq or row[11] != expected_prev:
                        return _SliceResult(False, count, first_prev, expected_seq - 1, None)
                    try:  # _hash_ok inlined, as in _Walk.run
                        fast = canonical and sha256(stored_bytes(*row[:13])).hexdigest() == row[13] and time_ok(row[1])
                    except (TypeError, KeyError):
                        fast = False
                    if not fast and not _reference_hash_ok(db, row[0], row[13]):
                        return _SliceResult(False, count, first_prev, expected_seq - 1, None)
                    expected_prev = row[13]
                    expected_seq += 1
                    count += 1
            complete = count > 0 and (upto is None or expected_seq - 1 == upto)
            return _SliceResult(complete, count, first_prev, expected_seq - 1, expected_prev)
    finally:
        engine.dispose()


def _parallel_prefix(db: Session, walk: _Walk, workers: int, batch: int) -> int:
    """Check the chain in `workers` slices at once and advance `walk` over the clean prefix
    of them (slices joined by their boundary links). Returns the last seq walked."""
    url = db.get_bind().engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return 0
    last = db.execute(select(func.max(AuditEvent.seq))).scalar_one_or_none() or 0
    workers = min(workers, last // MIN_EVENTS_PER_WORKER)
    if workers < 2:
        return 0
    bounds = [last * k // workers for k in range(workers)]
    uppers: list[int | None] = [*bounds[1:], None]
    text_url = url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_check_slice, [text_url] * workers, bounds, uppers, [batch] * workers))
    walked = 0
    for after, result in zip(bounds, results):
        if not result.clean or after != walked or result.first_prev != walk.expected_prev or result.last_hash is None:
            break
        walk.expected_prev = result.last_hash
        walk.expected_seq = result.last_seq + 1
        walk.checked += result.count
        walked = result.last_seq
    return walked


def verify_chain(db: Session, *, batch: int = STREAM_BATCH, workers: int = 1) -> tuple[int, ChainProblem | None]:
    """Walk the chain in order. Returns (events checked, first problem or None).

    With `workers` > 1 and a long chain, slices are checked by that many processes first
    (each with its own connection, in a read-only transaction); the result is the same."""
    walk = _Walk()
    walked = _parallel_prefix(db, walk, workers, batch) if workers > 1 else 0
    retried = False
    while True:
        found = walk.run(db, after=walked, upto=None, batch=batch)
        if found is not None:
            return found
        advanced, walked = walk.checked > walked, walk.checked
        head = db.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one_or_none()
        if head is None or (head.seq == walk.checked and head.hash == walk.expected_prev):
            return walk.checked, None
        if head.seq > walk.checked and (advanced or not retried):
            # Events may have been committed while we walked (on PostgreSQL each statement
            # sees newly committed rows): walk on from where we stopped before judging the head.
            retried = True
            continue
        return walk.checked, ChainProblem(walk.checked + 1, f"chain head records seq {head.seq}, log ends at {walk.checked}")
