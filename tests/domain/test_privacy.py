"""Personal data in the audit log (bot/domain/personal.py, bot/domain/privacy.py): values held
apart and referred to by a keyed hash, erasure by a role with the power (refusals audited),
exports showing [erased] afterwards while the chain still verifies, retention on a frozen
clock, and the justification code on requests."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select, update

from bot.db.models import AuditEvent, CustomerUser, ImpersonationRequest, PersonalValue, WebhookEvent
from bot.domain import personal, privacy, requests, sessions, webhooks
from bot.domain.audit import Actor, verify_chain
from bot.domain.exports import ExportFormat, access_export, events_export
from bot.domain.log_query import LogOptions, resolve
from bot.domain.personal import ERASED
from bot.domain.policy import RoleConfig
from bot.domain.requests import AgentIdentity, RequestForm
from bot.reports.exports import access_file
from tests.fakes.log_history import NOW, REASON, open_session
from tests.personal_values import revealed
from tests.slack.conftest import audit_events

CLI = Actor.system("cli")
DPO = "UDPO1"


@pytest.fixture
def dpo(ctx):
    """A data-protection role that may erase and does nothing else."""
    ctx.policy.roles["dpo"] = RoleConfig(members=[DPO], max_minutes=15, can_impersonate=False, can_erase_personal_data=True)
    return ctx


@pytest.fixture
def ended(ctx, tmp_path):
    """u-bob's session on acme (ended) and u-carol's on globex (ended), two days before NOW."""
    from tests.fakes.directory_data import load_directory

    load_directory(ctx.sessions, tmp_path)
    ids = {}
    for account, user in (("acme", "u-bob"), ("globex", "u-carol")):
        sid = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=2), account=account, user=user, reason=f"{REASON} for {user}")
        sessions.end_session(ctx, sid, actor_slack_id="UAGENT1", now=NOW - timedelta(days=2) + timedelta(minutes=10))
        ids[user] = sid
    return ids


def _export(ctx, fmt, account="acme"):
    query = resolve(LogOptions(account), now=NOW)
    return b"".join(access_file(access_export(ctx.sessions, query, fmt, actor=CLI, via="cli", now=NOW)).chunks).decode()


def _jsonl(ctx):
    return [json.loads(line) for line in "".join(events_export(ctx.sessions, actor=CLI, now=NOW).lines).splitlines()]


def test_events_hold_references_not_the_customer_users_personal_values(ctx, ended, session_factory):
    created = [e for e in audit_events(session_factory, "request.created")]
    assert len(created) == 2
    for event in created:
        assert personal.is_ref(event.customer_user)
        assert "u-bob" not in event.details and REASON not in event.details
    users = {revealed(session_factory, e)[0]: revealed(session_factory, e)[1]["reason"] for e in created}
    assert users == {"u-bob": f"{REASON} for u-bob", "u-carol": f"{REASON} for u-carol"}
    # each reference is the keyed hash of its value under the row's own key
    with session_factory() as db:
        rows = db.execute(select(PersonalValue)).scalars().all()
    assert rows and all(personal.check(r.ref, r.key, r.value) for r in rows)
    assert len({r.key for r in rows}) == len(rows)  # one random key per value


def test_erasing_a_customer_user_shows_erased_in_every_export_and_the_chain_still_verifies(dpo, ended, session_factory):
    with session_factory() as db:
        checked_before, problem = verify_chain(db)
    assert problem is None
    before = {e.seq: e.hash for e in audit_events(session_factory)}

    result = privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)

    assert isinstance(result, privacy.Erased) and result.in_directory and result.requests == 1 and result.values > 0
    # nothing chained changed, and the chain (with the erasure's own event) verifies
    assert {e.seq: e.hash for e in audit_events(session_factory) if e.seq in before} == before
    with session_factory() as db:
        checked, problem = verify_chain(db)
        assert personal.altered(db) == []
    assert problem is None and checked == checked_before + 1

    # the session exports: everything about u-bob reads [erased]
    rows = list(csv.DictReader(io.StringIO(_export(dpo, ExportFormat.CSV))))
    (row,) = [r for r in rows if r["session_id"] == ended["u-bob"]]
    assert (row["customer_user"], row["customer_user_name"], row["customer_user_email"], row["reason"]) == (ERASED,) * 4
    as_json = _export(dpo, ExportFormat.JSON)
    for text in (as_json, _export(dpo, ExportFormat.HTML), _export(dpo, ExportFormat.MARKDOWN).replace("\\", "")):
        assert "Bob Builder" not in text and "bob@acme.example" not in text and "for u-bob" not in text
        assert ERASED in text
    # the raw events: every reference about u-bob resolves to [erased]; u-carol's still resolve
    shown = {}
    for event in _jsonl(dpo):
        shown.update(event.get("personal", {}))
        assert "u-bob" not in json.dumps(event) and "Bob Builder" not in json.dumps(event)
    assert f"{REASON} for u-carol" in shown.values() and "u-carol" in shown.values()
    assert ERASED in shown.values()
    # the other customer user is untouched
    rows = list(csv.DictReader(io.StringIO(_export(dpo, ExportFormat.CSV, account="globex"))))
    assert [(r["customer_user"], r["customer_user_name"], r["reason"]) for r in rows] == [("u-carol", "Carol", f"{REASON} for u-carol")]


def test_the_erasure_is_audited_with_a_keyed_pseudonym_never_the_clear_id(dpo, ended, session_factory):
    result = privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    (event,) = audit_events(session_factory, "privacy.erased")
    details = json.loads(event.details)
    assert (event.actor_slack_id, event.actor_role, event.account, event.customer_user) == (DPO, "dpo", "acme", None)
    assert details["subject"] == result.subject == privacy.pseudonym(dpo.signing_key, account="acme", customer_user="u-bob")
    assert details["subject"] != privacy.pseudonym(dpo.signing_key, account="acme", customer_user="u-carol")
    assert details["key_id"] == dpo.signing_key.kid
    assert "u-bob" not in event.details


def test_after_erasure_a_directory_import_that_still_lists_the_person_makes_a_new_row(dpo, ended, session_factory, tmp_path):
    from tests.fakes.directory_data import load_directory

    privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    (tmp_path / "again").mkdir()
    load_directory(session_factory, tmp_path / "again")
    with session_factory() as db:
        rows = db.execute(select(CustomerUser.external_id, CustomerUser.name, CustomerUser.erased_at).where(CustomerUser.email.in_(["bob@acme.example", ERASED]))).all()
    assert sorted((r.name, r.erased_at is None) for r in rows) == sorted([(ERASED, False), ("Bob Builder", True)])
    # the old session still reads [erased]: the new row is new data, not the old values back
    rows = list(csv.DictReader(io.StringIO(_export(dpo, ExportFormat.CSV))))
    assert [r["customer_user_name"] for r in rows if r["session_id"] == ended["u-bob"]] == [ERASED]


@pytest.mark.parametrize("who", ["UAGENT1", "USECURITY1", "UNOBODY1"])
def test_erasure_is_refused_without_the_power_and_the_refusal_is_audited(dpo, ended, session_factory, who):
    result = privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=who, now=NOW)

    assert isinstance(result, privacy.EraseRefused) and result.cause == "no_power"
    (event,) = audit_events(session_factory, "privacy.erase_refused")
    assert event.actor_slack_id == who and json.loads(event.details) == {
        "subject": privacy.pseudonym(dpo.signing_key, account="acme", customer_user="u-bob"), "cause": "no_power",
    }
    assert audit_events(session_factory, "privacy.erased") == []
    rows = list(csv.DictReader(io.StringIO(_export(dpo, ExportFormat.CSV))))
    assert [(r["customer_user"], r["customer_user_name"]) for r in rows] == [("u-bob", "Bob Builder")]


def test_erasure_waits_for_an_open_access_to_close(dpo, ended, session_factory):
    with freeze_time(NOW):
        granted = requests.submit_request(
            dpo, AgentIdentity("UAGENT1"),
            RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only"),
        )
    assert isinstance(granted, requests.Granted)
    result = privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    assert isinstance(result, privacy.EraseRefused) and result.cause == "access_open"
    assert json.loads(audit_events(session_factory, "privacy.erase_refused")[0].details)["cause"] == "access_open"
    assert revealed(session_factory, audit_events(session_factory, "request.created")[-1])[0] == "u-bob"


def test_a_refused_request_names_the_typed_user_only_by_reference_and_is_erased_with_them(dpo, ended, session_factory):
    blocked = requests.submit_request(
        dpo, AgentIdentity("UAGENT1"),
        RequestForm(account="acme", user="u-bob", reason="short", ticket="SUP-1", duration_minutes=30, scope="read_only"),
    )
    assert isinstance(blocked, requests.Blocked)
    (event,) = audit_events(session_factory, "request.blocked")
    assert revealed(session_factory, event)[1]["user"] == "u-bob" and "u-bob" not in event.details
    privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    customer_user, details = revealed(session_factory, event)
    assert (customer_user, details["user"], details["reason"]) == (ERASED, ERASED, ERASED)


def test_a_value_changed_behind_the_logs_back_is_detected_and_not_shown(ctx, ended, session_factory):
    with session_factory() as db, db.begin():
        ref = db.execute(select(PersonalValue.ref).where(PersonalValue.value == f"{REASON} for u-bob")).scalar_one()
        db.execute(update(PersonalValue).where(PersonalValue.ref == ref).values(value="a different reason"))
    with session_factory() as db:
        assert personal.altered(db) == [ref]
        assert personal.resolve(db, [ref]) == {ref: ERASED}


# --- retention ----------------------------------------------------------------------------------


def _with_retention(ctx, days):
    ctx.policy = ctx.policy.model_copy(update={"privacy": ctx.policy.privacy.model_copy(update={"personal_data_retention_days": days})})
    return ctx


def test_retention_erases_values_older_than_the_period_on_a_frozen_clock(ctx, ended, session_factory, tmp_path):
    _with_retention(ctx, 30)
    recent = open_session(ctx, "UAGENT1", at=NOW - timedelta(days=1), account="globex", user="u-carol", reason="a later reason for carol")
    sessions.end_session(ctx, recent, actor_slack_id="UAGENT1", now=NOW - timedelta(days=1) + timedelta(minutes=5))

    with freeze_time(NOW + timedelta(days=28)):  # the first sessions are 30 days old: not yet past
        assert privacy.erase_expired(ctx) == privacy.Expired(0, 0)
    assert audit_events(session_factory, "privacy.retention_applied") == []
    with freeze_time(NOW + timedelta(days=28, minutes=1)):
        done = privacy.erase_expired(ctx)
    assert done.values > 0 and done.requests == 2

    created = {e.request_id: revealed(session_factory, e) for e in audit_events(session_factory, "request.created")}
    with session_factory() as db:
        reasons = dict(db.execute(select(ImpersonationRequest.id, ImpersonationRequest.reason)).all())
    assert sorted(reasons.values()) == sorted([ERASED, ERASED, "a later reason for carol"])
    assert sorted(details["reason"] for _, details in created.values()) == sorted([ERASED, ERASED, "a later reason for carol"])
    (event,) = audit_events(session_factory, "privacy.retention_applied")
    assert json.loads(event.details)["days"] == 30
    with session_factory() as db:
        assert verify_chain(db)[1] is None
    with freeze_time(NOW + timedelta(days=28, minutes=2)):  # nothing more to do: no second event
        assert privacy.erase_expired(ctx) == privacy.Expired(0, 0)
    assert len(audit_events(session_factory, "privacy.retention_applied")) == 1


def test_no_retention_period_keeps_everything(ctx, ended, session_factory):
    _with_retention(ctx, 0)
    with freeze_time(NOW + timedelta(days=3650)):
        assert privacy.erase_expired(ctx) == privacy.Expired(0, 0)
    with session_factory() as db:
        assert db.execute(select(func.count()).select_from(PersonalValue)).scalar_one() > 0


# --- the justification code ----------------------------------------------------------------------


def _with_justifications(ctx):
    ctx.policy = ctx.policy.model_copy(
        update={"privacy": ctx.policy.privacy.model_copy(update={"justifications": {"contract": "Support the customer asked for", "incident": "Incident"}})}
    )
    return ctx


@pytest.mark.parametrize("given", [None, "", "because", "Contract"])
def test_a_justification_is_required_from_the_configured_list(ctx, ended, session_factory, given):
    _with_justifications(ctx)
    form = RequestForm(account="globex", user="u-carol", reason="customer ticket about billing", ticket="SUP-9", duration_minutes=30, scope="read_only", justification=given)
    result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, requests.Blocked) and result.cause.value == "justification_required"
    assert json.loads(audit_events(session_factory, "request.blocked")[-1].details)["cause"] == "justification_required"
    assert requests.modal_options(ctx, "UAGENT1").justifications == (("contract", "Support the customer asked for"), ("incident", "Incident"))


def test_the_chosen_justification_is_stored_audited_and_exported(ctx, ended, session_factory):
    _with_justifications(ctx)
    form = RequestForm(account="globex", user="u-carol", reason="customer ticket about billing", ticket="SUP-9", duration_minutes=30, scope="read_only", justification="incident")
    with freeze_time(NOW - timedelta(hours=1)):
        result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, requests.Granted) and result.request.justification == "incident"
    assert json.loads(audit_events(session_factory, "request.created")[-1].details)["justification"] == "incident"
    from bot.domain import links

    links.redeem(ctx, result.link.url.rsplit("/", 1)[1], now=NOW - timedelta(minutes=59))
    rows = list(csv.DictReader(io.StringIO(_export(ctx, ExportFormat.CSV, account="globex"))))
    assert [r["justification"] for r in rows] == ["incident", ""]  # newest first; the older one had none
    assert json.loads(_export(ctx, ExportFormat.JSON, account="globex"))["sessions"][0]["justification"] == "incident"
    assert "Justification: incident" in _export(ctx, ExportFormat.HTML, account="globex")
    assert "justification: incident" in _export(ctx, ExportFormat.MARKDOWN, account="globex")


def test_a_typed_user_id_with_no_account_is_erased_with_the_person(dpo, ended, session_factory):
    blocked = requests.submit_request(
        dpo, AgentIdentity("UAGENT1"),
        RequestForm(account=None, user="u-bob", reason="Bob cannot log in", ticket="SUP-1", duration_minutes=30, scope="read_only"),
    )
    assert isinstance(blocked, requests.Blocked)
    (event,) = audit_events(session_factory, "request.blocked")
    assert revealed(session_factory, event)[1]["user"] == "u-bob"
    privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    assert revealed(session_factory, event)[1]["user"] == ERASED


def test_the_impersonation_log_answer_shows_erased_after_erasure(dpo, ended):
    from bot.domain import log_query
    from bot.slack.blocks.log import PAGE_SIZE, log_answer

    def answer() -> str:
        page = log_query.look_up(dpo, "USECURITY1", log_query.LogOptions("acme"), text="account:acme", page_size=PAGE_SIZE, now=NOW)
        assert isinstance(page, log_query.LogPage)
        return json.dumps(log_answer(page)[1])

    assert "Bob Builder" in answer()
    privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    shown = answer()
    assert "Bob Builder" not in shown and "bob@acme.example" not in shown and "for u-bob" not in shown
    assert ERASED in shown


def _notify(ctx, user: str, *, at) -> None:
    with ctx.sessions() as db, db.begin():
        webhooks.raise_event(
            db, webhooks.EventType.SESSION_STARTED, account="acme",
            data={"session_id": f"s-{user}", "account": "acme", "customer_user": user, "reason": f"{REASON} for {user}", "ticket": "SUP-1"},
            now=at,
        )


def _bodies(session_factory) -> dict[str, dict]:
    with session_factory() as db:
        return {json.loads(b)["data"]["session_id"]: json.loads(b)["data"] for b in db.execute(select(WebhookEvent.body)).scalars()}


def test_erasure_and_retention_reach_the_notification_webhooks_still_stored(dpo, ended, session_factory):
    webhooks.subscribe(session_factory, url="https://hooks.example.com/x", actor=CLI)
    _notify(dpo, "u-bob", at=NOW - timedelta(days=1))
    _notify(dpo, "u-alice", at=NOW)
    privacy.erase_customer_user(dpo, account="acme", customer_user="u-bob", by_slack_id=DPO, now=NOW)
    bodies = _bodies(session_factory)
    assert {k: bodies["s-u-bob"][k] for k in ("customer_user", "reason", "ticket", "account")} == {
        "customer_user": ERASED, "reason": ERASED, "ticket": ERASED, "account": "acme",
    }
    assert bodies["s-u-alice"]["reason"] == f"{REASON} for u-alice"
    (event,) = audit_events(session_factory, "privacy.erased")
    assert json.loads(event.details)["notifications"] == 1

    _with_retention(dpo, 30)
    with freeze_time(NOW + timedelta(days=30, minutes=1)):
        assert privacy.erase_expired(dpo).notifications == 1
    bodies = _bodies(session_factory)
    assert (bodies["s-u-alice"]["reason"], bodies["s-u-alice"]["ticket"], bodies["s-u-alice"]["customer_user"]) == (ERASED, ERASED, "u-alice")
