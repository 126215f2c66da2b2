"""A flood of forged link POSTs over real HTTP: every request gets the refusal page, the audit
log gets a bounded number of events and one summary of the rest (bot/domain/refusals.py)."""
from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain.audit import verify_chain
from bot.domain.links import USER_AGENT_EXCERPT_CHARS
from bot.domain.refusals import SUMMARY_EVENT, RefusalThrottle
from bot.web.landing import CSRF_PAGE

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=timezone.utc)
BURST = 300
HOSTILE_AGENT = "Mozilla/5.0\x0b2030-03-04 INFO forged\x1b[2K" + "A" * 240


def audit_types(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        rows = list(db.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        db.expunge_all()
        return rows


def test_a_burst_of_forged_posts_writes_a_bounded_number_of_events_and_one_summary(running_bot, session_factory):
    bot = running_bot
    before = len(audit_types(session_factory))

    def forge(_: int) -> tuple[int, str]:
        response = bot.http.post(
            f"{bot.url}/l/{secrets.token_urlsafe(32)}", data={"csrf": "x"}, headers={"User-Agent": HOSTILE_AGENT}, timeout=30
        )
        return response.status_code, response.text

    with freeze_time(T0) as clock:
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(forge, range(BURST)))
        # every refusal still gets the clear page, written to the log or not
        assert all(status == CSRF_PAGE[0] and CSRF_PAGE[1] in text for status, text in answers)
        written = audit_types(session_factory)[before:]
        assert [e.type for e in written] == ["link.csrf_refused"] * RefusalThrottle().per_client
        for event in written:
            details = json.loads(event.details)
            assert details["user_agent"] == ("Mozilla/5.0 2030-03-04 INFO forged [2K" + "A" * 240)[:USER_AGENT_EXCERPT_CHARS]
            assert len(details["user_agent_sha256"]) == 16

        clock.tick(timedelta(minutes=1, seconds=1))
        assert forge(0)[0] == CSRF_PAGE[0]  # the next refusal writes the summary of the last window

    summary, next_refusal = audit_types(session_factory)[before + RefusalThrottle().per_client :]
    assert (summary.type, next_refusal.type) == (SUMMARY_EVENT, "link.csrf_refused")
    details = json.loads(summary.details)
    suppressed = BURST - RefusalThrottle().per_client
    assert details["by_cause"] == {"link.csrf_refused:missing_cookie": suppressed}
    assert details["top_clients"] == {"127.0.0.1": suppressed} and details["clients"] == 1
    with session_factory() as db:
        assert verify_chain(db)[1] is None
