"""Every callback_id, block_id and action_id the Slack face uses, in one place.

Listeners match on these and builders emit them, so a typo cannot make a button or a field
silently stop working. Values are short, stable strings: Slack echoes them back in payloads,
and they must stay within `limits.BLOCK_ID_MAX` / `limits.ACTION_ID_MAX`.
"""
from __future__ import annotations

import enum


class SlashCommand(str, enum.Enum):
    """Slash commands this app answers (their names are declared in manifest.yaml)."""

    IMPERSONATE = "/impersonate"


class CallbackId(str, enum.Enum):
    """`callback_id` of the modals this app opens (view_submission is routed on it)."""

    IMPERSONATE_REQUEST = "impersonate_request"
    #: the informational view shown to someone without an impersonation role (no submit)
    IMPERSONATE_UNAVAILABLE = "impersonate_unavailable"


class BlockId(str, enum.Enum):
    """`block_id` of blocks whose state or errors the app reads or writes."""

    # the request modal's inputs; `response_action: errors` names these
    ACCOUNT = "account"
    USER = "user"
    REASON = "reason"
    TICKET = "ticket"
    DURATION = "duration"
    SCOPE = "scope"
    # messages
    GRANT_LINK = "grant_link"
    SESSION_ACTIONS = "session_actions"


class ActionId(str, enum.Enum):
    """`action_id` of interactive elements (block_actions and block_suggestion route on it)."""

    ACCOUNT_SELECT = "account_select"
    USER_SELECT = "user_select"
    REASON_INPUT = "reason_input"
    TICKET_INPUT = "ticket_input"
    DURATION_SELECT = "duration_select"
    SCOPE_CHOICE = "scope_choice"
    END_SESSION = "end_session"
