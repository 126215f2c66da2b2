"""Least-privilege PostgreSQL roles.

The schema is owned by one role (it runs `migrate`); the app runs as another that may only
INSERT and SELECT on the audit table — no UPDATE, DELETE or TRUNCATE privilege, and as a
non-owner it cannot drop or disable the triggers either. `impersonation-bot db grants` prints
these statements; docs/postgresql.md shows the whole set-up; tests/db/test_postgres_roles.py
proves the app role cannot change or remove an audit row.
"""
from __future__ import annotations

import re

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: tables the app reads and writes normally (everything except the audit log)
APP_TABLES = (
    "accounts",
    "account_flags",
    "customer_users",
    "assignments",
    "requests",
    "links",
    "sessions",
    "approvals",
    "extensions",
    "message_refs",
    "api_keys",  # the product API authenticates with these
    # the Slack outbox, channel pacing, job claims and alerts
    "outbox",
    "channel_pace",
    "job_claims",
    "alerts",
    "alert_marks",
    "slack_deliveries",  # replayed Slack requests act once (bot/domain/deliveries.py)
    "signing_keys",  # the keys' public halves: the JWKS and checkpoint verification (bot/domain/keyring.py)
    "webhook_subscriptions",  # notification webhooks' endpoints and secrets (bot/domain/webhooks.py)
    "webhook_events",  # each event's body as sent, for retries under the same id
    "home_tabs",  # who opened the Home tab, to publish it again when it changes (bot/domain/home.py)
    "personal_values",  # the erasable personal values audit events refer to (bot/domain/personal.py)
)


def _ident(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case PostgreSQL identifier")
    return f'"{name}"'


def app_role_grants(*, schema: str, app_role: str, extra_tables: tuple[str, ...] = ()) -> list[str]:
    s, app = _ident(schema), _ident(app_role)
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {app}",
        f"GRANT USAGE ON SCHEMA {s} TO {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(f'{s}.{_ident(t)}' for t in APP_TABLES + extra_tables)} TO {app}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {app}",
        # The audit log: append and read, nothing else.
        f"GRANT SELECT, INSERT ON {s}.\"audit_events\" TO {app}",
        # The chain head is advanced by every append.
        f"GRANT SELECT, UPDATE ON {s}.\"audit_head\" TO {app}",
        f"GRANT SELECT ON {s}.\"alembic_version\" TO {app}",
    ]
    return statements
