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
    #: security and compliance look up an account's sessions
    IMPERSONATION_LOG = "/impersonation-log"


class CallbackId(str, enum.Enum):
    """`callback_id` of the modals this app opens (view_submission is routed on it)."""

    IMPERSONATE_REQUEST = "impersonate_request"
    #: the informational view shown to someone without an impersonation role (no submit)
    IMPERSONATE_UNAVAILABLE = "impersonate_unavailable"
    #: an approver's reason for denying a request / an extension;
    #: private_metadata carries the request id / the extension id
    DENY_REQUEST = "deny_request"
    DENY_EXTENSION = "deny_extension"
    #: the agent asks for more time on a live session;
    #: private_metadata carries the session id
    REQUEST_EXTENSION = "request_extension"
    #: what a request turns into when the agent already has an open access to that customer
    #: user (nothing to submit; End / Cancel act on the open one)
    IMPERSONATE_ALREADY_OPEN = "impersonate_already_open"
    #: set or clear an account flag (roles with can_flag_accounts); nothing in private_metadata
    FLAG_ACCOUNT = "flag_account"
    #: what the flag modal turns into once a change is made (nothing to submit)
    FLAG_ACCOUNT_DONE = "flag_account_done"
    #: the answer to a click in the Home tab, which has no channel to answer in (nothing to submit)
    HOME_NOTICE = "home_notice"


class ShortcutId(str, enum.Enum):
    """`callback_id` of the shortcuts declared in manifest.yaml (shortcut / message_action
    payloads are routed on it)."""

    #: the global shortcut: the request modal, as `/impersonate` opens it
    REQUEST = "request_impersonation"
    #: the message shortcut: the request modal with the message's ticket filled in
    REQUEST_FROM_MESSAGE = "request_impersonation_from_message"


class BlockId(str, enum.Enum):
    """`block_id` of blocks whose state or errors the app reads or writes."""

    # the request modal's inputs; `response_action: errors` names these
    ACCOUNT = "account"
    USER = "user"
    REASON = "reason"
    TICKET = "ticket"
    DURATION = "duration"
    SCOPE = "scope"
    #: the "break glass" checkbox, shown only to break-glass roles
    BREAK_GLASS = "break_glass"
    #: the justification (lawful basis) code, when the policy lists them (docs/privacy.md)
    JUSTIFICATION = "justification"
    # the deny and extension modals
    DENY_REASON = "deny_reason"
    EXTENSION_MINUTES = "extension_minutes"
    EXTENSION_REASON = "extension_reason"
    # the account-flag modal
    FLAG_ACCOUNT = "flag_account"
    FLAG_WHICH = "flag_which"
    FLAG_VALUE = "flag_value"
    FLAG_REFERENCE = "flag_reference"
    FLAG_REASON = "flag_reason"
    # messages
    GRANT_LINK = "grant_link"
    SESSION_ACTIONS = "session_actions"
    #: Cancel on the agent's pending request
    PENDING_ACTIONS = "pending_actions"
    #: Approve / Deny on an approver's DM
    APPROVAL_ACTIONS = "approval_actions"
    #: End now / Extend on the expiry warning DM
    WARNING_ACTIONS = "warning_actions"
    #: Revoke session on the security channel's live feed message
    FEED_ACTIONS = "feed_actions"
    ALERT_ACTIONS = "alert_actions"
    #: Previous / Next and the Export buttons under an /impersonation-log answer
    LOG_ACTIONS = "log_actions"
    #: the Home tab's tools (Request impersonation, Change account flags) and its account
    #: search for log readers; the per-item buttons' blocks have no id (a view's block ids
    #: must be unique, and those blocks repeat)
    HOME_TOOLS = "home_tools"
    HOME_LOG_SEARCH = "home_log_search"


class ActionId(str, enum.Enum):
    """`action_id` of interactive elements (block_actions and block_suggestion route on it)."""

    ACCOUNT_SELECT = "account_select"
    USER_SELECT = "user_select"
    REASON_INPUT = "reason_input"
    TICKET_INPUT = "ticket_input"
    DURATION_SELECT = "duration_select"
    SCOPE_CHOICE = "scope_choice"
    BREAK_GLASS_CHOICE = "break_glass_choice"
    JUSTIFICATION_SELECT = "justification_select"
    END_SESSION = "end_session"
    #: on the live session's message: ask for more time, or start a new request
    REQUEST_EXTENSION = "request_extension"
    START_NEW_REQUEST = "start_new_request"
    #: the agent withdraws their pending request
    CANCEL_REQUEST = "cancel_request"
    #: an approver's buttons; values are the request id or the extension id only
    APPROVE_REQUEST = "approve_request"
    DENY_REQUEST = "deny_request"
    APPROVE_EXTENSION = "approve_extension"
    DENY_EXTENSION = "deny_extension"
    # inputs of the deny and extension modals
    DENY_REASON_INPUT = "deny_reason_input"
    EXTENSION_MINUTES_SELECT = "extension_minutes_select"
    EXTENSION_REASON_INPUT = "extension_reason_input"
    #: security revokes a live session from an alert or the feed;
    #: the value is the session id only
    REVOKE_SESSION = "revoke_session"
    #: revokes every live session an alert is about; the value is the alert id only (the
    #: sessions are reloaded and the power re-checked at the click)
    REVOKE_ALERT_SESSIONS = "revoke_alert_sessions"
    #: under an /impersonation-log answer; values are a query token (ids, times, page) only
    LOG_PREVIOUS_PAGE = "log_previous_page"
    LOG_NEXT_PAGE = "log_next_page"
    LOG_EXPORT_CSV = "log_export_csv"
    LOG_EXPORT_JSON = "log_export_json"
    #: the Home tab: open the request modal / the flag modal; pick an account to look up
    HOME_REQUEST = "home_request"
    HOME_FLAG = "home_flag"
    HOME_LOG_ACCOUNT_SELECT = "home_log_account_select"
    # inputs of the account-flag modal; its account typeahead offers accounts only to roles
    # with can_flag_accounts
    FLAG_ACCOUNT_SELECT = "flag_account_select"
    FLAG_WHICH_SELECT = "flag_which_select"
    FLAG_VALUE_CHOICE = "flag_value_choice"
    FLAG_REFERENCE_INPUT = "flag_reference_input"
    FLAG_REASON_INPUT = "flag_reason_input"
