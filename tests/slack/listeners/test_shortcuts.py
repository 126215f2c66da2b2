"""The Request impersonation shortcuts, driven through the Bolt app with signed requests."""
import pytest

from bot.slack.ids import BlockId, CallbackId, ShortcutId
from tests.slack.block_rules import problems
from tests.slack.signed import global_shortcut, message_shortcut, slash_command

#: a ticket as a helpdesk integration posts it: the key in the text, the link in a button
HELPDESK_MESSAGE = {
    "text": "New ticket SUP-4821 from ACME: <https://help.example.com/tickets/SUP-4821|SUP-4821> cannot see invoices",
    "bot_id": "BHELPDESK",
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*SUP-4821* cannot see invoices"}},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://help.example.com/tickets/SUP-4821"}]},
    ],
}


def ticket_element(view):
    return next(b for b in view["blocks"] if b.get("block_id") == BlockId.TICKET.value)["element"]


def test_the_global_shortcut_opens_the_modal_the_command_opens(send, slack_client):
    assert send(global_shortcut(ShortcutId.REQUEST.value)).status == 200
    send(slash_command(""))
    from_shortcut, from_command = (call["view"] for call in slack_client.calls_to("views.open"))
    assert from_shortcut == from_command
    assert from_shortcut["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value


def test_the_message_shortcut_fills_in_the_tickets_link_and_says_what_it_found(send, slack_client):
    assert send(message_shortcut(ShortcutId.REQUEST_FROM_MESSAGE.value, HELPDESK_MESSAGE)).status == 200
    (opened,) = slack_client.calls_to("views.open")
    view = opened["view"]
    assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value
    assert ticket_element(view)["initial_value"] == "https://help.example.com/tickets/SUP-4821"
    note = view["blocks"][0]["elements"][0]["text"]
    assert note == "From the message: ticket `SUP-4821` · https://help.example.com/tickets/SUP-4821"
    assert problems(view, surface="modal") == []


def test_a_message_without_a_ticket_opens_the_modal_with_nothing_filled_in(send, slack_client):
    send(message_shortcut(ShortcutId.REQUEST_FROM_MESSAGE.value, {"text": "<!channel> lunch is <here>"}))
    view = slack_client.calls_to("views.open")[0]["view"]
    assert "initial_value" not in ticket_element(view)
    assert view["blocks"][0]["elements"][0]["text"].startswith("No ticket found in that message")


@pytest.mark.parametrize("shortcut", [ShortcutId.REQUEST, ShortcutId.REQUEST_FROM_MESSAGE])
def test_someone_without_an_impersonation_role_gets_the_informational_view(send, slack_client, shortcut):
    body = global_shortcut(shortcut.value, user_id="USECURITY1") if shortcut is ShortcutId.REQUEST else message_shortcut(shortcut.value, HELPDESK_MESSAGE, user_id="USECURITY1")
    send(body)
    assert slack_client.calls_to("views.open")[0]["view"]["callback_id"] == CallbackId.IMPERSONATE_UNAVAILABLE.value
