"""Signing-key rotation without downtime (docs/operations.md "Key rotation").

SIGNING_KEY_FILE holds the one private key a process signs with; the database holds the
public half of every key that signs or signed (`signing_keys`). `rotate` makes a new Ed25519
key, records it at once — so every running process's JWKS publishes it before any process
signs with it — writes it over SIGNING_KEY_FILE, and marks the old key retired with a date
until which the JWKS keeps publishing it: the processes still running on the old key (until
they are restarted, within `restart_within`) may sign tokens whose `exp` is as far as the
longest session the policy allows, and a live session may already run later than that. After
that date the old key is no longer published; checkpoints it signed stay verifiable, because
`audit verify` checks against every key recorded here.
"""
from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import ImpersonationSession, SigningKeyRecord
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.keys import SigningKey, _b64url, load_or_create_signing_key
from bot.domain.policy import PolicyConfig

EVENT_ROTATED = "signing_key.rotated"
#: how long after `keys rotate` every process is expected to run on the new key
DEFAULT_RESTART_WITHIN = timedelta(hours=1)


@dataclass(frozen=True)
class Rotation:
    old_kid: str
    new_kid: str
    old_published_until: datetime


def register(sessions: sessionmaker[Session], key: SigningKey, *, now: datetime | None = None) -> None:
    """Record a key's public half (once; every process does it at start)."""
    with sessions() as db, db.begin():
        _register(db, key, now or utcnow())


def _register(db: Session, key: SigningKey, now: datetime) -> None:
    if db.get(SigningKeyRecord, key.kid) is not None:
        return
    try:
        with db.begin_nested():
            db.execute(insert(SigningKeyRecord).values(kid=key.kid, x=_b64url(key.public_raw), created_at=now))
    except IntegrityError:
        pass  # another process recorded it first


def published_jwks(db: Session, own: SigningKey, *, now: datetime | None = None) -> list[dict[str, str]]:
    """The JWKS: this process's key, and every recorded key that is not retired or is retired
    but still within its publication window (the new key right after a rotation, too)."""
    now = now or utcnow()
    rows = db.execute(
        select(SigningKeyRecord.kid, SigningKeyRecord.x)
        .where(or_(SigningKeyRecord.published_until.is_(None), SigningKeyRecord.published_until > now))
        .order_by(SigningKeyRecord.created_at.desc())
    ).all()
    keys = [own.public_jwk()]
    keys += [_jwk(kid, x) for kid, x in rows if kid != own.kid]
    return keys


def public_keys(db: Session) -> dict[str, Ed25519PublicKey]:
    """Every key ever recorded, retired or not: what checkpoints may have been signed with."""
    rows = db.execute(select(SigningKeyRecord.kid, SigningKeyRecord.x)).all()
    return {kid: Ed25519PublicKey.from_public_bytes(_unb64url(x)) for kid, x in rows}


def rotate(
    sessions: sessionmaker[Session],
    key_file: Path,
    policy: PolicyConfig,
    *,
    actor: Actor,
    restart_within: timedelta = DEFAULT_RESTART_WITHIN,
    now: datetime | None = None,
) -> Rotation:
    now = now or utcnow()
    old = load_or_create_signing_key(key_file, allow_create=False)
    new = SigningKey(Ed25519PrivateKey.generate())
    longest = timedelta(minutes=max(role.max_minutes for role in policy.roles.values()))
    # The new key is written beside the old one first and put in place only after the
    # database knows it: a failure in between leaves the old key signing and nothing retired.
    staged = _stage(key_file, new)
    try:
        with sessions() as db, db.begin():
            live_until = db.execute(
                select(func.max(ImpersonationSession.expires_at)).where(ImpersonationSession.ended_at.is_(None))
            ).scalar()
            until = max(now + restart_within + longest, live_until or now)
            _register(db, old, now)
            _register(db, new, now)
            db.execute(
                update(SigningKeyRecord)
                .where(SigningKeyRecord.kid == old.kid)
                .values(retired_at=now, published_until=until)
            )
            audit.append(
                db,
                EventDraft(
                    type=EVENT_ROTATED,
                    actor=actor,
                    details={"old_kid": old.kid, "new_kid": new.kid, "old_published_until": until.isoformat()},
                ),
                now=now,
            )
        os.replace(staged, key_file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise
    return Rotation(old.kid, new.kid, until)


def _stage(key_file: Path, key: SigningKey) -> str:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd, staged = tempfile.mkstemp(prefix=f".{key_file.name}.", dir=key_file.parent)  # mode 0600
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return staged


def _jwk(kid: str, x: str) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
