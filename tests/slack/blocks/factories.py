"""Domain views for the builder tests: a plain request, one whose every field is hostile
Slack markup, its session, asks and decisions, and the assertions every message must pass
(escaped everywhere, within Slack's limits, readable by slack_sdk's models)."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from slack_sdk.models.blocks import Block

from bot.domain.approvals import ApprovalAsk, Decided, ExtensionView, MessageView, PastSession
from bot.domain.requests import Granted, ModalOptions, Pending
from bot.domain.views import IssuedLink, RequestView, SessionView
from tests.slack.block_rules import all_texts, mrkdwn_texts, problems, walk

HOSTILE = "<!channel> <@U123> <https://evil.example|click> &amp; <!subteam^S1>"
#: what must never reach a mrkdwn field or a fallback text unescaped
RAW_FRAGMENTS = ["<!channel>", "<@U123>", "<https://evil.example|click>", "<!subteam^S1>"]
LINK_URL = "http://bot.test/l/" + "T" * 43
STARTED = datetime(2026, 1, 15, 14, 0, tzinfo=timezone.utc)
SESSION_ID = "5f0c6f5e-8a37-4a4f-9d0b-6c1f7b6f2a11"
REQUEST_ID = "0b8f2a1e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def request_view(**changes) -> RequestView:
    base = RequestView(
        id=REQUEST_ID,
        state="granted",
        agent_slack_id="UAGENT1",
        agent_tz="Europe/Paris",
        account="acme",
        account_name="ACME Corp",
        account_flags=frozenset(),
        customer_user="u-bob",
        customer_user_name="Bob Builder",
        customer_user_email="bob@acme.example",
        reason="Customer reports the invoice page is blank",
        ticket="SUP-1234",
        duration_minutes=30,
        scope="read_only",
        gated_by=frozenset(),
        created_at=STARTED,
        agent_channel="DAGENT1",
        agent_message_ts="1700000000.000001",
    )
    return replace(base, **changes)


def hostile_request(**changes) -> RequestView:
    return request_view(
        account_name=HOSTILE * 10,
        customer_user_name=HOSTILE * 10,
        customer_user_email=f"x{HOSTILE}@acme.example",
        reason=(HOSTILE + " ") * 80,  # ~5000 characters, escaping makes it longer still
        ticket=HOSTILE,
        **changes,
    )


def session_view(request: RequestView, **changes) -> SessionView:
    base = SessionView(
        id=SESSION_ID,
        request=replace(request, state="active"),
        started_at=STARTED,
        expires_at=STARTED + timedelta(minutes=30),
        ended_at=None,
        end_reason=None,
        ended_by=None,
    )
    return replace(base, **changes)


def granted(request: RequestView) -> Granted:
    return Granted(request, IssuedLink(url=LINK_URL, expires_at=STARTED + timedelta(minutes=5)), redeem_window_minutes=5)


def modal_options(**changes) -> ModalOptions:
    base = ModalOptions(
        role="support",
        duration_choices=(15, 30, 60),
        default_duration=15,
        can_read_write=False,
        reason_min_length=10,
        ticket_required=True,
    )
    return replace(base, **changes)


def assert_no_raw_user_markup(text: str) -> None:
    for fragment in RAW_FRAGMENTS:
        assert fragment not in text, f"{fragment!r} reached Slack unescaped"


def assert_escaped_everywhere(text: str, message_blocks: list[dict]) -> None:
    assert_no_raw_user_markup(text)
    for mrkdwn in mrkdwn_texts(message_blocks):
        assert_no_raw_user_markup(mrkdwn)
        # the only "<" left in mrkdwn is our own link to the landing page
        # the only "<" left in mrkdwn is our own link to the landing page and our mentions of
        # well-formed Slack user ids
        ours = re.sub(r"<http://bot\.test/l/[A-Za-z0-9_-]{43}\|Open session>", "", mrkdwn)
        assert re.sub(r"<@[UW][A-Z0-9]+>", "", ours).count("<") == 0


def assert_slack_sdk_round_trips(message_blocks: list[dict]) -> None:
    """slack_sdk's own Block Kit models parse and re-serialise every block unchanged, so no
    key is misspelt or misplaced (the models drop what they do not know)."""
    parsed = Block.parse_all(message_blocks)
    assert [b.to_dict() for b in parsed] == message_blocks


EXTENSION_ID = "9c1d2e3f-4a5b-4c6d-8e9f-a0b1c2d3e4f5"
DECIDED_AT = STARTED + timedelta(minutes=12)


def extension_view(request: RequestView, **changes) -> ExtensionView:
    base = ExtensionView(
        id=EXTENSION_ID,
        session=session_view(request),
        requested_by=request.agent_slack_id,
        reason="Still reproducing the invoice bug",
        minutes=30,
        state="pending",
        approvals_required=1,
        pending_expires_at=STARTED + timedelta(minutes=40),
        new_expires_at=None,
    )
    return replace(base, **changes)


def past_sessions(reason: str = "Earlier look at billing") -> tuple[PastSession, ...]:
    return (
        PastSession(STARTED - timedelta(days=2), STARTED - timedelta(days=2) + timedelta(minutes=25), "ended", reason),
        PastSession(STARTED - timedelta(days=1), None, None, reason),
    )


def ask(request: RequestView, *, extension: ExtensionView | None = None, approvers=("UMANAGER1", "UMANAGER2")) -> ApprovalAsk:
    return ApprovalAsk(request, tuple(approvers), past_sessions(request.reason), extension)


def decided(request: RequestView, outcome: str, *, by: str | None = "UMANAGER1", reason: str | None = None, extension: ExtensionView | None = None) -> Decided:
    link = IssuedLink(url=LINK_URL, expires_at=DECIDED_AT + timedelta(minutes=5)) if outcome == "approved" and extension is None else None
    session = None
    if extension is not None:
        session = replace(extension.session, expires_at=extension.session.expires_at + timedelta(minutes=extension.minutes))
    return Decided(
        request,
        outcome,
        by,
        DECIDED_AT,
        reason,
        (MessageView("UMANAGER1", "DMANAGER1", "1700000000.000002"),),
        link=link,
        extension=replace(extension, state=outcome) if extension is not None else None,
        session=session,
    )


def gated_hostile() -> RequestView:
    return hostile_request(
        state="pending",
        account_flags=frozenset({"regulated", "sensitive"}),
        gated_by=frozenset({"regulated"}),
        approvals_required=2,
        pending_expires_at=STARTED + timedelta(minutes=30),
    )


def pending(request: RequestView, approvals_required: int, approvers: tuple[str, ...]) -> Pending:
    return Pending(request, approvals_required, ApprovalAsk(request, approvers, ()))


def buttons_of(message_blocks) -> list[dict]:
    return [obj for _, obj in walk(message_blocks) if obj.get("type") == "button"]


def inputs(view: dict) -> dict[str, dict]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def rendered_text(message_blocks) -> str:
    return "\n".join(all_texts(message_blocks))


def regulated_request(**changes) -> RequestView:
    base = dict(
        state="pending",
        account_flags=frozenset({"regulated", "sensitive"}),
        gated_by=frozenset({"regulated"}),
        approvals_required=2,
        pending_expires_at=STARTED + timedelta(minutes=30),
    )
    return request_view(**{**base, **changes})


def reinitiation(ordinal: int, *, after: timedelta, **changes) -> RequestView:
    """A request made `after` the end of the agent's previous session with the user."""
    return regulated_request(
        previous_session_id=SESSION_ID, reinitiation_ordinal=ordinal, previous_session_ended_at=STARTED - after, **changes
    )


REMINDED_AT = STARTED + timedelta(minutes=15)
ESCALATED_AT = STARTED + timedelta(minutes=22)


def nudged(ask_, *, escalated_to=("ULEAD1", "ULEAD2")):
    return replace(
        ask_,
        approvers=(*ask_.approvers, *escalated_to),
        reminded_at=REMINDED_AT,
        escalated_at=ESCALATED_AT,
        escalated_to=tuple(escalated_to),
    )


LATER = STARTED + timedelta(minutes=30)


def check(message) -> list[dict]:
    """Every message: within Slack's limits, our ids only, no raw user markup anywhere."""
    text, blocks = message
    assert problems(blocks, surface="message") == []
    assert_no_raw_user_markup(text)
    for piece in all_texts(blocks):
        assert_no_raw_user_markup(piece)
    for button in buttons_of(blocks):
        assert UUID.match(button["value"]), button["value"]
    return blocks
