"""Signing-key rotation (bot/domain/keyring.py), on a frozen clock: the JWKS publishes the new
key at once and the old one until every token it can have signed has expired; checkpoints
under either key verify."""
from __future__ import annotations

import json
import stat
from datetime import timedelta

import jwt
import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain import keyring
from bot.domain.audit import Actor
from bot.domain.clock import utcnow
from bot.domain.keys import load_or_create_signing_key

ACTOR = Actor(email="security@corp.example", role="cli")


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "signing_key.pem"
    load_or_create_signing_key(path, allow_create=True)
    return path


def _kids(session_factory, own):
    with session_factory() as db:
        return [k["kid"] for k in keyring.published_jwks(db, own)]


def test_rotate_publishes_both_keys_until_the_old_ones_tokens_expire_then_only_the_new(session_factory, policy, key_file):
    old = load_or_create_signing_key(key_file, allow_create=False)
    start = utcnow().replace(microsecond=0)
    longest = max(role.max_minutes for role in policy.roles.values())
    with freeze_time(start):
        keyring.register(session_factory, old)
        # a token the old key signs just before its processes are restarted, as long as a session can be
        token = jwt.encode(
            {"exp": int((start + timedelta(hours=1, minutes=longest)).timestamp())}, old.private_key, algorithm="EdDSA",
            headers={"kid": old.kid},
        )
        done = keyring.rotate(session_factory, key_file, policy, actor=ACTOR)
    new = load_or_create_signing_key(key_file, allow_create=False)
    assert (done.old_kid, done.new_kid) == (old.kid, new.kid) and old.kid != new.kid
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert done.old_published_until == start + timedelta(hours=1, minutes=longest)

    with freeze_time(start + timedelta(seconds=1)):
        # a process still on the old key already publishes the new one, and the reverse
        assert set(_kids(session_factory, old)) == {old.kid, new.kid}
        assert set(_kids(session_factory, new)) == {old.kid, new.kid}
    with freeze_time(done.old_published_until - timedelta(seconds=1)):
        with session_factory() as db:
            jwks = jwt.PyJWKSet.from_dict({"keys": keyring.published_jwks(db, new)})
        signing = next(k for k in jwks.keys if k.key_id == old.kid)
        assert jwt.decode(token, signing.key, algorithms=["EdDSA"])["exp"]
    with freeze_time(done.old_published_until + timedelta(seconds=1)):
        assert _kids(session_factory, new) == [new.kid]  # retired
    with session_factory() as db:
        (event,) = db.execute(select(AuditEvent).where(AuditEvent.type == keyring.EVENT_ROTATED)).scalars().all()
        details = event.details if isinstance(event.details, dict) else json.loads(event.details)
        assert (details["old_kid"], details["new_kid"]) == (old.kid, new.kid)
        # checkpoints stay verifiable under both keys
        assert set(keyring.public_keys(db)) == {old.kid, new.kid}


def test_a_live_session_longer_than_the_window_keeps_the_old_key_published(session_factory, policy, key_file, ctx, tmp_path):
    """A session extended past what the policy allows at once is still live: its product may
    check the token again, so the old key stays published until that session ends."""
    from sqlalchemy import update

    from bot.db.models import ImpersonationSession
    from bot.domain import links
    from bot.domain import requests as domain_requests
    from bot.domain.links import ClientInfo
    from bot.domain.requests import AgentIdentity, RequestForm
    from tests.fakes.directory_data import load_directory

    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=15, scope="read_only")
    granted = domain_requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(granted, domain_requests.Granted), granted
    redemption = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1], client=ClientInfo(ip="203.0.113.7", user_agent="t"))
    far = utcnow() + timedelta(days=3)
    with session_factory() as db, db.begin():
        db.execute(update(ImpersonationSession).where(ImpersonationSession.id == redemption.session.id).values(expires_at=far))
    done = keyring.rotate(session_factory, key_file, policy, actor=ACTOR)
    assert done.old_published_until == far


def test_rotate_without_a_key_file_changes_nothing(session_factory, policy, tmp_path):
    from bot.domain.keys import KeyError_

    with pytest.raises(KeyError_):
        keyring.rotate(session_factory, tmp_path / "missing.pem", policy, actor=ACTOR)
    with session_factory() as db:
        assert keyring.public_keys(db) == {}
        assert db.execute(select(AuditEvent).where(AuditEvent.type == keyring.EVENT_ROTATED)).first() is None
