"""The product API's domain: keys stored only as hashes and audited when
created and revoked, every refused credential audited (boundedly) without its secret, strict
validation of reported actions, and the session's time window."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bot.db.models import ApiKey, AuditEvent
from bot.domain import links, product_api
from bot.domain import requests as domain_requests
from bot.domain import sessions
from bot.domain.audit import Actor, verify_chain
from bot.domain.policy import ProductConfig
from bot.domain.product_api import (
    MAX_ACTION_BYTES,
    ActionProblem,
    ActionRecorded,
    ActionRefused,
    ActionUpload,
    ApiKeyError,
    ApiPrincipal,
    AuthProblem,
    AuthRefused,
)
from bot.domain.refusals import SUMMARY_EVENT, RefusalAuditor, RefusalThrottle
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory
from tests.personal_values import revealed

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=timezone.utc)
CLI = Actor(slack_id="USECURITY1", email="sec@corp.example", role="cli")
SECOND = timedelta(seconds=1)


def events(session_factory, type_: str | None = None) -> list[AuditEvent]:
    with session_factory() as db:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if type_:
            query = query.where(AuditEvent.type == type_)
        rows = list(db.execute(query).scalars())
        db.expunge_all()
        return rows


def new_key(session_factory, product: str = "acme-web", *, now: datetime = T0) -> tuple[str, str]:
    with session_factory() as db, db.begin():
        return product_api.create_api_key(db, product=product, actor=CLI, now=now)


def authenticate(ctx, header: str | None, *, refusals: RefusalAuditor | None = None, now: datetime = T0):
    return product_api.authenticate(
        ctx, header, endpoint="product_api.session_status", refusals=refusals or RefusalAuditor(ctx, timer=False), now=now
    )


# --- keys ------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_only_its_sha256_is_stored(ctx, session_factory):
    key_id, plaintext = new_key(session_factory)
    match = re.fullmatch(r"ibk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", plaintext)
    assert match and match.group(1) == key_id
    secret = match.group(2)

    with session_factory() as db:
        row = db.get(ApiKey, key_id)
        stored = [str(getattr(row, column.key)) for column in ApiKey.__table__.columns]
    assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row.product == "acme-web" and row.created_by == "sec@corp.example" and row.revoked_at is None
    assert not any(secret in value or plaintext in value for value in stored)

    (created,) = events(session_factory, "api_key.created")
    assert json.loads(created.details) == {"key_id": key_id, "product": "acme-web"}
    assert created.actor_slack_id == "USECURITY1"
    assert all(secret not in e.details for e in events(session_factory))
    assert isinstance(authenticate(ctx, f"Bearer {plaintext}"), ApiPrincipal)


def test_the_answer_unpacks_as_a_pair_and_its_repr_hides_the_key(session_factory):
    with session_factory() as db, db.begin():
        answer = product_api.create_api_key(db, product="acme-web", actor=CLI, now=T0)
    key_id, plaintext = answer
    assert key_id in repr(answer) and plaintext not in repr(answer)


def test_two_keys_never_share_an_id_or_a_secret(session_factory):
    first, second = new_key(session_factory), new_key(session_factory)
    assert first[0] != second[0] and first[1].rsplit("_", 1)[1] != second[1].rsplit("_", 1)[1]


@pytest.mark.parametrize("product", ["", "ACME", "acme web", "-acme", "a" * 65, "acme\n", "acmé"])
def test_a_bad_product_name_is_refused_and_nothing_is_written(session_factory, product):
    before = len(events(session_factory))
    with pytest.raises(ApiKeyError, match="product must be"), session_factory() as db, db.begin():
        product_api.create_api_key(db, product=product, actor=CLI, now=T0)
    with session_factory() as db:
        assert db.execute(select(ApiKey)).first() is None
    assert len(events(session_factory)) == before


def test_revoking_is_audited_once_and_the_key_stops_working(ctx, session_factory):
    key_id, plaintext = new_key(session_factory)
    with session_factory() as db, db.begin():
        assert product_api.revoke_api_key(db, f"ibk_{key_id}", actor=CLI, now=T0 + SECOND) is True
    with session_factory() as db, db.begin():
        assert product_api.revoke_api_key(db, key_id, actor=CLI, now=T0 + 2 * SECOND) is False

    (revoked,) = events(session_factory, "api_key.revoked")
    assert json.loads(revoked.details) == {"key_id": key_id, "product": "acme-web"}
    assert revoked.occurred_at == T0 + SECOND
    refused = authenticate(ctx, f"Bearer {plaintext}", now=T0 + 3 * SECOND)
    assert refused == AuthRefused(AuthProblem.REVOKED) and refused.code == "revoked_api_key"
    with session_factory() as db:
        (view,) = product_api.list_api_keys(db)
    assert (view.key_id, view.active, view.revoked_at, view.revoked_by) == (key_id, False, T0 + SECOND, "sec@corp.example")


def test_revoking_an_unknown_key_writes_nothing_and_a_malformed_id_is_refused(session_factory):
    before = len(events(session_factory))
    with session_factory() as db, db.begin():
        assert product_api.revoke_api_key(db, "0123456789abcdef", actor=CLI, now=T0) is False
        with pytest.raises(ApiKeyError, match="16 hexadecimal digits"):
            product_api.revoke_api_key(db, "ibk_0123'; --", actor=CLI, now=T0)
    assert len(events(session_factory)) == before


def test_the_listing_shows_every_key_oldest_first_and_never_a_secret(session_factory):
    first_id, first_key = new_key(session_factory, "acme-web", now=T0)
    second_id, second_key = new_key(session_factory, "acme-admin", now=T0 + SECOND)
    with session_factory() as db, db.begin():
        product_api.revoke_api_key(db, first_id, actor=CLI, now=T0 + 2 * SECOND)
    with session_factory() as db:
        listing = product_api.list_api_keys(db)
    assert [(k.key_id, k.product, k.active) for k in listing] == [(first_id, "acme-web", False), (second_id, "acme-admin", True)]
    assert listing[1].display_id == f"ibk_{second_id}"
    assert first_key not in repr(listing) and second_key not in repr(listing)


# --- authentication --------------------------------------------------------------------


def test_the_bearer_scheme_is_case_insensitive(ctx, session_factory):
    key_id, plaintext = new_key(session_factory)
    assert authenticate(ctx, f"bearer {plaintext}") == ApiPrincipal(key_id=key_id, product="acme-web")
    assert authenticate(ctx, f"BEARER  {plaintext}") == ApiPrincipal(key_id=key_id, product="acme-web")


@pytest.mark.parametrize(
    "header, problem, reads_key_id",
    [
        pytest.param(lambda k: None, AuthProblem.MISSING, False, id="no-header"),
        pytest.param(lambda k: "", AuthProblem.MISSING, False, id="empty-header"),
        pytest.param(lambda k: f"Basic {k}", AuthProblem.MALFORMED, False, id="basic-scheme"),
        pytest.param(lambda k: k, AuthProblem.MALFORMED, False, id="no-scheme"),
        pytest.param(lambda k: f"Bearer {k[:-1]}", AuthProblem.MALFORMED, True, id="truncated"),
        pytest.param(lambda k: f"Bearer {k}x", AuthProblem.MALFORMED, True, id="one-character-too-many"),
        pytest.param(lambda k: f"Bearer {k} {k}", AuthProblem.MALFORMED, False, id="two-credentials"),
        pytest.param(lambda k: "Bearer " + "A" * 5000, AuthProblem.MALFORMED, False, id="huge"),
        pytest.param(lambda k: f"Bearer {k[:-4]}abcd" if not k.endswith("abcd") else f"Bearer {k[:-4]}wxyz", AuthProblem.WRONG_SECRET, True, id="wrong-secret"),
        pytest.param(lambda k: f"Bearer ibk_ffffffffffffffff_{k[-43:]}", AuthProblem.UNKNOWN_KEY, True, id="unknown-key-id"),
    ],
)
def test_every_refused_credential_is_audited_without_its_secret(ctx, session_factory, header, problem, reads_key_id):
    key_id, plaintext = new_key(session_factory)
    secret = plaintext[-43:]
    presented = header(plaintext)
    before = len(events(session_factory))

    refused = authenticate(ctx, presented)

    assert refused == AuthRefused(problem)
    assert refused.code == ("missing_api_key" if problem is AuthProblem.MISSING else "invalid_api_key")
    (event,) = events(session_factory)[before:]
    details = json.loads(event.details)
    assert event.type == "api.refused" and details["cause"] == problem.value
    assert details["endpoint"] == "product_api.session_status"
    expected_id = "ffffffffffffffff" if problem is AuthProblem.UNKNOWN_KEY else key_id
    assert details.get("key_id") == (expected_id if reads_key_id else None)
    assert secret[:12] not in event.details and "A" * 40 not in event.details


def test_refusals_beyond_the_bound_are_counted_not_written(ctx, session_factory):
    refusals = RefusalAuditor(ctx, RefusalThrottle(per_client=2, window=timedelta(minutes=1)), timer=False)
    before = len(events(session_factory))
    for n in range(5):
        assert authenticate(ctx, "Bearer nonsense", refusals=refusals, now=T0 + n * SECOND) == AuthRefused(AuthProblem.MALFORMED)
    assert len(events(session_factory)) == before + 2
    # Another cause has its own bound.
    authenticate(ctx, None, refusals=refusals, now=T0 + 5 * SECOND)
    assert len(events(session_factory)) == before + 3

    authenticate(ctx, "Bearer nonsense", refusals=refusals, now=T0 + timedelta(minutes=1, seconds=1))
    summary, refusal = events(session_factory)[-2:]
    assert summary.type == SUMMARY_EVENT and json.loads(summary.details)["by_cause"] == {"api.refused:malformed": 3}
    assert refusal.type == "api.refused"


# --- validating actions ----------------------------------------------------------------


def upload(document=None, *, raw: bytes | None = None, content_type: str | None = "application/json", declared: int | None = None) -> ActionUpload:
    body = raw if raw is not None else json.dumps(document).encode()
    return ActionUpload(content_type=content_type, body=body, declared_length=declared)


GOOD = {"action": "invoice.update", "target": "invoice/42", "at": "2030-03-04T10:05:00Z", "details": {"field": "amount", "cents": 1250}}


def test_a_valid_action_is_parsed_with_its_time_in_utc():
    report = product_api.parse_action(upload({**GOOD, "at": "2030-03-04t11:05:00.1234567+01:00"}))
    assert report.action == "invoice.update" and report.target == "invoice/42"
    assert report.at == datetime(2030, 3, 4, 10, 5, 0, 123456, tzinfo=timezone.utc)
    assert report.details == {"field": "amount", "cents": 1250}
    without_details = dict(GOOD)
    del without_details["details"]
    assert product_api.parse_action(upload(without_details)).details == {}


def test_values_at_their_limits_are_accepted():
    details = {
        "big": 2**53 - 1,
        "small": -(2**53 - 1),
        "flag": False,
        "none": None,
        "empty": "",
        "text": "x" * 1024,
        "list": list(range(32)),
        "deep": {"a": {"b": {"c": 1}}},
    }
    report = product_api.parse_action(upload({**GOOD, "action": "a" * 64, "target": "t" * 256, "details": details}))
    assert report.details == details


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_refused():
    body = json.dumps({**GOOD, "details": {f"k{n}": "x" * 1000 for n in range(16)}}).encode()
    assert len(body) < MAX_ACTION_BYTES
    exact = body + b" " * (MAX_ACTION_BYTES - len(body))  # JSON allows trailing white space
    assert product_api.parse_action(upload(raw=exact)).action == "invoice.update"
    with pytest.raises(Exception, match=f"at most {MAX_ACTION_BYTES} bytes") as refused:
        product_api.parse_action(upload(raw=exact + b" "))
    assert refused.value.problem is ActionProblem.TOO_LARGE


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "make, problem, message",
    [
        (lambda: upload(GOOD, declared=MAX_ACTION_BYTES + 1, raw=b""), ActionProblem.TOO_LARGE, "at most"),
        (lambda: upload(GOOD, content_type=None), ActionProblem.UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        (lambda: upload(GOOD, content_type="text/plain"), ActionProblem.UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        (lambda: upload(GOOD, content_type="application/json; charset=latin-1"), ActionProblem.UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        (lambda: upload(raw=b"{"), ActionProblem.INVALID_JSON, "not valid JSON"),
        (lambda: upload(raw=b"\xff\xfe{}"), ActionProblem.INVALID_JSON, "not UTF-8"),
        (lambda: upload(raw=b'{"action": NaN}'), ActionProblem.INVALID_JSON, "NaN is not JSON"),
        (lambda: upload(raw=b'{"action": "a", "action": "b"}'), ActionProblem.INVALID_JSON, "duplicate key"),
        (lambda: upload(raw=b"[" * 5000 + b"]" * 5000), ActionProblem.INVALID_JSON, "not valid JSON"),
        (lambda: upload([GOOD]), ActionProblem.INVALID_BODY, "must be a JSON object"),
        (lambda: upload({**GOOD, "extra": 1}), ActionProblem.INVALID_BODY, "Unknown fields"),
        (lambda: upload({k: v for k, v in GOOD.items() if k != "action"}), ActionProblem.INVALID_BODY, "`action` is required"),
        (lambda: upload({k: v for k, v in GOOD.items() if k != "target"}), ActionProblem.INVALID_BODY, "`target` is required"),
        (lambda: upload({k: v for k, v in GOOD.items() if k != "at"}), ActionProblem.INVALID_BODY, "`at` is required"),
        (lambda: upload({**GOOD, "action": 7}), ActionProblem.INVALID_BODY, "`action` must be a string"),
        (lambda: upload({**GOOD, "action": ""}), ActionProblem.INVALID_BODY, "`action` must not be empty"),
        (lambda: upload({**GOOD, "action": "a" * 65}), ActionProblem.INVALID_BODY, "at most 64"),
        (lambda: upload({**GOOD, "action": "drop table"}), ActionProblem.INVALID_BODY, "`action` must be 1-64"),
        (lambda: upload({**GOOD, "target": "t" * 257}), ActionProblem.INVALID_BODY, "at most 256"),
        (lambda: upload({**GOOD, "target": "line\nbreak"}), ActionProblem.INVALID_BODY, "control characters"),
        (lambda: upload({**GOOD, "target": "nul\u0000"}), ActionProblem.INVALID_BODY, "control characters"),
        (lambda: upload(raw=json.dumps(GOOD).replace("invoice/42", "\\ud800").encode()), ActionProblem.INVALID_BODY, "unpaired surrogates"),
        (lambda: upload({**GOOD, "at": "2030-03-04T10:05:00"}), ActionProblem.INVALID_BODY, "RFC 3339"),
        (lambda: upload({**GOOD, "at": "2030-03-04"}), ActionProblem.INVALID_BODY, "RFC 3339"),
        (lambda: upload({**GOOD, "at": 1893751500}), ActionProblem.INVALID_BODY, "RFC 3339"),
        (lambda: upload({**GOOD, "at": "2030-02-30T10:05:00Z"}), ActionProblem.INVALID_BODY, "not a real date"),
        (lambda: upload({**GOOD, "details": ["a"]}), ActionProblem.INVALID_BODY, "`details` must be a JSON object"),
        (lambda: upload({**GOOD, "details": {"amount": 12.5}}), ActionProblem.INVALID_BODY, "`details.amount` is a number with a fraction"),
        (lambda: upload(raw=json.dumps(GOOD).replace("1250", "1e3").encode()), ActionProblem.INVALID_BODY, "`details.cents` is a number"),
        (lambda: upload({**GOOD, "details": {"a": [{"b": 1.0}]}}), ActionProblem.INVALID_BODY, r"`details.a\[0\].b` is a number"),
        (lambda: upload({**GOOD, "details": {"n": 2**53}}), ActionProblem.INVALID_BODY, "beyond"),
        (lambda: upload({**GOOD, "details": {f"k{n}": n for n in range(33)}}), ActionProblem.INVALID_BODY, "at most 32 keys"),
        (lambda: upload({**GOOD, "details": {"l": list(range(33))}}), ActionProblem.INVALID_BODY, "at most 32 items"),
        (lambda: upload({**GOOD, "details": nested(5)}), ActionProblem.INVALID_BODY, "nest at most 4"),
        (lambda: upload({**GOOD, "details": {f"k{n}": list(range(30)) for n in range(9)}}), ActionProblem.INVALID_BODY, "at most 256 values"),
        (lambda: upload({**GOOD, "details": {"k" * 65: 1}}), ActionProblem.INVALID_BODY, "has a key"),
        (lambda: upload({**GOOD, "details": {"": 1}}), ActionProblem.INVALID_BODY, "has a key"),
        (lambda: upload({**GOOD, "details": {"note": "x" * 1025}}), ActionProblem.INVALID_BODY, "at most 1024"),
        (lambda: upload({**GOOD, "details": {"note": "a\u0000b"}}), ActionProblem.INVALID_BODY, "control characters"),
    ],
)
def test_invalid_actions_are_refused_with_a_message_naming_the_field(make, problem, message):
    with pytest.raises(Exception, match=message) as refused:
        product_api.parse_action(make())
    assert refused.value.problem is problem


# --- recording actions -----------------------------------------------------------------

PRINCIPAL = ApiPrincipal(key_id="0123456789abcdef", product="acme-web")


@pytest.fixture
def live_session(ctx, session_factory, tmp_path):
    """A session redeemed at T0 for 30 minutes by UAGENT1 (role support), launched into
    PRINCIPAL's product."""
    ctx.policy = ctx.policy.model_copy(update={"product": ProductConfig(name=PRINCIPAL.product)})
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = domain_requests.submit_request(ctx, AgentIdentity("UAGENT1"), form, now=T0 - SECOND)
    assert isinstance(granted, domain_requests.Granted), granted
    redemption = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1], now=T0)
    assert isinstance(redemption, links.Redemption)
    return redemption.session


