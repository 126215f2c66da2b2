"""Block Kit for /impersonation-log, tested as functions: Slack's limits
with the longest and most hostile text, escaping, ids from the enums, buttons that carry only
the query's token, paging buttons only where there is a page to go to."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bot.domain.log_query import REFUSED_MESSAGE, Approver, LogPage, LogQuery, LogRefused, LogSummary, QueryError, SessionEntry, UnknownAccount, parse_token
from bot.reports.exports import ExportFile
from bot.slack import limits
from bot.slack.blocks.log import FILE_TITLE_MAX, PAGE_SIZE, export_comment, export_sent_text, file_title, log_answer, log_page
from bot.slack.ids import ActionId, BlockId
from tests.slack.block_rules import mrkdwn_texts, problems, walk
from tests.slack.blocks.factories import HOSTILE, assert_escaped_everywhere, assert_slack_sdk_round_trips

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
QUERY = LogQuery("acme", NOW - timedelta(days=90), NOW, "UAGENT1", "the last 90 days")
SUMMARY = LogSummary(sessions=23, agents=2, approved_sessions=3, approvers=2, break_glass=1, write_actions=7, live=1, ended=20, expired=1, revoked=1)


def entry(n: int = 0, **changes) -> SessionEntry:
    base = SessionEntry(
        session_id=f"00000000-0000-4000-8000-{n:012d}",
        request_id=f"10000000-0000-4000-8000-{n:012d}",
        agent_slack_id="UAGENT1",
        agent_email="agent1@corp.example",
        agent_role="support",
        customer_user="u-bob",
        customer_user_name="Bob Builder",
        customer_user_email="bob@acme.example",
        reason="Customer cannot see the invoice page",
        ticket="SUP-1",
        scope="read_only",
        started_at=NOW - timedelta(hours=n + 1),
        ended_at=NOW - timedelta(hours=n + 1) + timedelta(minutes=20),
        outcome="ended",
        approvers=(),
        approvals_required=0,
        break_glass=False,
        write_actions=n,
    )
    return replace(base, **changes)


def hostile_entry(n: int) -> SessionEntry:
    long = (HOSTILE + " ") * 200
    return entry(
        n,
        customer_user_name=long,
        customer_user_email=long,
        reason=long,
        ticket=long,
        approvers=tuple(Approver(f"UMANAGER{i}", long) for i in range(9)),
        approvals_required=1,
    )


def page(entries, *, number: int = 0, pages: int = 3, name: str = "ACME Corp", tz: str | None = "Europe/Paris") -> LogPage:
    return LogPage(QUERY, name, SUMMARY, tuple(entries), number, pages, viewer_tz=tz)


def builders() -> dict[str, tuple[str, list]]:
    full = page([hostile_entry(n) for n in range(PAGE_SIZE)], number=1, name=(HOSTILE + " ") * 20)
    return {
        "a full page of hostile text": log_answer(full),
        "an empty page": log_answer(page([], pages=1)),
        "refused": log_answer(LogRefused(REFUSED_MESSAGE)),
        "unknown account": log_answer(UnknownAccount(HOSTILE)),
        "usage": log_answer(QueryError(f"`{HOSTILE}` is not one of account:")),
    }


@pytest.mark.parametrize("name", list(builders()))
def test_answers_escape_hostile_text_and_fit_slack_limits(name):
    text, message = builders()[name]
    assert problems(message, surface="message") == []
    assert 0 < len(text) <= limits.MESSAGE_TEXT_MAX
    assert_escaped_everywhere(text, message)
    assert_slack_sdk_round_trips(message)
    for mrkdwn in (obj for _, obj in walk(message) if obj.get("type") == "mrkdwn"):
        assert mrkdwn["verbatim"] is True


def test_a_page_shows_the_summary_and_each_session():
    approved = entry(1, approvers=(Approver("UMANAGER1", "manager1@corp.example"),), approvals_required=1, outcome="expired")
    live = entry(0, outcome="live", ended_at=None, break_glass=True, approvals_required=1)
    _, message = log_page(page([live, approved], pages=1))
    texts = "\n".join(mrkdwn_texts(message))
    assert message[0] == {"type": "header", "text": {"type": "plain_text", "text": "Impersonation log: ACME Corp", "emoji": True}}
    for label, value in [("Sessions", "23"), ("Agents", "2"), ("Approved by people", "3 (by 2 approvers)"), ("Break-glass", "1"), ("Write actions recorded", "7")]:
        assert f"*{label}*\n{value}" in texts
    assert "20 ended · 1 expired · 1 revoked · 1 still open" in texts
    assert "the last 90 days, sessions by <@UAGENT1>" in texts
    live_text, approved_text = (b["text"]["text"] for b in message if "text" in b and "Reason" in b["text"]["text"])
    assert "→ now* · still open · 0 write actions" in live_text and "*break-glass* (no approval)" in live_text
    assert "<@UAGENT1> as *Bob Builder* (bob@acme.example) · Read-only" in live_text
    assert "*Reason:* Customer cannot see the invoice page" in approved_text and "*Ticket:* SUP-1" in approved_text
    assert "approved by <@UMANAGER1>" in approved_text and "· expired · 1 write action" in approved_text
    # 11:00 UTC is 12:00 in Paris: times are on the viewer's clock.
    assert "*10 Mar 12:00 CET → now*" in live_text


def test_buttons_carry_the_query_token_only_and_page_only_where_there_is_a_page():
    def buttons_of(number: int, pages: int) -> dict[str, str]:
        _, message = log_page(page([entry()], number=number, pages=pages))
        (actions,) = [b for b in message if b.get("type") == "actions"]
        assert actions["block_id"] == BlockId.LOG_ACTIONS.value
        return {e["action_id"]: e["value"] for e in actions["elements"]}

    first = buttons_of(0, 3)
    assert set(first) == {ActionId.LOG_NEXT_PAGE.value, ActionId.LOG_EXPORT_CSV.value, ActionId.LOG_EXPORT_JSON.value}
    assert parse_token(first[ActionId.LOG_NEXT_PAGE.value]) == (replace(QUERY, label=""), 1)
    assert parse_token(first[ActionId.LOG_EXPORT_CSV.value])[1] == 0
    middle = buttons_of(1, 3)
    assert parse_token(middle[ActionId.LOG_PREVIOUS_PAGE.value])[1] == 0 and parse_token(middle[ActionId.LOG_NEXT_PAGE.value])[1] == 2
    assert ActionId.LOG_NEXT_PAGE.value not in buttons_of(2, 3) and ActionId.LOG_PREVIOUS_PAGE.value not in buttons_of(0, 1)
    for value in middle.values():
        assert len(value) < 200 and "ACME" not in value and "Bob" not in value


def test_the_page_counter_says_which_sessions_these_are():
    _, message = log_page(page([entry(n) for n in range(3)], number=2, pages=3))
    assert f"Page 3 of 3 · sessions {2 * PAGE_SIZE + 1}–{2 * PAGE_SIZE + 3}, newest first" in json.dumps(message, ensure_ascii=False)


def test_usage_answer_names_the_problem_and_the_usage_line():
    text, message = log_answer(QueryError("since: must be before until:"))
    assert message[0]["text"]["text"] == "*since: must be before until:*\n`Usage: /impersonation-log account:ACCOUNT [agent:@person] [since:90d|2026-01-01] [until:7d|2026-03-31]`"
    assert "Usage:" in text


def test_export_texts_are_escaped():
    export = ExportFile("impersonation-log_acme_20260101-20260310.csv", "text/csv", f"Impersonation log: {HOSTILE}", iter(()))
    assert "<!channel>" not in export_comment(export) and "&lt;!channel&gt;" in export_comment(export)
    assert export_sent_text(export) == "Sent `impersonation-log_acme_20260101-20260310.csv` to your DMs with me."
    long = ExportFile("x.csv", "text/csv", "t" * 400, iter(()))
    assert len(file_title(long)) == FILE_TITLE_MAX
