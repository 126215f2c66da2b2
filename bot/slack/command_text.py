"""What the text after `/impersonate` asks for, as a typed object (the listener routes on its
type; nothing here decides anything).

- `help` → Help; a first word that is no sub-command, followed by more words → Help naming
  that word (an unknown sub-command is answered with the usage, never guessed at);
- `revoke <session id>` → Revoke (watch_blocks.revoke_command_target reads the id);
- `flag <account>` → Flag;
- anything else (nothing, or one word: an account to pre-fill) → Request.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.slack import limits
from bot.slack.watch_blocks import revoke_command_target


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
