"""Reading the text after `/impersonate` (bot.slack.command_text)."""
import pytest

from bot.slack.command_text import Flag, Help, Request, Revoke, parse_impersonate


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


def test_revoke_reads_the_session_id_as_the_revoke_command_did():
    assert parse_impersonate("revoke 0f0c8e8e-5b7e-4c55-9a43-8f0d3e1c2b11") == Revoke("0f0c8e8e-5b7e-4c55-9a43-8f0d3e1c2b11")
