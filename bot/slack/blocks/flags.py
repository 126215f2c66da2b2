"""The account-flag modal (`/impersonate flag <account>`, or the Home tab): set or clear one
flag on one account with a reference and a reason, read back, and what the person is told.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.domain.account_flags import FLAG_REASON_MAX_LENGTH, FLAG_REASON_MIN_LENGTH, REFERENCE_MAX_LENGTH, FlagChanged, FlagField, FlagForm, FlagFormView
from bot.domain.views import AccountFlag
from bot.slack import limits
from bot.slack.blocks.kit import Block, external_select, input_block, notice_view, option, options, plain, section, text_input
from bot.slack.blocks.state import selected_value, typed_value
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.mrkdwn import escape, escape_truncated

#: the four flags as the modal offers them (DESIGN.md "Who uses it")
FLAG_LABELS: dict[AccountFlag, str] = {
    AccountFlag.OPTED_OUT: "Opted out: no impersonation at all",
    AccountFlag.SENSITIVE: "Sensitive: approval needed",
    AccountFlag.REGULATED: "Regulated: approval needed",
    AccountFlag.FLAGGED: "Flagged: approval needed",
}
FLAG_ON, FLAG_OFF = "set", "clear"
FLAG_FIELD_BLOCKS: dict[FlagField, BlockId] = {
    FlagField.ACCOUNT: BlockId.FLAG_ACCOUNT,
    FlagField.FLAG: BlockId.FLAG_WHICH,
    FlagField.REFERENCE: BlockId.FLAG_REFERENCE,
    FlagField.REASON: BlockId.FLAG_REASON,
}


def flag_modal(form: FlagFormView) -> dict[str, Any]:
    """Set or clear one flag on one account, with the contract or ticket reference and the
    reason the audit log keeps. Opened for an account (`/impersonate flag acme`) it starts on
    that account and says which flags it carries now."""
    account_select = external_select(ActionId.FLAG_ACCOUNT_SELECT, "Search accounts by name or id")
    blocks: list[Block] = []
    if form.account is not None:
        initial = option(form.account[0], f"{form.account[1]} ({form.account[0]})")
        if initial is not None:
            account_select["initial_option"] = initial
        now = ", ".join(sorted(form.current)) or "none"
        blocks.append(section(f"*{escape_truncated(form.account[1], 300)}* carries these flags now: {escape(now)}"))
    flags = options((flag.value, label) for flag, label in FLAG_LABELS.items())
    values = options([(FLAG_ON, "Set the flag"), (FLAG_OFF, "Clear the flag")])
    which = {"type": "static_select", "action_id": ActionId.FLAG_WHICH_SELECT.value, "options": flags, "placeholder": plain("Which flag", limits.PLACEHOLDER_MAX)}
    change = {"type": "radio_buttons", "action_id": ActionId.FLAG_VALUE_CHOICE.value, "options": values, "initial_option": values[0]}
    reference = text_input(ActionId.FLAG_REFERENCE_INPUT, max_length=REFERENCE_MAX_LENGTH, placeholder="CONTRACT-2041 §7, or a link to the ticket")
    reason = text_input(ActionId.FLAG_REASON_INPUT, multiline=True, min_length=FLAG_REASON_MIN_LENGTH, max_length=FLAG_REASON_MAX_LENGTH)
    blocks += [
        input_block(BlockId.FLAG_ACCOUNT, "Account", account_select),
        input_block(BlockId.FLAG_WHICH, "Flag", which),
        input_block(BlockId.FLAG_VALUE, "Change", change, hint="Setting opted-out ends every live session on the account at once."),
        input_block(BlockId.FLAG_REFERENCE, "Contract or ticket reference", reference),
        input_block(BlockId.FLAG_REASON, "Reason", reason, hint="Kept in the audit log with your name and the reference."),
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.FLAG_ACCOUNT.value,
        "title": plain("Account flags", limits.MODAL_TITLE_MAX),
        "submit": plain("Save", limits.MODAL_SUBMIT_MAX),
        "close": plain("Cancel", limits.MODAL_CLOSE_MAX),
        "blocks": blocks[: limits.MODAL_BLOCKS_MAX],
    }


def flag_form_from_state(values: Mapping[str, Any]) -> FlagForm:
    """The flag modal's answers, read as it lays them out; nothing here decides anything."""
    value = selected_value(values, BlockId.FLAG_VALUE, ActionId.FLAG_VALUE_CHOICE)
    return FlagForm(
        account=selected_value(values, BlockId.FLAG_ACCOUNT, ActionId.FLAG_ACCOUNT_SELECT),
        flag=selected_value(values, BlockId.FLAG_WHICH, ActionId.FLAG_WHICH_SELECT),
        on=True if value == FLAG_ON else False if value == FLAG_OFF else None,
        reference=typed_value(values, BlockId.FLAG_REFERENCE, ActionId.FLAG_REFERENCE_INPUT) or "",
        reason=typed_value(values, BlockId.FLAG_REASON, ActionId.FLAG_REASON_INPUT) or "",
    )


def flag_errors(message: str, field: FlagField | None) -> dict[str, str]:
    """`response_action: errors` for a refused flag change: the message under its field."""
    block = FLAG_FIELD_BLOCKS[field or FlagField.ACCOUNT]
    return {block.value: escape_truncated(message, limits.FIELD_ERROR_MAX)}


def flag_changed_text(changed: FlagChanged) -> str:
    """What the person who changed a flag reads (mrkdwn, escaped)."""
    account = f"*{escape_truncated(changed.account_name, 300)}* ({escape(changed.account)})"
    if not changed.change.changed:
        state = "was already set" if changed.on else "was not set"
        return f"`{changed.flag.value}` {state} on {account}; nothing changed."
    done = "set on" if changed.on else "cleared from"
    text = f"`{changed.flag.value}` {done} {account}. Audited as account.flag_changed."
    if changed.on and changed.flag is AccountFlag.OPTED_OUT:
        text += " The security channel is told."
    revoked = len(changed.change.revoked)
    if revoked:
        text += f" {revoked} live session{'s' if revoked != 1 else ''} on it ended at once; their agents are told."
    return text


def flag_done_modal(text: str) -> dict[str, Any]:
    """What the flag modal turns into after a change: what happened."""
    return notice_view(CallbackId.FLAG_ACCOUNT_DONE, "Account flags", text)
