"""Configuration changes are audited too.

At start-up (bot.wiring.build_container: `serve`, `web` workers, `scheduler`) the validated
policy is reduced to a canonical form and hashed. When the hash differs from the one in the
newest `policy.changed` event, a new `policy.changed` event records the new hash, the
previous one, a readable list of what changed (roles added or removed, members added or
removed per role, powers, limits, gates …) and the policy itself, so that the next change
can be described against it and an auditor can see the rules in force at any time. No table
of its own: the audit log is the record.

The canonical form is the validated model (defaults filled in, so spelling a default out
changes nothing) dumped to JSON types with every list of plain values sorted: in this policy
no list's order carries meaning (members, flags, days, duration choices), so re-ordering the
file is not a change. Its SHA-256 is taken over the audit log's canonical JSON encoding.

Several processes start at once (gunicorn workers, the clock): the check and the append
happen under the audit chain's head lock, so one change is recorded once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import AuditEvent, AuditHead
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft, canonical_json
from bot.domain.policy import PolicyConfig

EVENT_TYPE = "policy.changed"
#: the audit actor: nobody in particular, the file in force at start-up
ACTOR = Actor.system("policy-file")
#: role settings listed when a role is added (its powers, in the policy's own words)
_POWERS = (
    "can_impersonate", "can_read_write", "can_approve", "can_view_log", "can_flag_accounts",
    "can_revoke", "can_request_extension", "can_break_glass", "requires_approval",
)


@dataclass(frozen=True)
class PolicyChange:
    seq: int
    sha256: str
    previous_sha256: str | None
    changes: tuple[str, ...]


def canonical_policy(policy: PolicyConfig) -> dict[str, Any]:
    return _sorted_lists(policy.model_dump(mode="json"))


def policy_sha256(policy: PolicyConfig) -> str:
    return hashlib.sha256(canonical_json(canonical_policy(policy)).encode("utf-8")).hexdigest()


def _sorted_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_lists(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_sorted_lists(item) for item in value]
        if all(isinstance(item, (str, int)) and not isinstance(item, bool) for item in items):
            return sorted(items, key=lambda item: (isinstance(item, str), item))
        return items
    return value


def record_policy_change(
    sessions: sessionmaker[Session], policy: PolicyConfig, *, source: str, now: datetime | None = None
) -> PolicyChange | None:
    """Append `policy.changed` when `policy` is not the one last recorded; None when it is."""
    canonical = canonical_policy(policy)
    digest = hashlib.sha256(canonical_json(canonical).encode("utf-8")).hexdigest()
    with sessions() as db, db.begin():
        # The head lock first: a second process starting now waits here, then sees our event.
        db.execute(select(AuditHead.seq).where(AuditHead.id == 1).with_for_update()).one()
        previous = last_recorded(db)
        if previous is not None and previous.get("sha256") == digest:
            return None
        old = previous.get("policy") if previous is not None else None
        changes = describe_changes(old if isinstance(old, dict) else None, canonical)
        event = audit.append_now(
            db,
            EventDraft(
                type=EVENT_TYPE,
                actor=ACTOR,
                details={
                    "sha256": digest,
                    "previous_sha256": previous.get("sha256") if previous is not None else None,
                    "source": source,
                    "changes": changes,
                    "policy": canonical,
                },
            ),
            now=now,
        )
        return PolicyChange(event.seq, digest, previous.get("sha256") if previous is not None else None, tuple(changes))


def last_recorded(db: Session) -> dict[str, Any] | None:
    """The details of the newest `policy.changed` event (the type index finds it)."""
    details = db.execute(
        select(AuditEvent.details).where(AuditEvent.type == EVENT_TYPE).order_by(AuditEvent.seq.desc()).limit(1)
    ).scalar_one_or_none()
    if details is None:
        return None
    parsed = json.loads(details)
    return parsed if isinstance(parsed, dict) else None


# ------------------------------------------------------------------------------ the summary


def describe_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What changed, one line each, in the policy file's own key names."""
    if old is None:
        roles = new.get("roles", {})
        return [f"first policy recorded: roles {', '.join(sorted(roles))}"] + [
            _role_added(name, roles[name]) for name in sorted(roles)
        ]
    lines: list[str] = []
    old_roles, new_roles = old.get("roles", {}), new.get("roles", {})
    for name in sorted(new_roles.keys() - old_roles.keys()):
        lines.append(_role_added(name, new_roles[name]))
    for name in sorted(old_roles.keys() - new_roles.keys()):
        lines.append(f"role {name} removed (members were {_listing(old_roles[name].get('members', []))})")
    for name in sorted(old_roles.keys() & new_roles.keys()):
        lines.extend(_differences(old_roles[name], new_roles[name], f"roles.{name}"))
    others_old = {k: v for k, v in old.items() if k != "roles"}
    others_new = {k: v for k, v in new.items() if k != "roles"}
    lines.extend(_differences(others_old, others_new, ""))
    return lines or ["no change in effect (the policy's canonical form differs only in encoding)"]


def _role_added(name: str, role: dict[str, Any]) -> str:
    powers = [power for power in _POWERS if role.get(power)]
    return (
        f"role {name} added: members {_listing(role.get('members', []))}; max_minutes {role.get('max_minutes')}, "
        f"scope {role.get('scope')}; {', '.join(powers) if powers else 'no powers'}"
    )


def _differences(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(old.keys() | new.keys()):
            where = f"{path}.{key}" if path else key
            if key not in new:
                lines.append(f"{where} removed (was {_value(old[key])})")
            elif key not in old:
                lines.append(f"{where} added: {_value(new[key])}")
            else:
                lines.extend(_differences(old[key], new[key], where))
        return lines
    if old == new:
        return []
    if isinstance(old, list) and isinstance(new, list) and _plain(old) and _plain(new):
        added = [item for item in new if item not in old]
        removed = [item for item in old if item not in new]
        parts = ([f"added {_listing(added)}"] if added else []) + ([f"removed {_listing(removed)}"] if removed else [])
        return [f"{path}: {'; '.join(parts)}"] if parts else []
    return [f"{path}: {_value(old)} → {_value(new)}"]


def _plain(items: list[Any]) -> bool:
    return all(isinstance(item, (str, int, bool)) or item is None for item in items)


def _listing(items: list[Any]) -> str:
    return ", ".join(str(item) for item in items) if items else "none"


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return canonical_json(value)
    return json.dumps(value, ensure_ascii=False)
