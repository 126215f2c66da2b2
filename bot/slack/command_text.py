"""What people's text asks for, as typed objects (listeners route on their type; nothing here
decides anything): the text after `/impersonate`, the text after `/impersonation-log`, and the
ticket a message is about (the message shortcut).

The text after `/impersonate`:

- `help` → Help; a first word that is no sub-command, followed by more words → Help naming
  that word (an unknown sub-command is answered with the usage, never guessed at);
- `revoke <session id>` → Revoke (revoke_command_target reads the id);
- `flag <account>` → Flag;
- anything else (nothing, or one word: an account to pre-fill) → Request.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain.log_query import LogOptions, QueryError
from bot.domain.policy import TICKET_MAX_LENGTH
from bot.slack import limits
from bot.slack.blocks.state import carried_id
from bot.slack.mrkdwn import truncate_plain


class SubCommand(str, enum.Enum):
    HELP = "help"
    REVOKE = "revoke"
    FLAG = "flag"


@dataclass(frozen=True)
class Help:
    #: the word that was not a sub-command (user text: escape before showing), if any
    unknown: str | None = None


@dataclass(frozen=True)
class Revoke:
    #: "" when missing or not one of our ids (the domain refuses it, audited)
    session_id: str


@dataclass(frozen=True)
class Flag:
    #: the account named after `flag` ("" when none)
    account: str


@dataclass(frozen=True)
class Request:
    #: the rest of the text: an account to pre-fill when it names one
    text: str


ImpersonateText = Help | Revoke | Flag | Request


def revoke_command_target(text: str) -> str | None:
    """The session id of `/impersonate revoke <session id>`, "" when the id is missing or not
    one of ours (the domain then refuses, audited), or None when the text is not a revoke
    command at all (it names an account to pre-fill instead)."""
    words = text.split()
    if not words or words[0].casefold() != SubCommand.REVOKE.value:
        return None
    return carried_id(words[1]) if len(words) == 2 else ""

#: the longest unknown word echoed back (it is the person's own text, cut to fit)
UNKNOWN_SHOWN_MAX = 40


def parse_impersonate(text: str) -> ImpersonateText:
    words = text.split()
    first = words[0].casefold() if words else ""
    if first == SubCommand.HELP.value:
        return Help()
    if first == SubCommand.REVOKE.value:
        return Revoke(revoke_command_target(text) or "")
    if first == SubCommand.FLAG.value:
        account = words[1] if len(words) == 2 else ""
        return Flag(account if len(account) <= limits.OPTION_VALUE_MAX else "")
    if len(words) > 1:
        return Help(unknown=words[0][:UNKNOWN_SHOWN_MAX])
    return Request(text)


# ---------------------------------------------------------------------------- /impersonation-log

#: the `/impersonation-log` syntax, shown under any problem with a query
LOG_USAGE = "Usage: /impersonation-log account:ACCOUNT [agent:@person] [since:90d|2026-01-01] [until:7d|2026-03-31]"
LOG_KEYS = ("account", "agent", "since", "until")
#: the longest word of the person's own text echoed back in a problem (cut to fit)
LOG_WORD_SHOWN_MAX = 40
#: `<@U123>` or `<@U123|name>`: how Slack sends a mention in the text of a command registered
#: with `should_escape: true` (https://api.slack.com/interactivity/slash-commands#creating_commands)
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,31})(?:\|[^>]*)?>$")


def parse_log_command(text: str) -> LogOptions | QueryError:
    """`account:ACCOUNT [agent:@person] [since:…] [until:…]` into the domain's LogOptions, the
    agent's mention read as its user id; or what is wrong with the syntax. The values are
    checked, and the times resolved, by bot.domain.log_query."""
    words = _log_words(text)
    if isinstance(words, QueryError):
        return words
    given: dict[str, str] = {}
    for word in words:
        key, colon, value = word.partition(":")
        key = key.lower()
        if not colon or key not in LOG_KEYS:
            return QueryError(f"`{truncate_plain(word, LOG_WORD_SHOWN_MAX)}` is not one of {', '.join(k + ':' for k in LOG_KEYS)}")
        if key in given:
            return QueryError(f"{key}: is given twice")
        if not value:
            return QueryError(f"{key}: needs a value")
        given[key] = value
    agent = given.get("agent")
    mention = _MENTION.match(agent) if agent is not None else None
    return LogOptions(
        account=given.get("account"),
        agent=mention.group(1) if mention else agent,
        since=given.get("since"),
        until=given.get("until"),
    )


def _log_words(text: str) -> list[str] | QueryError:
    """Split on white space, keeping `<…>` (a mention, whose name may hold spaces) whole."""
    words: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text.strip():
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
            if depth < 0:
                return QueryError("unbalanced `>`")
        if char.isspace() and depth == 0:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if depth != 0:
        return QueryError("unbalanced `<`")
    if current:
        words.append("".join(current))
    return words


# ---------------------------------------------------------------------------- a ticket's message

#: a ticket key as helpdesks and trackers write it: SUP-1234 (Jira, Linear), #48213 (Zendesk,
#: Freshdesk: "Ticket #48213")
TICKET_KEY = re.compile(r"\b([A-Z][A-Z0-9]{1,9}-[0-9]{1,9})\b|(?<![\w&])#([0-9]{2,12})\b")
#: a link in a message's mrkdwn: Slack sends `<https://…|label>` or `<https://…>`; a bare URL
#: in block text is taken too
MESSAGE_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>|(?<![<|\w])(https?://[^\s<>|]+)")


@dataclass(frozen=True)
class TicketHint:
    """What a message (a helpdesk integration's post) says about its ticket: its key and its
    link, either possibly missing. Only a pre-fill for the form: the agent sees it and
    submits it, and the domain checks the ticket like any other."""

    reference: str | None = None
    link: str | None = None

    @property
    def ticket(self) -> str | None:
        """What the form's ticket field starts with: the link (it names the ticket and leads
        to it), else the key; None when neither would pass as a ticket reference."""
        for value in (self.link, self.reference):
            if value and len(value) <= TICKET_MAX_LENGTH and " " not in value:
                return value
        return None


def _message_texts(message: Mapping[str, Any]) -> list[str]:
    """The message's text, then every text and URL in its blocks and attachments (helpdesk
    integrations put the ticket in a section, a button or an attachment)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "url", "title_link", "title", "fallback", "pretext") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    text = message.get("text")
    if isinstance(text, str):
        found.append(text)
    walk(message.get("blocks"))
    walk(message.get("attachments"))
    return found


def ticket_in_message(message: Mapping[str, Any]) -> TicketHint:
    """The first ticket key and the first link in a message (the link that mentions the key,
    when one does)."""
    reference: str | None = None
    links: list[str] = []
    for text in _message_texts(message):
        if reference is None:
            key = TICKET_KEY.search(text)
            if key is not None:
                reference = key.group(1) or f"#{key.group(2)}"
        links += [one or bare for one, bare in MESSAGE_LINK.findall(text)]
        if text.startswith(("http://", "https://")) and " " not in text:
            links.append(text)  # a button's or an attachment's url field
    plain_key = reference.lstrip("#") if reference else None
    link = next((url for url in links if plain_key and plain_key in url), links[0] if links else None)
    return TicketHint(reference, link.replace("&amp;", "&") if link else None)
