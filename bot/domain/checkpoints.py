"""Signed checkpoints of the audit chain (issue 4 point 3), kept outside the database.

A checkpoint is (sequence, head hash, time) signed with the Ed25519 key, in the spirit of
CloudTrail digest files and Certificate Transparency signed tree heads: whoever kept an
earlier checkpoint can detect any rewrite of the chain up to it, including deleting the newest
rows, which a hash chain alone cannot show.

Wire format (one JSON object per line, for the checkpoint file and the security channel):
    {"kid": "...", "seq": 1234, "hash": "<hex>", "time": "2026-11-25T09:00:00.000000Z",
     "signature": "<base64url Ed25519 signature>"}
The signed message is the UTF-8 bytes of
    "impersonation-bot checkpoint v1\n{seq}\n{hash}\n{time}"
so an auditor can check it with only the public key (docs/audit.md).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import AuditEvent, AuditHead
from bot.domain.audit import format_time
from bot.domain.clock import utcnow
from bot.domain.keys import SigningKey

PREFIX = "impersonation-bot checkpoint v1"


class CheckpointError(Exception):
    pass


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
            return cls(str(data["kid"]), int(data["seq"]), str(data["hash"]), str(data["time"]), str(data["signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"not a checkpoint: {exc}") from None


def signed_message(seq: int, head_hash: str, time: str) -> bytes:
    return f"{PREFIX}\n{seq}\n{head_hash}\n{time}".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_checkpoint(db: Session, key: SigningKey, *, now: datetime | None = None) -> Checkpoint:
    head = db.get(AuditHead, 1)
    if head is None:
        raise CheckpointError("the audit chain has no head row; run migrations")
    time = format_time(now or utcnow())
    return Checkpoint(key.kid, head.seq, head.hash, time, _b64(key.sign(signed_message(head.seq, head.hash, time))))


def append_to_file(checkpoint: Checkpoint, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(checkpoint.to_json() + "\n")


def read_file(path: Path) -> list[Checkpoint]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                out.append(Checkpoint.from_json(line))
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: line {number}: {exc}") from None
    return out


def signature_ok(checkpoint: Checkpoint, public_keys: dict[str, Ed25519PublicKey]) -> bool:
    key = public_keys.get(checkpoint.kid)
    if key is None:
        return False
    try:
        key.verify(_unb64(checkpoint.signature), checkpoint.message())
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass(frozen=True)
class CheckpointProblem:
    seq: int
    reason: str


def verify_against(db: Session, checkpoints: list[Checkpoint], public_keys: dict[str, Ed25519PublicKey]) -> CheckpointProblem | None:
    """Each checkpoint must be validly signed and its (seq, hash) must still be in the chain.
    A checkpoint past the end of the log means newest rows were deleted."""
    last = db.execute(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none() or 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        if not signature_ok(checkpoint, public_keys):
            return CheckpointProblem(checkpoint.seq, "checkpoint signature is invalid or its key is unknown")
        if checkpoint.seq == 0:
            continue
        if checkpoint.seq > last:
            return CheckpointProblem(last + 1, f"log ends at {last} but a checkpoint vouches for {checkpoint.seq}: newest rows were deleted")
        row_hash = db.execute(select(AuditEvent.hash).where(AuditEvent.seq == checkpoint.seq)).scalar_one_or_none()
        if row_hash != checkpoint.hash:
            return CheckpointProblem(checkpoint.seq, "event hash differs from the signed checkpoint: the chain was rewritten")
    return None
