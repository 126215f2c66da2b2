"""The product API over HTTP (docs/product-api.md): a product's key on every
request, session status decided at request time, write actions appended to the audit log,
and every refusal a JSON error that is audited."""
from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from bot.db.models import ImpersonationSession, RequestState
from bot.domain import links, outbox, product_api, sessions
from bot.domain.audit import Actor, format_time, verify_chain
from bot.domain.clock import utcnow
from bot.domain.product_api import MAX_ACTION_BYTES
from bot.domain.refusals import SUMMARY_EVENT, RefusalThrottle
from bot.web.app import REFUSALS_EXTENSION
from tests.web.conftest import audit_events
from tests.personal_values import revealed

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)
CLI = Actor(slack_id="USECURITY1", email="sec@corp.example", role="cli")


@pytest.fixture
def api_key(session_factory) -> str:
    with session_factory() as db, db.begin():
        return product_api.create_api_key(db, product="acme-web", actor=CLI).plaintext_key


@pytest.fixture
def auth(api_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def open_session(ctx, grant):
    """open_session(**form overrides) → the id of a session redeemed now."""

    def _open(**overrides) -> str:
        redemption = links.redeem(ctx, grant(**overrides))
        assert isinstance(redemption, links.Redemption)
        return redemption.session.id

    return _open


def revoke_session(session_factory, session_id: str, *, now: datetime) -> None:
    # The close a revocation makes (bot/domain/revocation.py), without its power checks.
    with session_factory() as db, db.begin():
        session = db.get(ImpersonationSession, session_id)
        sessions.close_session(db, session, target=RequestState.REVOKED, actor=Actor(slack_id="USECURITY1", role="security"), now=now, details={})


def action(at: datetime, **overrides) -> dict:
    return {"action": "invoice.update", "target": "invoice/42", "at": format_time(at), "details": {"cents": 1250}, **overrides}


def post_action(client, sid: str, auth: dict, body, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    kwargs.setdefault("content_type", "application/json")
    return client.post(f"/api/v1/sessions/{sid}/actions", data=data, headers=auth, **kwargs)


class UnreadableBody(io.BytesIO):
    """A request body that fails the test if anything reads it (it can still be measured)."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the body was read")

    read = read1 = readinto = readline = readlines = _refuse


def new_events(session_factory, before: int):
    return audit_events(session_factory)[before:]


# --- session status ------------------------------------------------------------------------


def test_a_live_session_reports_its_end_and_polling_writes_nothing(client, auth, open_session, session_factory):
    with freeze_time(T0):
        sid = open_session(duration_minutes=30)
        before = len(audit_events(session_factory))
        response = client.get(f"/api/v1/sessions/{sid}", headers=auth)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "session_id": sid,
        "status": "live",
        "account": "acme",
        "customer_user": "u-bob",
        "scope": "read_only",
        "started_at": format_time(T0),
        "ends_at": format_time(T0 + timedelta(minutes=30)),
        "ended_at": None,
    }
    assert len(audit_events(session_factory)) == before


def test_a_session_is_expired_one_second_after_expires_at_though_no_job_ran(client, auth, open_session):
    with freeze_time(T0) as clock:
        sid = open_session(duration_minutes=15)
        expires_at = T0 + timedelta(minutes=15)
        clock.move_to(expires_at - SECOND)
        live = client.get(f"/api/v1/sessions/{sid}", headers=auth).get_json()
        clock.move_to(expires_at + SECOND)
        expired = client.get(f"/api/v1/sessions/{sid}", headers=auth).get_json()

    assert live["status"] == "live" and live["ended_at"] is None
    assert expired["status"] == "expired"
    assert expired["ended_at"] == expired["ends_at"] == format_time(expires_at)


def test_an_ended_session_reports_when_it_ended(ctx, client, auth, open_session):
    with freeze_time(T0) as clock:
        sid = open_session()
        clock.move_to(T0 + timedelta(minutes=7))
        sessions.end_session(ctx, sid, actor_slack_id="UAGENT1")
        body = client.get(f"/api/v1/sessions/{sid}", headers=auth).get_json()
    assert (body["status"], body["ended_at"], body["ends_at"]) == ("ended", format_time(T0 + timedelta(minutes=7)), format_time(T0 + timedelta(minutes=7)))


def test_a_revoked_session_reports_revoked(client, auth, open_session, session_factory):
    with freeze_time(T0):
        sid = open_session()
        revoke_session(session_factory, sid, now=T0 + timedelta(minutes=2))
        body = client.get(f"/api/v1/sessions/{sid}", headers=auth).get_json()
    assert (body["status"], body["ended_at"]) == ("revoked", format_time(T0 + timedelta(minutes=2)))


@pytest.mark.parametrize("sid", ["00000000-0000-4000-8000-000000000000", "not-a-session", "%00", "x" * 300])
def test_an_unknown_session_is_a_json_404(client, auth, directory, sid):
    response = client.get(f"/api/v1/sessions/{sid}", headers=auth)
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown_session", "message": "There is no session with this id."}


# --- authentication ------------------------------------------------------------------------


def altered(key: str) -> str:
    """The same key id with a different last character of the secret."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.fixture
def revoked_key(session_factory) -> str:
    with session_factory() as db, db.begin():
        key_id, plaintext = product_api.create_api_key(db, product="old-app", actor=CLI)
        product_api.revoke_api_key(db, key_id, actor=CLI)
    return plaintext


@pytest.mark.parametrize(
    "headers, code, challenge, cause",
    [
        pytest.param(lambda key, revoked: {}, "missing_api_key", 'Bearer realm="impersonation-bot"', "missing", id="no-key"),
        pytest.param(lambda key, revoked: {"Authorization": f"Basic {key}"}, "invalid_api_key", 'Bearer realm="impersonation-bot", error="invalid_token"', "malformed", id="basic"),
        pytest.param(lambda key, revoked: {"Authorization": f"Bearer {altered(key)}"}, "invalid_api_key", 'Bearer realm="impersonation-bot", error="invalid_token"', "wrong_secret", id="wrong-secret"),
        pytest.param(lambda key, revoked: {"Authorization": f"Bearer {revoked}"}, "revoked_api_key", 'Bearer realm="impersonation-bot", error="invalid_token"', "revoked", id="revoked"),
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_requests_without_a_valid_key_get_a_json_401_and_are_audited(
    client, api_key, revoked_key, open_session, session_factory, caplog, headers, code, challenge, cause, method
):
    sid = open_session()
    presented = headers(api_key, revoked_key)
    before = len(audit_events(session_factory))
    caplog.set_level(logging.DEBUG)

    if method == "get":
        response = client.get(f"/api/v1/sessions/{sid}", headers=presented)
    else:
        response = post_action(client, sid, presented, action(utcnow()))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.get_json()["error"] == code
    (event,) = new_events(session_factory, before)  # nothing recorded, only the refusal
    assert event.type == "api.refused" and json.loads(event.details)["cause"] == cause
    for secret in (api_key[-43:], revoked_key[-43:]):
        assert secret not in event.details and secret not in caplog.text and secret not in response.get_data(as_text=True)


def test_a_flood_of_bad_keys_writes_a_bounded_number_of_events(web_app, client, directory, session_factory):
    before = len(audit_events(session_factory))
    for _ in range(40):
        assert client.get("/api/v1/sessions/00000000-0000-4000-8000-000000000000", headers={"Authorization": "Bearer junk"}).status_code == 401
    assert len(new_events(session_factory, before)) == RefusalThrottle().per_client  # all from one address

    web_app.extensions[REFUSALS_EXTENSION].close()  # as a stopping worker does
    summary = new_events(session_factory, before)[-1]
    assert summary.type == SUMMARY_EVENT
    assert json.loads(summary.details)["by_cause"] == {"api.refused:malformed": 40 - RefusalThrottle().per_client}


def test_an_unauthenticated_post_is_refused_before_its_body_is_read(client, directory, session_factory):
    response = client.post(
        "/api/v1/sessions/00000000-0000-4000-8000-000000000000/actions",
        input_stream=UnreadableBody(),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(50 * 1024 * 1024)},
    )
    assert response.status_code == 401


# --- recording actions ---------------------------------------------------------------------


def test_an_action_is_recorded_with_the_session_as_its_impersonation_context(client, auth, open_session, session_factory):
    with freeze_time(T0) as clock:
        sid = open_session()
        clock.move_to(T0 + timedelta(minutes=3))
        response = post_action(client, sid, auth, action(T0 + timedelta(minutes=2, seconds=50)))

    assert response.status_code == 201
    body = response.get_json()
    event = audit_events(session_factory)[-1]
    assert body == {"seq": event.seq, "session_id": sid, "recorded_at": format_time(T0 + timedelta(minutes=3))}
    assert (event.type, event.session_id, event.account, revealed(session_factory, event)[0]) == ("action.recorded", sid, "acme", "u-bob")
    assert (event.actor_slack_id, event.actor_email, event.actor_role) == ("UAGENT1", "agent1@corp.example", "support")
    details = json.loads(event.details)
    assert (details["product"], details["action"], details["target"], details["details"]) == ("acme-web", "invoice.update", "invoice/42", {"cents": 1250})
    assert details["at"] == format_time(T0 + timedelta(minutes=2, seconds=50))


@pytest.mark.parametrize(
    "make, status, error",
    [
        pytest.param(lambda sid, now: ("00000000-0000-4000-8000-000000000000", action(now), {}), 404, "unknown_session", id="unknown-session"),
        pytest.param(lambda sid, now: (sid, action(T0 - SECOND), {}), 409, "before_session", id="before-start"),
        pytest.param(lambda sid, now: (sid, action(now + timedelta(minutes=5)), {}), 409, "in_future", id="ahead-of-our-clock"),
        pytest.param(lambda sid, now: (sid, "not json", {}), 400, "invalid_json", id="not-json"),
        pytest.param(lambda sid, now: (sid, action(now, details={"ratio": 0.5}), {}), 400, "invalid_body", id="float"),
        pytest.param(lambda sid, now: (sid, action(now, extra="x"), {}), 400, "invalid_body", id="unknown-field"),
        pytest.param(lambda sid, now: (sid, json.dumps(action(now)), {"content_type": "text/plain"}), 415, "unsupported_media_type", id="form-content-type"),
        pytest.param(lambda sid, now: (sid, "x" * (MAX_ACTION_BYTES + 1), {}), 413, "too_large", id="too-large"),
    ],
)
def test_each_refusal_is_a_clear_json_error_and_is_audited(client, auth, open_session, session_factory, make, status, error):
    with freeze_time(T0) as clock:
        sid = open_session()
        clock.move_to(T0 + timedelta(minutes=1))
        target, body, kwargs = make(sid, T0 + timedelta(minutes=1))
        before = len(audit_events(session_factory))
        response = post_action(client, target, auth, body, **kwargs)

    assert response.status_code == status
    answer = response.get_json()
    assert answer["error"] == error and answer["message"]
    (event,) = new_events(session_factory, before)
    details = json.loads(event.details)
    assert event.type == "action.refused" and details["cause"] == error and details["product"] == "acme-web"
    assert event.session_id == (None if error == "unknown_session" else sid)


def test_actions_after_a_revoked_session_plus_grace_are_refused(client, auth, open_session, session_factory):
    with freeze_time(T0) as clock:
        sid = open_session()
        revoked_at = T0 + timedelta(minutes=4)
        revoke_session(session_factory, sid, now=revoked_at)
        clock.move_to(revoked_at + timedelta(minutes=3))
        in_flight = post_action(client, sid, auth, action(revoked_at + product_api.ACTION_GRACE))
        too_late = post_action(client, sid, auth, action(revoked_at + product_api.ACTION_GRACE + SECOND))

    assert in_flight.status_code == 201
    assert too_late.status_code == 409 and too_late.get_json()["error"] == "after_session"
    assert "revoked at" in too_late.get_json()["message"]


def test_a_body_declared_too_large_is_refused_unread_and_audited(client, auth, open_session, session_factory):
    sid = open_session()

    before = len(audit_events(session_factory))
    response = client.post(
        f"/api/v1/sessions/{sid}/actions",
        input_stream=UnreadableBody(),
        headers=auth,
        content_type="application/json",
        # The test client would measure the (empty) stream; the declared length is the client's.
        environ_overrides={"CONTENT_LENGTH": str(2 * 1024 * 1024)},
    )
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    (event,) = new_events(session_factory, before)
    assert json.loads(event.details)["declared_length"] == 2 * 1024 * 1024


def test_the_api_answers_json_for_unknown_paths_and_methods(client, auth):
    missing = client.get("/api/v1/nothing-here", headers=auth)
    wrong_method = client.delete("/api/v1/sessions/00000000-0000-4000-8000-000000000000", headers=auth)
    assert (missing.status_code, missing.get_json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.get_json()["error"]) == (405, "method_not_allowed")
    assert "GET" in wrong_method.headers["Allow"]


def test_the_chain_still_verifies_after_recorded_and_refused_actions(client, auth, open_session, session_factory):
    sid = open_session()
    now = utcnow()
    assert post_action(client, sid, auth, action(now)).status_code == 201
    assert post_action(client, sid, auth, "{").status_code == 400
    assert client.get(f"/api/v1/sessions/{sid}", headers={"Authorization": "Bearer junk"}).status_code == 401
    types = [e.type for e in audit_events(session_factory)]
    assert {"action.recorded", "action.refused", "api.refused", "api_key.created"} <= set(types)
    with session_factory() as db:
        count, problem = verify_chain(db)
    assert problem is None and count == len(types)


def test_a_retry_with_the_same_idempotency_key_is_recorded_once(client, auth, open_session, session_factory):
    sid = open_session()
    body = action(utcnow())
    first = post_action(client, sid, {**auth, "Idempotency-Key": "7d1c2a40-1111-4000-8000-000000000001"}, body)
    before = len(audit_events(session_factory))
    again = post_action(client, sid, {**auth, "Idempotency-Key": "7d1c2a40-1111-4000-8000-000000000001"}, body)
    assert (first.status_code, again.status_code) == (201, 200) and again.get_json() == first.get_json()
    assert len(audit_events(session_factory)) == before  # nothing appended by the retry
    other = post_action(client, sid, {**auth, "Idempotency-Key": "7d1c2a40-1111-4000-8000-000000000002"}, body)
    assert other.status_code == 201 and other.get_json()["seq"] > first.get_json()["seq"]
    (recorded, *_) = [e for e in new_events(session_factory, before) if e.type == "action.recorded"]
    assert json.loads(recorded.details)["idempotency_key"] == "7d1c2a40-1111-4000-8000-000000000002"
    refused = post_action(client, sid, {**auth, "Idempotency-Key": "bad key with spaces"}, body)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_body"


def test_concurrent_copies_of_one_idempotency_key_record_one_action(web_app, auth, open_session, session_factory):
    import threading
    import urllib.request

    from werkzeug.serving import make_server

    sid = open_session()
    server = make_server("127.0.0.1", 0, web_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = json.dumps(action(utcnow())).encode()
    answers: list[int] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/api/v1/sessions/{sid}/actions", data=data, method="POST")
        for name, value in {**auth, "Content-Type": "application/json", "Idempotency-Key": "same-key-1"}.items():
            request.add_header(name, value)
        barrier.wait()
        with urllib.request.urlopen(request, timeout=30) as response:
            answers.append(response.status)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.shutdown()
    assert sorted(answers) == [200] * 7 + [201]
    recorded = [e for e in audit_events(session_factory) if e.type == "action.recorded" and e.session_id == sid]
    assert len(recorded) == 1


# --- ending a session from the product -----------------------------------------------------------


def test_end_ends_the_session_as_the_agent_would_from_slack(ctx, client, auth, open_session, session_factory, deliverer):
    sid = open_session()
    response = client.post(f"/api/v1/sessions/{sid}/end", headers=auth)
    assert response.status_code == 200
    assert deliverer.delivered == []  # handed over only once the answer has gone out
    response.close()
    assert response.get_json()["status"] == "ended"
    assert client.get(f"/api/v1/sessions/{sid}", headers=auth).get_json()["status"] == "ended"
    (ended,) = _events_of(session_factory, "session.ended")
    assert ended.session_id == sid and ended.actor_slack_id == "UAGENT1"
    assert json.loads(ended.details)["via"] == "product" and json.loads(ended.details)["product"] == "acme-web"
    # the same messages as the Slack "End session" button: the agent's DM and the feed are edited
    owed = {(r.kind, r.subject_id) for r in outbox.rows(ctx) if r.state == "pending"}
    request_id = ended.request_id
    assert {("agent", request_id), ("feed", request_id)} <= owed
    # ... and sent after the answer, as after the click
    assert deliverer.delivered == [(f"agent:{request_id}:UAGENT1", f"warning:{sid}:UAGENT1", f"feed:{request_id}:security")]


def test_ending_twice_is_answered_with_the_state_it_ended_in(client, auth, open_session, session_factory, deliverer):
    sid = open_session()
    client.post(f"/api/v1/sessions/{sid}/end", headers=auth).close()
    again = client.post(f"/api/v1/sessions/{sid}/end", headers=auth)
    again.close()
    assert again.status_code == 200 and again.get_json()["status"] == "ended"
    assert len(_events_of(session_factory, "session.ended")) == 1
    assert len(deliverer.delivered) == 1  # the second end owed nothing


def test_a_revoked_session_stays_revoked_when_the_product_ends_it(client, auth, open_session, session_factory):
    with freeze_time(T0):
        sid = open_session()
        revoke_session(session_factory, sid, now=T0 + timedelta(minutes=1))
        body = client.post(f"/api/v1/sessions/{sid}/end", headers=auth).get_json()
    assert body["status"] == "revoked"
    assert _events_of(session_factory, "session.ended") == []


def test_end_needs_the_key_and_another_products_key_cannot_end(ctx, client, auth, open_session, session_factory):
    sid = open_session()
    assert client.post(f"/api/v1/sessions/{sid}/end").status_code == 401
    with session_factory() as db, db.begin():
        other = product_api.create_api_key(db, product="other-app", actor=CLI).plaintext_key
    refused = client.post(f"/api/v1/sessions/{sid}/end", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 404 and refused.get_json()["error"] == "unknown_session"
    # (with a second product holding keys, an unbound session is neither's: docs/product-api.md)
    assert product_api.session_report(ctx, sid).status is sessions.SessionStatus.LIVE
    assert _events_of(session_factory, "session.ended") == []


def _events_of(session_factory, event_type: str):
    return [e for e in audit_events(session_factory) if e.type == event_type]
