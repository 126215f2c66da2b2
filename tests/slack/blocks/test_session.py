"""bot/slack/blocks/session.py: the link DM, the live session and its end, more time, the
expiry warning and the revocation and lapsed-link notices."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from slack_sdk.models.views import View

from bot.domain.policy import REASON_MAX_LENGTH
from bot.slack.blocks.session import (
    ExtensionAnswer,
    expiry_warning_message,
    extension_answer_from_state,
    extension_errors,
    extension_modal,
    extension_outcome_message,
    extension_pending_message,
    grant_message,
    link_lapsed_message,
    revoked_notice_message,
    session_active_message,
    session_over_message,
)
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.block_rules import all_texts, problems, walk
from tests.slack.blocks.factories import (
    DECIDED_AT,
    LATER,
    LINK_URL,
    SESSION_ID,
    STARTED,
    UUID,
    ask,
    buttons_of,
    check,
    decided,
    extension_view,
    granted,
    hostile_request,
    inputs,
    nudged,
    rendered_text,
    request_view,
    session_view,
)


def test_grant_message_holds_the_link_once_outside_user_text():
    text, message_blocks = grant_message(granted(hostile_request()))
    sections = [b for b in message_blocks if b.get("block_id") == BlockId.GRANT_LINK.value]
    assert len(sections) == 1
    assert sections[0]["text"]["text"].startswith(f"<{LINK_URL}|Open session>\n")
    assert json.dumps(message_blocks).count(LINK_URL) == 1
    assert LINK_URL not in text  # notifications and lock screens never show the link


def test_grant_message_says_what_the_link_opens_and_for_how_long():
    _, message_blocks = grant_message(granted(request_view(scope="read_write", duration_minutes=120)))
    rendered = "\n".join(all_texts(message_blocks))
    assert "valid for 5 minutes, until 15:05 CET" in rendered  # the agent's time zone (Paris)
    assert "ACME Corp (acme)" in rendered
    assert "Bob Builder (bob@acme.example)" in rendered
    assert "Read and write" in rendered
    assert "2 hours, from when you open the link" in rendered
    assert "SUP-1234" in rendered


@pytest.mark.parametrize(
    ("can_request_extension", "second"), [(True, ActionId.REQUEST_EXTENSION), (False, ActionId.START_NEW_REQUEST)]
)
def test_session_active_message_buttons_carry_only_the_session_id(can_request_extension, second):
    text, message_blocks = session_active_message(session_view(request_view()), can_request_extension=can_request_extension)
    assert message_blocks[0]["text"]["text"] == "Session active until 15:30 CET"  # 14:30 UTC in Paris
    end, other = buttons_of(message_blocks)
    assert end["action_id"] == ActionId.END_SESSION.value and "confirm" in end
    assert other["action_id"] == second.value
    assert end["value"] == other["value"] == SESSION_ID and UUID.match(end["value"])
    assert "15:30 CET" in text


@pytest.mark.parametrize(
    ("changes", "headline"),
    [
        ({"end_reason": "ended", "ended_by": "UAGENT1", "ended_at": STARTED + timedelta(minutes=10)}, "Session ended at 15:10 CET"),
        ({"end_reason": "expired", "ended_at": STARTED + timedelta(minutes=30)}, "Session expired at 15:30 CET"),
        ({"end_reason": "revoked", "ended_by": "USECURITY1", "ended_at": STARTED + timedelta(minutes=5)}, "Session was revoked at 15:05 CET"),
        ({}, "Session expired at 15:30 CET"),  # still marked active, but over by the clock
    ],
)
def test_session_over_message_wording_and_its_one_button(changes, headline):
    text, message_blocks = session_over_message(session_view(request_view(), **changes))
    assert message_blocks[0]["text"]["text"] == headline
    if changes.get("end_reason") == "revoked":
        # security took the access away: nothing invites the agent straight back
        assert not [obj for _, obj in walk(message_blocks) if obj.get("type") in ("button", "actions")]
    else:
        # ended or expired: ask again (a re-initiation); the value is the session id only
        (again,) = buttons_of(message_blocks)
        assert (again["action_id"], again["value"]) == (ActionId.START_NEW_REQUEST.value, SESSION_ID)
        assert [b["block_id"] for b in message_blocks if b["type"] == "actions"] == [BlockId.SESSION_ACTIONS.value]
    assert problems(message_blocks, surface="message") == []
    if changes.get("end_reason") == "ended":
        assert "ended by you" in "\n".join(all_texts(message_blocks))
    if changes.get("end_reason") == "revoked":
        assert "revoked by security" in "\n".join(all_texts(message_blocks))


def test_unknown_time_zone_falls_back_to_utc():
    _, message_blocks = session_active_message(session_view(request_view(agent_tz="Not/AZone")))
    assert message_blocks[0]["text"]["text"] == "Session active until 14:30 UTC"


def test_grant_message_after_approval_names_the_approver():
    _, message_blocks = grant_message(granted(request_view()), approved_by="UMANAGER1")
    assert "Approved by <@UMANAGER1>." in rendered_text(message_blocks)
    assert json.dumps(message_blocks).count(LINK_URL) == 1


def test_extension_pending_message_names_who_was_asked_and_offers_no_second_ask():
    request = request_view(state="active")
    _, message_blocks = extension_pending_message(ask(request, extension=extension_view(request)))
    assert "You asked for 30 minutes more. Waiting for <@UMANAGER1> and <@UMANAGER2>." in rendered_text(message_blocks)
    assert [b["action_id"] for b in buttons_of(message_blocks)] == [ActionId.END_SESSION.value]
    with pytest.raises(ValueError):
        extension_pending_message(ask(request))


@pytest.mark.parametrize(
    ("outcome", "notice"),
    [
        ("approved", "Your request for 30 minutes more was approved by <@UMANAGER1> at 15:12 CET."),
        ("denied", "Your request for 30 minutes more was denied by <@UMANAGER1> at 15:12 CET: Enough for today"),
        ("expired", "Your request for 30 minutes more expired without a decision."),
    ],
)
def test_extension_outcome_message_edits_the_live_session(outcome, notice):
    request = request_view(state="active")
    result = decided(request, outcome, reason="Enough for today" if outcome == "denied" else None, extension=extension_view(request))
    _, message_blocks = extension_outcome_message(result, can_request_extension=True)
    assert message_blocks[0]["text"]["text"] == "Session active until 16:00 CET"  # the session as the domain returned it
    assert message_blocks[1]["text"]["text"] == notice
    assert [b["action_id"] for b in buttons_of(message_blocks)] == [ActionId.END_SESSION.value, ActionId.REQUEST_EXTENSION.value]


def test_extension_outcome_message_never_revives_a_session_that_is_over():
    request = request_view(state="active")
    result = decided(request, "expired", by=None, extension=extension_view(request))
    over = replace(result, session=replace(result.session, ended_at=DECIDED_AT - timedelta(minutes=1), request=replace(request, state="ended")))
    assert extension_outcome_message(over, can_request_extension=True) is None
    past_end = replace(result, at=result.session.expires_at)
    assert extension_outcome_message(past_end, can_request_extension=True) is None
    assert extension_outcome_message(decided(request, "approved"), can_request_extension=True) is None  # not an extension


def test_extension_modal_offers_the_policy_choices_and_carries_the_session_id():
    view = extension_modal(SESSION_ID, choices_minutes=[15, 30, 60], reason_min_length=10)
    assert problems(view, surface="modal") == []
    assert view["callback_id"] == CallbackId.REQUEST_EXTENSION.value
    assert view["private_metadata"] == SESSION_ID
    fields = inputs(view)
    minutes = fields[BlockId.EXTENSION_MINUTES.value]["element"]
    assert [o["value"] for o in minutes["options"]] == ["15", "30", "60"] and minutes["initial_option"]["value"] == "15"
    reason = fields[BlockId.EXTENSION_REASON.value]["element"]
    assert reason["min_length"] == 10 and reason["max_length"] == REASON_MAX_LENGTH
    View(**view).validate_json()
    assert "private_metadata" not in extension_modal("../etc", choices_minutes=[15], reason_min_length=10)


@pytest.mark.parametrize(("minutes", "expected"), [("30", 30), ("forged", 0), (None, 0), ("-5", 0)])
def test_extension_answer_from_state(minutes, expected):
    values = {
        BlockId.EXTENSION_MINUTES.value: {
            ActionId.EXTENSION_MINUTES_SELECT.value: {"type": "static_select", "selected_option": None if minutes is None else {"value": minutes}}
        },
        BlockId.EXTENSION_REASON.value: {ActionId.EXTENSION_REASON_INPUT.value: {"type": "plain_text_input", "value": "more to do"}},
    }
    assert extension_answer_from_state(values) == ExtensionAnswer(expected, "more to do")
    assert list(extension_errors("no")) == [BlockId.EXTENSION_REASON.value]


def test_the_agents_session_dm_says_who_was_asked_for_more_time_and_on_escalation():
    request = request_view(state="active")
    _, message_blocks = extension_pending_message(nudged(ask(request, extension=extension_view(request))))
    shown = rendered_text(message_blocks)
    assert "Waiting for <@UMANAGER1> and <@UMANAGER2>." in shown
    assert "also sent to <@ULEAD1> and <@ULEAD2>" in shown and "reminded at" in shown
    assert "<@ULEAD1>" in json.dumps(message_blocks)


@pytest.mark.parametrize("can_extend", [True, False])
def test_the_expiry_warning_offers_end_now_and_extend_where_allowed(can_extend):
    session = session_view(hostile_request())
    blocks = check(expiry_warning_message(session, now=session.expires_at - timedelta(minutes=5), can_request_extension=can_extend))
    assert blocks[0]["text"]["text"] == "Your session ends in 5 minutes"
    expected = [ActionId.END_SESSION.value] + ([ActionId.REQUEST_EXTENSION.value] if can_extend else [])
    assert [b["action_id"] for b in buttons_of(blocks)] == expected


def test_the_revocation_notice_and_the_lapsed_link_are_valid():
    revoked = session_view(hostile_request(), ended_at=LATER, end_reason="revoked", ended_by="USECURITY1")
    blocks = check(revoked_notice_message(revoked))
    assert "<@USECURITY1>" in blocks[1]["text"]["text"] and buttons_of(blocks) == []
    lapsed = check(link_lapsed_message(hostile_request(), lapsed_at=LATER))
    assert "/l/" not in json.dumps(lapsed)
