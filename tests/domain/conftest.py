"""Fixtures and helpers shared by the tests of approvals and of more time on a session."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain.requests import RequestForm
from tests.fakes.directory_data import load_directory

REASON = "customer cannot see their invoices since Monday"


def form(account="globex", user="u-carol", **kw) -> RequestForm:
    base = dict(account=account, user=user, reason=REASON, ticket="SUP-9", duration_minutes=30, scope="read_only")
    base.update(kw)
    return RequestForm(**base)


@pytest.fixture
def gated(ctx, session_factory, tmp_path):
    """The directory loaded with globex sensitive (gated), initech regulated, umbrella opted out."""
    load_directory(session_factory, tmp_path, flags={"globex": ["sensitive"], "initech": ["regulated"], "umbrella": ["opted_out"]})
    return ctx


def events(session_factory, type_):
    with session_factory() as db:
        return db.execute(select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq)).scalars().all()
