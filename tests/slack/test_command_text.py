"""Reading the text after `/impersonate` (bot.slack.command_text)."""
import pytest

from bot.slack.command_text import Flag, Help, Request, Revoke, parse_impersonate, revoke_command_target, ticket_in_message

SESSION_ID = "5f0c6f5e-8a37-4a4f-9d0b-6c1f7b6f2a11"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", Request("")),
        ("  acme ", Request("  acme ")),
        ("help", Help()),
        ("HELP me", Help()),
        ("revoke", Revoke("")),
        ("flag acme", Flag("acme")),
        ("Flag", Flag("")),
        ("flag two words", Flag("")),
        ("flag " + "a" * 151, Flag("")),  # longer than any account id we can offer
        ("revok abc", Help(unknown="revok")),
        ("status now please", Help(unknown="status")),
        ("x" * 100 + " y", Help(unknown="x" * 40)),
    ],
)
def test_parse_impersonate(text, parsed):
    assert parse_impersonate(text) == parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [("revoke " + SESSION_ID, SESSION_ID), ("REVOKE " + SESSION_ID, SESSION_ID), ("revoke", ""), ("revoke x", ""), ("revoke a b", ""), ("acme", None), ("", None), ("revoker", None)],
)
def test_the_revoke_subcommand(text, expected):
    assert revoke_command_target(text) == expected


def test_revoke_reads_the_session_id_as_the_revoke_command_did():
    assert parse_impersonate("revoke 0f0c8e8e-5b7e-4c55-9a43-8f0d3e1c2b11") == Revoke("0f0c8e8e-5b7e-4c55-9a43-8f0d3e1c2b11")


@pytest.mark.parametrize(
    ("message", "reference", "link", "ticket"),
    [
        ({"text": "New ticket <https://help.example.com/agent/tickets/48213|#48213>: cannot see invoices"},
         "#48213", "https://help.example.com/agent/tickets/48213", "https://help.example.com/agent/tickets/48213"),
        # the link that names the key wins over another; &amp; in a link is Slack's escaping
        ({"text": "see <https://status.example.com|status>", "attachments": [{"title": "SUP-12", "title_link": "https://t.example.com/SUP-12?a=1&amp;b=2"}]},
         "SUP-12", "https://t.example.com/SUP-12?a=1&b=2", "https://t.example.com/SUP-12?a=1&b=2"),
        ({"text": "OPS-7 is on fire"}, "OPS-7", None, "OPS-7"),
        ({"text": "nothing here, not even &#123;"}, None, None, None),
        ({"text": "x", "blocks": [{"type": "actions", "elements": [{"type": "button", "url": "https://h.example.com/t/" + "9" * 300}]}]},
         None, "https://h.example.com/t/" + "9" * 300, None),  # too long to be a ticket reference
    ],
)
def test_ticket_in_message(message, reference, link, ticket):
    hint = ticket_in_message(message)
    assert (hint.reference, hint.link, hint.ticket) == (reference, link, ticket)
