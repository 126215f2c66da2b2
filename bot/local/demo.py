"""The local workspace's people, channel, directory and policy: agents, an approver, security
and RevOps; an ordinary, a sensitive, a regulated and an opted-out account (the demo product's,
examples/demo_product). Loaded through the real importer and flag setter on first start."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import Account
from bot.domain import directory
from bot.domain.audit import Actor

POLICY_PATH = Path(__file__).resolve().parent / "demo_policy.toml"
SECURITY_CHANNEL = "C0SECURITY"
SECURITY_CHANNEL_NAME = "security"


@dataclass(frozen=True)
class Persona:
    slack_id: str
    name: str
    #: what the persona does in the demo, shown in the workspace's switcher
    role: str
    email: str
    tz: str = "UTC"


PERSONAS = (
    Persona("U0ANAAGENT", "Ana Agent", "support agent (acme, globex, initech)", "ana@support.example", "Europe/Paris"),
    Persona("U0BENAGENT", "Ben Agent", "support agent (acme)", "ben@support.example", "America/New_York"),
    Persona("U0MIAMANAGER", "Mia Manager", "support manager: approves", "mia@support.example"),
    Persona("U0SAMSECURITY", "Sam Security", "security: log, revoke, flags", "sam@support.example"),
    Persona("U0RAYREVOPS", "Ray RevOps", "RevOps: account flags", "ray@support.example"),
)

#: the demo product's accounts and users (examples/demo_product/app.py), in the directory's
#: import format (docs/directory-import.md); the test suite's directory is these too
CUSTOMERS = [
    {"kind": "account", "account": "acme", "name": "ACME Corp"},
    {"kind": "account", "account": "globex", "name": "Globex"},
    {"kind": "account", "account": "initech", "name": "Initech"},
    {"kind": "account", "account": "umbrella", "name": "Umbrella"},
    {"kind": "user", "account": "acme", "user": "u-alice", "email": "alice@acme.example", "name": "Alice Admin", "protected": True},
    {"kind": "user", "account": "acme", "user": "u-bob", "email": "bob@acme.example", "name": "Bob Builder"},
    {"kind": "user", "account": "globex", "user": "u-carol", "email": "carol@globex.example", "name": "Carol"},
    {"kind": "user", "account": "initech", "user": "u-dave", "email": "dave@initech.example", "name": "Dave"},
    {"kind": "user", "account": "umbrella", "user": "u-eve", "email": "eve@umbrella.example", "name": "Eve"},
]
#: who serves which account
RECORDS = [
    *CUSTOMERS,
    {"kind": "assignment", "account": "acme", "agent": "U0ANAAGENT"},
    {"kind": "assignment", "account": "globex", "agent": "U0ANAAGENT"},
    {"kind": "assignment", "account": "initech", "agent": "U0ANAAGENT"},
    {"kind": "assignment", "account": "acme", "agent": "U0BENAGENT"},
]
#: set by RevOps, as `impersonation-bot accounts flag` would
FLAGS = {"globex": directory.AccountFlag.SENSITIVE, "initech": directory.AccountFlag.REGULATED,
         "umbrella": directory.AccountFlag.OPTED_OUT}


def load_once(sessions: sessionmaker[Session]) -> bool:
    """Import the demo directory and flags into an empty database; True when it did."""
    with sessions() as db, db.begin():
        if db.execute(select(Account.id).limit(1)).first() is not None:
            return False
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "directory.json"
            path.write_text(json.dumps(RECORDS), encoding="utf-8")
            directory.import_directory(db, path, actor=Actor.system("local-workspace"))
        revops = Actor(slack_id="U0RAYREVOPS", role="revops")
        for account, flag in FLAGS.items():
            directory.set_flag(db, account_external_id=account, flag=flag, on=True, actor=revops, note="demo contract")
    return True
