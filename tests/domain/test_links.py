"""One-time links in the domain: only a hash is stored, preview changes nothing, every refused
redemption changes nothing but the audit log."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from freezegun import freeze_time
from sqlalchemy import inspect, select, text, update

from bot.db.models import AuditEvent, ImpersonationRequest, ImpersonationSession, Link
from bot.domain import links, outbox
from bot.domain import requests as domain_requests
from bot.domain.clock import utcnow
from bot.domain.keys import SigningKey
from bot.domain.links import USER_AGENT_EXCERPT_CHARS, ClientInfo, LinkProblem, Redemption, RedemptionRefused, hash_token
from bot.domain.refusals import RefusalAuditor
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory

CLIENT = ClientInfo(ip="203.0.113.7", user_agent="Mozilla/5.0 test")


@pytest.fixture
def grant(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)

    def _grant(**overrides) -> domain_requests.Granted:
        form = dict(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
        form.update(overrides)
        result = domain_requests.submit_request(ctx, AgentIdentity("UAGENT1"), RequestForm(**form))
        assert isinstance(result, domain_requests.Granted), result
        return result

    return _grant


def token_of(granted: domain_requests.Granted) -> str:
    return granted.link.url.rsplit("/", 1)[1]


def snapshot(session_factory) -> dict[str, list[tuple]]:
    with session_factory() as db:
        return {
            "links": [(r.id, r.token_hash, r.expires_at, r.redeemed_at) for r in db.execute(select(Link).order_by(Link.id)).scalars()],
            "requests": [(r.id, r.state, r.updated_at) for r in db.execute(select(ImpersonationRequest).order_by(ImpersonationRequest.id)).scalars()],
            "sessions": [(r.id, r.expires_at, r.ended_at) for r in db.execute(select(ImpersonationSession).order_by(ImpersonationSession.id)).scalars()],
        }


def events(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        rows = list(db.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        db.expunge_all()
        return rows


def test_the_link_carries_256_bits_and_only_their_hash_is_stored(ctx, grant, session_factory):
    granted = grant()
    token = token_of(granted)
    assert granted.link.url == f"{ctx.public_base_url}/l/{token}"
    assert links.looks_like_token(token)  # 43 base64url characters = 256 bits
    assert token not in repr(granted.link)

    with session_factory() as db:
        (stored,) = db.execute(select(Link)).scalars().all()
        assert stored.token_hash == hash_token(token)
        columns = [c["name"] for c in inspect(db.connection()).get_columns("links")]
        assert not [c for c in columns if "token" in c and c != "token_hash"]
        # No column of any table holds the token, in any form it was handed out in.
        for table in inspect(db.connection()).get_table_names():
            for row in db.execute(text(f'SELECT * FROM "{table}"')):
                assert not [value for value in row if token in str(value)], table


def test_the_token_is_derived_from_the_request_id_under_a_key_derived_from_the_signing_key(ctx, grant):
    granted = grant()
    key = links.link_token_key(ctx.signing_key)
    assert token_of(granted) == links.derive_token(key, granted.request.id)
    assert len(key) == 32 and key != links.link_token_key(SigningKey(Ed25519PrivateKey.generate()))
    # another request, or another signing key, gives an unrelated token of the same shape
    other = links.derive_token(key, str(uuid.uuid4()))
    elsewhere = links.derive_token(links.link_token_key(SigningKey(Ed25519PrivateKey.generate())), granted.request.id)
    assert len({token_of(granted), other, elsewhere}) == 3
    assert all(links.looks_like_token(t) for t in (other, elsewhere))


def test_the_link_dm_is_rendered_again_with_the_same_link_while_it_can_be_opened(ctx, grant):
    granted = grant()
    with freeze_time(granted.link.expires_at - timedelta(seconds=1)):
        first = domain_requests.link_message_state(ctx, granted.request.id)
        again = domain_requests.link_message_state(ctx, granted.request.id)
    assert isinstance(first, domain_requests.Granted) and isinstance(again, domain_requests.Granted)
    # a redelivery never silently replaces the link the agent may already hold
    assert first.link.url == again.link.url == granted.link.url
    assert first.link.expires_at == granted.link.expires_at and first.redeem_window_minutes == granted.redeem_window_minutes
    # the window passed unopened: the DM says so, without the link
    with freeze_time(granted.link.expires_at):
        assert domain_requests.link_message_state(ctx, granted.request.id) == first.request
    # opened: the session's renderer takes over
    assert isinstance(links.redeem(ctx, token_of(granted)), Redemption)
    assert domain_requests.link_message_state(ctx, granted.request.id) is None


def test_a_link_is_never_re_sent_under_a_replaced_signing_key(ctx, grant):
    granted = grant()
    ctx.signing_key = SigningKey(Ed25519PrivateKey.generate())
    # the token derived now would not match the stored hash: nothing is shown rather than a
    # link that cannot work (and the agent's earlier DM, if delivered, still works)
    assert domain_requests.link_message_state(ctx, granted.request.id) is None
    assert isinstance(links.redeem(ctx, token_of(granted)), Redemption)


def test_the_outbox_row_for_the_link_dm_holds_ids_only(ctx, grant, session_factory):
    granted = grant()
    token = token_of(granted)
    (row,) = outbox.rows(ctx, kinds=[outbox.Kind.AGENT])
    assert (row.kind, row.subject_id, row.recipient) == ("agent", granted.request.id, "UAGENT1")
    with session_factory() as db:
        for stored in db.execute(text("SELECT * FROM outbox")):
            for value in stored:
                assert token not in str(value) and hash_token(token) not in str(value) and "/l/" not in str(value)


def test_preview_describes_the_link_and_changes_nothing(ctx, grant, session_factory):
    granted = grant()
    before, audit_before = snapshot(session_factory), len(events(session_factory))

    shown = links.preview(ctx, token_of(granted))

    assert shown.problem is None and shown.expires_at == granted.link.expires_at
    assert shown.request.account == "acme" and shown.request.customer_user == "u-bob"
    assert snapshot(session_factory) == before and len(events(session_factory)) == audit_before


def test_redeem_opens_a_session_from_now_for_the_requested_duration(ctx, grant, session_factory):
    token = token_of(grant(duration_minutes=15))
    now = utcnow().replace(microsecond=0)

    redemption = links.redeem(ctx, token, client=CLIENT, now=now)

    assert isinstance(redemption, Redemption)
    assert redemption.session.started_at == now and redemption.session.expires_at == now + timedelta(minutes=15)
    assert redemption.session.state == "active"
    assert redemption.handoff_token not in repr(redemption)
    shown = jwt.decode(redemption.handoff_token, options={"verify_signature": False})
    # What the product's banner shows (docs/product-integration.md) travels in the hand-off.
    assert (shown["account_name"], shown["name"], shown["reason"]) == ("ACME Corp", "Bob Builder", redemption.session.request.reason)
    assert shown["ticket"] == redemption.session.request.ticket
    (event,) = [e for e in events(session_factory) if e.type == "session.redeemed"]
    assert '"ip":"203.0.113.7"' in event.details and token not in event.details


def _replayed(ctx, grant, session_factory):
    token = token_of(grant())
    assert isinstance(links.redeem(ctx, token), Redemption)
    return token


def _unknown(ctx, grant, session_factory):
    grant()
    return "Q" * 43


def _malformed(ctx, grant, session_factory):
    grant()
    return "../../etc/passwd" + "x" * 5000


def _expired(ctx, grant, session_factory):
    token = token_of(grant())
    with session_factory() as db, db.begin():
        db.execute(update(Link).values(expires_at=utcnow() - timedelta(seconds=1)))
    return token


def _no_longer_granted(ctx, grant, session_factory):
    token = token_of(grant())
    with session_factory() as db, db.begin():  # as a revocation before redemption would
        db.execute(update(ImpersonationRequest).values(state="revoked"))
    return token


@pytest.mark.parametrize(
    "arrange, problem, event_type",
    [
        (_replayed, LinkProblem.ALREADY_USED, "link.replay_refused"),
        (_unknown, LinkProblem.UNKNOWN, "link.unknown_refused"),
        (_malformed, LinkProblem.UNKNOWN, "link.unknown_refused"),
        (_expired, LinkProblem.EXPIRED, "link.expired"),
        (_no_longer_granted, LinkProblem.NOT_GRANTED, "link.refused"),
    ],
)
def test_a_refused_redemption_changes_nothing_but_the_audit_log(ctx, grant, session_factory, arrange, problem, event_type):
    token = arrange(ctx, grant, session_factory)
    before, audit_before = snapshot(session_factory), len(events(session_factory))

    assert links.redeem(ctx, token, client=CLIENT) == RedemptionRefused(problem)
    assert links.preview(ctx, token).problem is problem

    assert snapshot(session_factory) == before
    (event,) = events(session_factory)[audit_before:]
    assert event.type == event_type and event.actor_role == "browser"
    assert token[:100] not in event.details
    assert '"token_hash_prefix":"' in event.details and '"user_agent":"Mozilla/5.0 test"' in event.details


def test_refuse_csrf_audits_and_leaves_the_link_redeemable(ctx, grant, session_factory):
    token = token_of(grant())
    before, audit_before = snapshot(session_factory), len(events(session_factory))

    assert links.refuse_csrf(ctx, token, cause="bad_proof", refusals=RefusalAuditor(ctx, timer=False), client=CLIENT)

    assert snapshot(session_factory) == before
    (event,) = events(session_factory)[audit_before:]
    assert event.type == "link.csrf_refused" and event.account == "acme" and event.request_id is not None
    assert f'"token_hash_prefix":"{hash_token(token)[:12]}"' in event.details and '"cause":"bad_proof"' in event.details
    assert token not in event.details
    assert isinstance(links.redeem(ctx, token), Redemption)


def test_refuse_csrf_for_an_unknown_token_names_no_account(ctx, grant, session_factory):
    grant()
    links.refuse_csrf(ctx, "nonsense", cause="missing_cookie", refusals=RefusalAuditor(ctx, timer=False))
    event = events(session_factory)[-1]
    assert (event.type, event.account, event.request_id) == ("link.csrf_refused", None, None)
    assert "nonsense" not in event.details


def test_a_redemption_names_the_messages_it_owed(ctx, grant):
    # what the deliverer sends after the answer: the very targets the redemption wrote
    granted = grant()
    last = max(r.id for r in outbox.rows(ctx))
    redeemed = links.redeem(ctx, token_of(granted), client=CLIENT)
    assert isinstance(redeemed, Redemption)
    assert redeemed.targets == (
        outbox.target_of(outbox.Kind.AGENT, granted.request.id, "UAGENT1"),
        outbox.target_of(outbox.Kind.FEED, granted.request.id, outbox.SECURITY),
    )
    # every Slack message row the redemption wrote (Homes and webhooks are the scheduler's)
    written = {outbox.target_of(outbox.Kind(r.kind), r.subject_id, r.recipient) for r in outbox.rows(ctx) if r.id > last}
    assert {t for t in written if not t.startswith(("home:", "webhook:"))} == set(redeemed.targets)


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0\r\n2030-01-01 INFO forged line\x1b[31m" + "A" * 300,
        "\u202eevil\u0000\x7f" * 40,
        "x" * 5000,
    ],
)
def test_a_user_agent_is_kept_as_a_short_printable_excerpt_and_a_digest(user_agent):
    details = ClientInfo(ip="203.0.113.7\n", user_agent=user_agent).as_details()
    excerpt = details["user_agent"]
    assert len(excerpt) <= USER_AGENT_EXCERPT_CHARS
    assert all(" " <= c <= "~" for c in excerpt + details["ip"]), details
    assert details["ip"] == "203.0.113.7"
    assert re.fullmatch(r"[0-9a-f]{16}", details["user_agent_sha256"])
    assert details["user_agent_sha256"] != ClientInfo(user_agent=user_agent + "!").as_details()["user_agent_sha256"]
