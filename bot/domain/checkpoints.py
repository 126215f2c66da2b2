"""Signed checkpoints of the audit chain, kept outside the database.

A checkpoint is (sequence, head hash, time) signed with the Ed25519 key, in the spirit of
CloudTrail digest files and Certificate Transparency signed tree heads: whoever kept an
earlier checkpoint can detect any rewrite of the chain up to it, including deleting the newest
rows, which a hash chain alone cannot show.

Wire format (one JSON object per line, for the checkpoint file and the security channel):
    {"hash":"<hex>","kid":"...","seq":1234,"signature":"<base64url Ed25519 signature>",
     "time":"2026-11-25T09:00:00.000000Z"}
The signed message is the UTF-8 bytes of
    "impersonation-bot checkpoint v1\\n{seq}\\n{hash}\\n{time}"
and `kid` is the RFC 7638 thumbprint of the public key, so an auditor can check it with only
the public key (docs/audit.md, "Verifying without this program").

A new checkpoint never vouches for a log that has drifted from an earlier one: before signing,
`make_and_store_checkpoint` re-checks the chain from the newest checkpoint in the file to the
head (each checkpoint extends the one before it, like CT's consistency between tree heads).
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import AuditEvent, AuditHead
from bot.domain.audit import GENESIS_HASH, ChainProblem, format_time, hash_event_row, verify_chain
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.keys import SigningKey, public_key_id

PREFIX = "impersonation-bot checkpoint v1"
#: events read per query while re-checking the chain before signing
_BATCH = 5000


class CheckpointError(Exception):
    """A checkpoint, a checkpoint file or a public key cannot be used (bad input)."""


class ChainTampered(CheckpointError):
    """The log no longer agrees with itself or with an earlier checkpoint: nothing is signed.
    `seq` is the first event that cannot be trusted."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit chain BROKEN at seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class Checkpoint:
    kid: str
    seq: int
    hash: str
    time: str
    signature: str

    def message(self) -> bytes:
        return signed_message(self.seq, self.hash, self.time)

    def to_json(self) -> str:
        return json.dumps(
            {"kid": self.kid, "seq": self.seq, "hash": self.hash, "time": self.time, "signature": self.signature},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("a checkpoint is a JSON object")
            seq = data["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise TypeError("seq must be a non-negative integer")
            return cls(str(data["kid"]), seq, str(data["hash"]), str(data["time"]), str(data["signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"not a checkpoint: {exc}") from None


def signed_message(seq: int, head_hash: str, time: str) -> bytes:
    return f"{PREFIX}\n{seq}\n{head_hash}\n{time}".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ------------------------------------------------------------------------------ making them


def make_checkpoint(db: Session, key: SigningKey, *, now: datetime | None = None) -> Checkpoint:
    """Sign the chain head as it is now. Refuses (ChainTampered) when the head row disagrees
    with the event it names, so a checkpoint never vouches for a head that is not in the log.
    Only the row at the head's own seq is compared: under concurrent appends a newer event may
    already exist, which is fine (the head was read first, and that event extends it)."""
    head = db.get(AuditHead, 1)
    if head is None:
        raise CheckpointError("the audit chain has no head row; run migrations")
    if head.seq > 0:
        row = db.get(AuditEvent, head.seq)
        if row is None:
            raise ChainTampered(head.seq, f"the chain head names seq {head.seq}, which is not in the log")
        if row.hash != head.hash or hash_event_row(row) != row.hash:
            raise ChainTampered(head.seq, "the chain head and its event disagree")
    elif head.hash != GENESIS_HASH:
        raise ChainTampered(1, "an empty chain's head is not the genesis hash")
    time = format_time(now or utcnow())
    return Checkpoint(key.kid, head.seq, head.hash, time, _b64(key.sign(signed_message(head.seq, head.hash, time))))


def store_checkpoint(
    sessions: sessionmaker[Session], key: SigningKey, path: Path | None, *, now: datetime | None = None
) -> Checkpoint:
    """Make a checkpoint now and, when `path` is set, append it to that file. Before signing,
    the chain is re-checked from the newest checkpoint of ours in the file up to the head, so a
    rewrite since then is reported (ChainTampered) instead of being signed over."""
    previous = _newest_own(read_file(path), key) if path is not None and path.exists() else None
    with sessions() as db:
        checkpoint = make_checkpoint(db, key, now=now)
        if previous is not None:
            problem = _extends(db, previous, checkpoint)
            if problem is not None:
                raise ChainTampered(problem.seq, problem.reason)
    if path is not None:
        append_to_file(checkpoint, path)
    return checkpoint


def make_and_store_checkpoint(ctx: DomainContext, path: Path | None, *, now: datetime | None = None) -> Checkpoint:
    """The scheduled job's and `impersonation-bot audit checkpoint`'s entry point:
    `path` is Settings.checkpoint_file (AUDIT_CHECKPOINT_FILE), None to keep it nowhere on disk."""
    return store_checkpoint(ctx.sessions, ctx.signing_key, path, now=now)


def _newest_own(checkpoints: Iterable[Checkpoint], key: SigningKey) -> Checkpoint | None:
    own = {key.kid: key.public_key}
    valid = [c for c in checkpoints if signature_ok(c, own)]
    return max(valid, key=lambda c: c.seq, default=None)


def _extends(db: Session, previous: Checkpoint, current: Checkpoint) -> CheckpointProblem | None:
    """Whether the chain still holds `previous` and links it, event by event, to `current`."""
    if previous.seq > current.seq:
        return CheckpointProblem(
            current.seq + 1, f"the log ends at {current.seq} but a checkpoint vouches for {previous.seq}: newest rows were deleted"
        )
    if previous.seq == 0:
        expected_prev = GENESIS_HASH
    else:
        stored = db.execute(select(AuditEvent.hash).where(AuditEvent.seq == previous.seq)).scalar_one_or_none()
        if stored != previous.hash:
            return CheckpointProblem(previous.seq, "event hash differs from the signed checkpoint: the chain was rewritten")
        expected_prev = previous.hash
    seq = previous.seq
    while seq < current.seq:
        rows = db.execute(
            select(AuditEvent)
            .where(AuditEvent.seq > seq, AuditEvent.seq <= current.seq)
            .order_by(AuditEvent.seq)
            .limit(_BATCH)
        ).scalars().all()
        if not rows:
            return CheckpointProblem(seq + 1, f"sequence gap: expected {seq + 1}, the log has nothing more")
        for row in rows:
            if row.seq != seq + 1:
                return CheckpointProblem(seq + 1, f"sequence gap: expected {seq + 1}, found {row.seq}")
            if row.prev_hash != expected_prev or hash_event_row(row) != row.hash:
                return CheckpointProblem(row.seq, "the chain does not link the earlier checkpoint to the head")
            expected_prev, seq = row.hash, row.seq
        db.expunge_all()
    return None


# ------------------------------------------------------------------------------ the file


def append_to_file(checkpoint: Checkpoint, path: Path) -> None:
    """One line per checkpoint. O_APPEND makes each short write land whole at the end even
    when two processes append at once (POSIX), and fsync puts it on disk before we report it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (checkpoint.to_json() + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path) -> list[Checkpoint]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                out.append(Checkpoint.from_json(line))
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: line {number}: {exc}") from None
    return out


# ------------------------------------------------------------------------------ public keys

PublicKeys = dict[str, Ed25519PublicKey]


def public_keys_from_pem(data: bytes, *, source: str = "public key") -> PublicKeys:
    """A PEM public key (SubjectPublicKeyInfo, as `openssl pkey -pubout` writes), or a PEM
    private key (its public half is used), keyed by its RFC 7638 thumbprint."""
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{source} is not a PEM key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{source} is not an Ed25519 key")
    return {public_key_id(key): key}


def public_keys_from_jwks(document: object, *, source: str = "JWKS") -> PublicKeys:
    """The Ed25519 keys (RFC 8037 OKP) of a JWK Set (RFC 7517 §5), such as
    PUBLIC_BASE_URL/.well-known/jwks.json. Each is keyed by the thumbprint computed here, not
    by the document's own `kid`, so a key cannot be passed off under another key's id."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise CheckpointError(f"{source} is not a JWK Set (no \"keys\" list)")
    found: PublicKeys = {}
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        x = jwk.get("x")
        try:
            key = Ed25519PublicKey.from_public_bytes(_unb64(x) if isinstance(x, str) else b"")
        except ValueError:
            raise CheckpointError(f"{source}: an Ed25519 key has a malformed \"x\"") from None
        found[public_key_id(key)] = key
    if not found:
        raise CheckpointError(f"{source} holds no Ed25519 key")
    return found


def signature_ok(checkpoint: Checkpoint, public_keys: PublicKeys) -> bool:
    key = public_keys.get(checkpoint.kid)
    if key is None:
        return False
    try:
        key.verify(_unb64(checkpoint.signature), checkpoint.message())
        return True
    except (InvalidSignature, ValueError):
        return False


# ------------------------------------------------------------------------------ verifying


@dataclass(frozen=True)
class CheckpointProblem:
    seq: int
    reason: str


def verify_against(db: Session, checkpoints: list[Checkpoint], public_keys: PublicKeys) -> CheckpointProblem | None:
    """Each checkpoint must be validly signed and its (seq, hash) must still be in the chain.
    A checkpoint past the end of the log means newest rows were deleted. The first failing
    checkpoint (lowest seq) is reported; the rewrite it shows happened at or before its seq,
    after the newest checkpoint below it that still matches."""
    last = db.execute(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none() or 0
    good_up_to = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        if not signature_ok(checkpoint, public_keys):
            return CheckpointProblem(
                checkpoint.seq, f"the checkpoint for seq {checkpoint.seq} has an invalid signature or an unknown key ({checkpoint.kid})"
            )
        if checkpoint.seq == 0:
            if checkpoint.hash != GENESIS_HASH:
                return CheckpointProblem(1, "the checkpoint for seq 0 does not name the genesis hash")
            continue
        if checkpoint.seq > last:
            return CheckpointProblem(
                last + 1, f"log ends at {last} but a checkpoint vouches for {checkpoint.seq}: newest rows were deleted"
            )
        row_hash = db.execute(select(AuditEvent.hash).where(AuditEvent.seq == checkpoint.seq)).scalar_one_or_none()
        if row_hash != checkpoint.hash:
            since = f" (after seq {good_up_to}, where an earlier checkpoint still matches)" if good_up_to else ""
            return CheckpointProblem(
                checkpoint.seq,
                f"event hash differs from the signed checkpoint: the chain was rewritten at or before this seq{since}",
            )
        good_up_to = checkpoint.seq
    return None


@dataclass(frozen=True)
class LogVerification:
    """The outcome of `audit verify`: the chain walked from the genesis hash, then every
    checkpoint given. `problem` is the first bad sequence number found by either."""

    events: int
    checkpoints: int
    newest_checkpoint: Checkpoint | None
    problem: ChainProblem | CheckpointProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_log(
    db: Session, checkpoints: list[Checkpoint] | None = None, public_keys: PublicKeys | None = None, *, workers: int = 1
) -> LogVerification:
    """`workers` > 1 lets a long chain be checked by that many processes (verify_chain)."""
    checkpoints = checkpoints or []
    events, chain_problem = verify_chain(db, workers=workers)
    checkpoint_problem = verify_against(db, checkpoints, public_keys or {}) if checkpoints else None
    problems = [p for p in (chain_problem, checkpoint_problem) if p is not None]
    problem = min(problems, key=lambda p: p.seq) if problems else None
    newest = max(checkpoints, key=lambda c: c.seq, default=None)
    return LogVerification(events, len(checkpoints), newest, problem)
