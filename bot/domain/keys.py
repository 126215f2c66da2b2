"""The Ed25519 signing key: hand-off tokens and audit checkpoints (DESIGN.md).

Production supplies SIGNING_KEY_FILE; in dev a key is generated on first start (file mode
0600). The key id (`kid`) is the RFC 7638 JWK thumbprint of the public key, so it changes
exactly when the key does.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyError_(Exception):
    pass


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of an Ed25519 public key: its `kid` here, so a verifier
    holding only the public key (PEM or JWKS) derives the same id the signer used."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # RFC 7638 §3.2: required members only, lexicographic order, no white space.
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return _b64url(digest)


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_raw(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @cached_property
    def kid(self) -> str:
        # computed once per key: every hand-off token and checkpoint names it (a SHA-256 over
        # a JSON encoding each time was about 2 % of a redeeming worker's CPU)
        return public_key_id(self.public_key)

    def public_jwk(self) -> dict[str, str]:
        # RFC 8037 §2 (OKP keys) with RFC 7517 `use`/`alg`/`kid`.
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(self.public_raw),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def load_or_create_signing_key(path: Path, *, allow_create: bool, owner_only: bool = False) -> SigningKey:
    """`owner_only` (production): refuse a key file that its group or others may read or
    write — whoever reads it can mint hand-off tokens and forge audit checkpoints."""
    if path.exists():
        if owner_only:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise KeyError_(
                    f"SIGNING_KEY_FILE {path} is open to its group or others (mode {mode:04o}); "
                    f"make it readable only by its owner: chmod 600 {shlex.quote(str(path))}"
                )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise KeyError_(f"SIGNING_KEY_FILE {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyError_(f"SIGNING_KEY_FILE {path} must hold an Ed25519 key")
        return SigningKey(key)
    if not allow_create:
        raise KeyError_(
            f"SIGNING_KEY_FILE {path} does not exist. Create one with: "
            f"openssl genpkey -algorithm ed25519 -out {shlex.quote(str(path))} && chmod 600 {shlex.quote(str(path))}"
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return SigningKey(key)