def action_at(at: datetime) -> ActionUpload:
    return upload({**GOOD, "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})


def test_an_action_is_recorded_in_the_session_as_its_agent(ctx, session_factory, live_session):
    result = product_api.record_action(ctx, PRINCIPAL, live_session.id, action_at(T0 + timedelta(minutes=5)), now=T0 + timedelta(minutes=5, seconds=2))

    assert isinstance(result, ActionRecorded)
    event = events(session_factory)[-1]
    assert (event.seq, event.type, event.session_id) == (result.seq, "action.recorded", live_session.id)
    assert (event.actor_slack_id, event.actor_email, event.actor_role) == ("UAGENT1", "agent1@corp.example", "support")
    assert (event.account, revealed(session_factory, event)[0], event.request_id) == ("acme", "u-bob", live_session.request.id)
    assert json.loads(event.details) == {
        "product": "acme-web",
        "key_id": "0123456789abcdef",
        "action": "invoice.update",
        "target": "invoice/42",
        "at": "2030-03-04T10:05:00.000000Z",
        "details": {"field": "amount", "cents": 1250},
        "session_scope": "read_only",
        "session_status": "live",
    }
    with session_factory() as db:
        assert verify_chain(db)[1] is None


GRACE = product_api.ACTION_GRACE


@pytest.mark.parametrize(
    "at_offset, now_offset, outcome",
    [
        pytest.param(timedelta(0), timedelta(seconds=1), None, id="at-the-start"),
        pytest.param(-timedelta(microseconds=1), timedelta(seconds=1), ActionProblem.BEFORE_SESSION, id="before-the-start"),
        pytest.param(timedelta(minutes=30) + GRACE, timedelta(minutes=31), None, id="end-plus-grace"),
        pytest.param(timedelta(minutes=30) + GRACE + SECOND, timedelta(minutes=32), ActionProblem.AFTER_SESSION, id="after-expiry-and-grace"),
        pytest.param(timedelta(minutes=5) + GRACE + SECOND, timedelta(minutes=5), ActionProblem.IN_FUTURE, id="ahead-of-our-clock"),
    ],
)
def test_actions_must_fall_within_the_session(ctx, session_factory, live_session, at_offset, now_offset, outcome):
    result = product_api.record_action(ctx, PRINCIPAL, live_session.id, action_at(T0 + at_offset), now=T0 + now_offset)
    if outcome is None:
        assert isinstance(result, ActionRecorded)
        return
    assert isinstance(result, ActionRefused) and result.problem is outcome
    event = events(session_factory)[-1]
    details = json.loads(event.details)
    assert (event.type, event.session_id, event.account, event.actor_role) == ("action.refused", live_session.id, "acme", "product")
    assert details["cause"] == outcome.value and details["action"] == "invoice.update" and details["product"] == "acme-web"


def test_an_ended_session_accepts_late_reports_within_the_grace_only(ctx, session_factory, live_session):
    ended_at = T0 + timedelta(minutes=10)
    sessions.end_session(ctx, live_session.id, actor_slack_id="UAGENT1", now=ended_at)
    later = ended_at + timedelta(minutes=5)  # the product reports late, e.g. after a retry

    inside = product_api.record_action(ctx, PRINCIPAL, live_session.id, action_at(ended_at + GRACE), now=later)
    outside = product_api.record_action(ctx, PRINCIPAL, live_session.id, action_at(ended_at + GRACE + SECOND), now=later)

    assert isinstance(inside, ActionRecorded)
    assert json.loads(events(session_factory, "action.recorded")[-1].details)["session_status"] == "ended"
    assert isinstance(outside, ActionRefused) and outside.problem is ActionProblem.AFTER_SESSION
    assert "ended at 2030-03-04T10:10:00.000000Z" in outside.message


def test_an_unknown_session_is_refused_and_audited(ctx, session_factory, live_session):
    unknown = "00000000-0000-4000-8000-000000000000"
    for sid in (unknown, "not-a-session\u0000", "x" * 500):
        result = product_api.record_action(ctx, PRINCIPAL, sid, action_at(T0), now=T0)
        assert isinstance(result, ActionRefused) and result.problem is ActionProblem.UNKNOWN_SESSION
    refused = events(session_factory, "action.refused")
    assert [e.session_id for e in refused] == [None, None, None]
    assert [json.loads(e.details).get("session_id") for e in refused] == [unknown, None, None]


def test_an_invalid_body_is_audited_against_its_session_without_the_body(ctx, session_factory, live_session):
    result = product_api.record_action(ctx, PRINCIPAL, live_session.id, upload({**GOOD, "details": {"secret-ish": 1.5}}), now=T0)
    assert isinstance(result, ActionRefused) and result.problem is ActionProblem.INVALID_BODY
    event = events(session_factory)[-1]
    details = json.loads(event.details)
    assert (event.type, event.session_id) == ("action.refused", live_session.id)
    assert details["cause"] == "invalid_body" and "action" not in details and "1.5" not in event.details
