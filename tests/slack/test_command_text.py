"""Reading the text after `/impersonate` and `/impersonation-log` (bot.slack.command_text)."""
from datetime import datetime, timezone

import pytest

from bot.domain.log_query import MAX_DAYS, LogOptions, LogQuery, QueryError, resolve
from bot.slack.command_text import Flag, Help, Request, Revoke, parse_impersonate, parse_log_command, revoke_command_target, ticket_in_message

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


# ---------------------------------------------------------------------------- /impersonation-log

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("account:acme", LogOptions("acme")),
        ("ACCOUNT:acme since:7d", LogOptions("acme", since="7d")),
        (
            "  account:acme   agent:<@U0AGENT1|jane doe>  since:2026-01-01 until:2026-01-31 ",
            LogOptions("acme", agent="U0AGENT1", since="2026-01-01", until="2026-01-31"),
        ),
        ("agent:<@W0GRID1> account:acme.eu", LogOptions("acme.eu", agent="W0GRID1")),
        ("account:acme agent:U0AGENT1 until:2099-01-01", LogOptions("acme", agent="U0AGENT1", until="2099-01-01")),
        # not a mention: passed on as typed, for the domain to refuse
        ("account:acme agent:bob", LogOptions("acme", agent="bob")),
        ("", LogOptions(None)),
    ],
)
def test_log_commands_read_as_options_with_the_agents_id(text, expected):
    assert parse_log_command(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("acme", "is not one of account:, agent:, since:, until:"),
        ("account:acme colour:red", "`colour:red` is not one of"),
        ("account:acme account:globex", "account: is given twice"),
        ("account:", "account: needs a value"),
        ("account:acme agent:<@U0AGENT1", "unbalanced `<`"),
        ("account:acme agent:U0AGENT1>", "unbalanced `>`"),
        ("x" * 60 + ":1", "`" + "x" * 39 + "…` is not one of"),
    ],
)
def test_bad_log_command_syntax_says_what_is_wrong(text, problem):
    result = parse_log_command(text)
    assert isinstance(result, QueryError)
    assert problem in result.problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("account:acme agent:<@U0AGENT1|jane> since:2026-01-01", LogQuery("acme", datetime(2026, 1, 1, tzinfo=timezone.utc), NOW, "U0AGENT1")),
        ("account:acme since:yesterday", QueryError(f"since: takes a number of days (90d) or a date (2026-01-01), at most {MAX_DAYS} days back")),
    ],
)
def test_the_domain_resolves_what_the_command_read(text, expected):
    assert resolve(parse_log_command(text), now=NOW) == expected
