"""Sessions belong to the product they were launched into (docs/product-api.md "Sessions
belong to a product"): another product's key is answered as if the session did not exist,
and every such refusal is audited with its real cause."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import ImpersonationSession
from bot.domain import links, product_api
from bot.domain.audit import Actor, verify_chain
from bot.domain.links import ClientInfo
from bot.domain.policy import PolicyError, ProductConfig, parse_policy
from bot.domain.refusals import SUMMARY_EVENT, RefusalAuditor, RefusalThrottle
from tests.web.conftest import audit_events
from tests.web.test_product_api import action, post_action

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=timezone.utc)
CLI = Actor(slack_id="USECURITY1", email="sec@corp.example", role="cli")


def key_for(session_factory, product: str) -> dict[str, str]:
    with session_factory() as db, db.begin():
        key = product_api.create_api_key(db, product=product, actor=CLI).plaintext_key
    return {"Authorization": f"Bearer {key}"}


def set_product(ctx, **config) -> None:
    ctx.policy = ctx.policy.model_copy(update={"product": ProductConfig(**config)})


@pytest.fixture
def open_session(ctx, grant):
    def _open(**overrides) -> str:
        redemption = links.redeem(ctx, grant(**overrides))
        assert isinstance(redemption, links.Redemption)
        return redemption.session.id

    return _open


def stored_product(session_factory, sid: str) -> str | None:
    with session_factory() as db:
        return db.execute(select(ImpersonationSession.product).where(ImpersonationSession.id == sid)).scalar_one()


def test_a_session_is_bound_to_the_policy_product_and_another_products_key_is_refused_as_unknown(ctx, client, open_session, session_factory):
    set_product(ctx, name="acme-web")
    ours, theirs = key_for(session_factory, "acme-web"), key_for(session_factory, "billing-app")
    with freeze_time(T0):
        sid = open_session()
        redeemed = [e for e in audit_events(session_factory) if e.type == "session.redeemed"][-1]
        before = len(audit_events(session_factory))
        read = client.get(f"/api/v1/sessions/{sid}", headers=theirs, environ_base={"REMOTE_ADDR": "198.51.100.7"})
        write = post_action(client, sid, theirs, action(T0))
        unknown = client.get("/api/v1/sessions/00000000-0000-4000-8000-000000000000", headers=theirs)
        refused = audit_events(session_factory)[before:]
        allowed_read = client.get(f"/api/v1/sessions/{sid}", headers=ours)
        allowed_write = post_action(client, sid, ours, action(T0))

    assert stored_product(session_factory, sid) == "acme-web"
    assert json.loads(redeemed.details)["product"] == "acme-web"
    # Exactly what a session that does not exist gets: nothing tells the other product it is there.
    assert (read.status_code, read.get_json()) == (404, unknown.get_json())
    assert (write.status_code, write.get_json()) == (404, unknown.get_json())
    assert [(e.type, e.session_id) for e in refused] == [("api.refused", sid), ("action.refused", sid)]
    read_details, write_details = (json.loads(e.details) for e in refused)
    assert read_details["cause"] == write_details["cause"] == "wrong_product"
    assert read_details["product"] == write_details["product"] == "billing-app"
    assert read_details["session_product"] == "acme-web" and read_details["ip"] == "198.51.100.7"
    assert write_details["action"] == "invoice.update"  # the evidence is kept
    assert not [e for e in refused if e.type == "action.recorded"]
    assert allowed_read.status_code == 200 and allowed_write.status_code == 201
    with session_factory() as db:
        assert verify_chain(db)[1] is None


def test_an_account_can_live_in_another_product(ctx, client, open_session, session_factory):
    set_product(ctx, name="acme-web", by_account={"acme": "acme-mobile"})
    web, mobile = key_for(session_factory, "acme-web"), key_for(session_factory, "acme-mobile")
    sid = open_session()
    assert stored_product(session_factory, sid) == "acme-mobile"
    assert client.get(f"/api/v1/sessions/{sid}", headers=web).status_code == 404
    assert client.get(f"/api/v1/sessions/{sid}", headers=mobile).status_code == 200


def test_an_unbound_session_belongs_to_the_only_product_holding_keys_and_to_none_once_there_are_two(ctx, client, open_session, session_factory):
    # No product in the policy (an install from before sessions were bound): the session
    # names none, and a single-product install goes on working as before.
    only = key_for(session_factory, "acme-web")
    with freeze_time(T0):
        sid = open_session()
        assert stored_product(session_factory, sid) is None
        assert client.get(f"/api/v1/sessions/{sid}", headers=only).status_code == 200
        assert post_action(client, sid, only, action(T0)).status_code == 201

        # A second product's key: whose the session is can no longer be told, so neither may see it.
        second = key_for(session_factory, "billing-app")
        before = len(audit_events(session_factory))
        answers = [
            client.get(f"/api/v1/sessions/{sid}", headers=only).status_code,
            client.get(f"/api/v1/sessions/{sid}", headers=second).status_code,
            post_action(client, sid, second, action(T0)).status_code,
        ]
        causes = [json.loads(e.details)["cause"] for e in audit_events(session_factory)[before:]]

        # Revoking the second product's keys makes the install single-product again.
        with session_factory() as db, db.begin():
            key_id = [k for k in product_api.list_api_keys(db) if k.product == "billing-app"][0].key_id
            product_api.revoke_api_key(db, key_id, actor=CLI)
        again = client.get(f"/api/v1/sessions/{sid}", headers=only).status_code

    assert answers == [404, 404, 404]
    assert causes == ["unbound_session"] * 3
    assert again == 200


def test_wrong_product_reads_go_through_the_refusal_throttle(ctx, session_factory, open_session):
    set_product(ctx, name="acme-web")
    key_for(session_factory, "acme-web")
    sid = open_session()
    principal = product_api.ApiPrincipal(key_id="0" * 16, product="billing-app")
    refusals = RefusalAuditor(ctx, RefusalThrottle(per_client=2, window=timedelta(minutes=1)), timer=False)
    before = len(audit_events(session_factory))
    with freeze_time(T0):
        answers = [
            product_api.session_report_for(ctx, principal, sid, refusals=refusals, client=ClientInfo(ip="198.51.100.7"))
            for _ in range(5)
        ]
    with freeze_time(T0 + timedelta(minutes=1)):
        refusals.flush()
    written = audit_events(session_factory)[before:]

    assert answers == [None] * 5
    assert [e.type for e in written] == ["api.refused", "api.refused", SUMMARY_EVENT]
    assert json.loads(written[-1].details)["by_cause"] == {"api.refused:wrong_product": 3}


@pytest.mark.parametrize(
    "table",
    ['[product]\nname = "Acme Web"', '[product]\nby_account = {acme = "x y"}', '[product]\nname = ""'],
)
def test_a_product_name_in_the_policy_must_be_a_key_product_slug(table):
    base = '[roles.support]\nmembers = ["U0123"]\nmax_minutes = 60\n[gating]\nflags = []\n'
    with pytest.raises(PolicyError, match="product"):
        parse_policy(base + table)
