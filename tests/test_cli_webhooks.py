"""`impersonation-bot webhooks add|list|remove`: the secret is printed once and never listed;
a bad URL or event type is refused and writes nothing; each change is audited."""
from __future__ import annotations

import re

from bot.db.models import AuditEvent, WebhookSubscription
from tests.test_cli import on_db, rows_of, run, workdir  # noqa: F401 - fixtures


def test_add_list_remove(on_db, capsys):
    code, out, err = run(
        capsys, "webhooks", "add", "--url", "https://acme.example/hooks", "--events", "session.started,session.revoked",
        "--account", "acme", "--description", "ACME admin console", "--by", "ops@corp.example",
    )
    assert code == 0, err
    secret = re.search(r"^(whsec_[A-Za-z0-9+/=]{44})$", out, re.M).group(1)
    subscription = re.search(r"subscription (ep_[0-9a-f]{24})", out).group(1)

    code, out, _ = run(capsys, "webhooks", "list")
    assert code == 0 and secret not in out
    assert subscription in out and "https://acme.example/hooks" in out and "session.started,session.revoked" in out and "account acme" in out

    code, out, _ = run(capsys, "webhooks", "remove", subscription, "--by", "UOPS1")
    assert code == 0 and "removed" in out
    code, _, err = run(capsys, "webhooks", "remove", subscription, "--by", "UOPS1")
    assert code == 2 and "no live subscription" in err
    code, out, _ = run(capsys, "webhooks", "list")
    assert "no webhook subscriptions" in out
    code, out, _ = run(capsys, "webhooks", "list", "--all")
    assert subscription in out and "removed" in out
    events = rows_of(on_db, AuditEvent)
    assert [e.type for e in events] == ["webhook.subscribed", "webhook.removed"]
    assert all(secret not in e.details for e in events)


def test_a_bad_subscription_is_refused_and_writes_nothing(on_db, capsys):
    code, _, err = run(capsys, "webhooks", "add", "--url", "http://acme.example/hooks", "--by", "UOPS1")
    assert code == 2 and "https" in err
    code, _, err = run(capsys, "webhooks", "add", "--url", "https://acme.example/hooks", "--events", "session.peeked", "--by", "UOPS1")
    assert code == 2 and "session.peeked" in err
    code, _, err = run(capsys, "webhooks", "add", "--url", "https://acme.example/hooks", "--by", "nobody")
    assert code == 2
    assert rows_of(on_db, WebhookSubscription) == [] and rows_of(on_db, AuditEvent) == []
