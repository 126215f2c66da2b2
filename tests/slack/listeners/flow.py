"""Steps of the request and approval flows, driven through the Bolt app with signed requests
(shared by the listener tests)."""
from __future__ import annotations

from typing import Any

from slack_bolt.response import BoltResponse

from bot.domain import links, requests
from bot.domain.approver_dms import MessageView
from bot.domain.requests import AgentIdentity, RequestForm
from bot.domain.views import SessionView
from bot.slack.blocks.request import BREAK_GLASS_VALUE
from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.slack.conftest import recorded_approver_dms
from tests.slack.recording_client import RecordingWebClient
from tests.slack.signed import block_action, view_submission

REASON = "Customer cannot see the invoice page"
#: long enough for break-glass (the policy's default minimum is 60 characters)
BREAK_GLASS_REASON = "P1 outage: the customer's payroll run fails and no manager can be reached tonight (INC-77)"
MANAGERS = ("UMANAGER1", "UMANAGER2", "UMANAGER3")


def request_state(
    account: str | None = "acme",
    user: str | None = "u-bob",
    reason: str = REASON,
    ticket: str | None = "SUP-1",
    duration: str | None = "30",
    scope: str | None = "read_only",
    break_glass: bool = False,
) -> dict[str, Any]:
    """`view.state.values` of a submitted request modal."""

    def selected(value):
        return {"type": "static_select", "selected_option": None if value is None else {"text": {"type": "plain_text", "text": "x"}, "value": value}}

    values = {
        BlockId.ACCOUNT.value: {ActionId.ACCOUNT_SELECT.value: selected(account)},
        BlockId.USER.value: {ActionId.USER_SELECT.value: selected(user)},
        BlockId.REASON.value: {ActionId.REASON_INPUT.value: {"type": "plain_text_input", "value": reason}},
        BlockId.TICKET.value: {ActionId.TICKET_INPUT.value: {"type": "plain_text_input", "value": ticket}},
        BlockId.DURATION.value: {ActionId.DURATION_SELECT.value: selected(duration)},
        BlockId.SCOPE.value: {ActionId.SCOPE_CHOICE.value: selected(scope)},
    }
    if break_glass:
        values[BlockId.BREAK_GLASS.value] = {
            ActionId.BREAK_GLASS_CHOICE.value: {
                "type": "checkboxes",
                "selected_options": [{"text": {"type": "plain_text", "text": "x"}, "value": BREAK_GLASS_VALUE}],
            }
        }
    return values


def submit_request(send, *, user_id: str = "UAGENT1", private_metadata: str = "", view_blocks=None, **answers) -> BoltResponse:
    return send(
        view_submission(
            request_state(**answers),
            user_id=user_id,
            callback_id=CallbackId.IMPERSONATE_REQUEST.value,
            private_metadata=private_metadata,
            blocks=view_blocks,
        )
    )


def click(send, action: ActionId, value: str, *, user_id: str, at: MessageView | tuple[str, str] | None = None) -> BoltResponse:
    """A button click on the message `at` (an approver's recorded DM, or (channel, ts))."""
    channel, ts = (at.channel, at.ts) if isinstance(at, MessageView) else (at or ("DAGENT1", "1700000000.000001"))
    block = {
        ActionId.APPROVE_REQUEST: BlockId.APPROVAL_ACTIONS,
        ActionId.DENY_REQUEST: BlockId.APPROVAL_ACTIONS,
        ActionId.APPROVE_EXTENSION: BlockId.APPROVAL_ACTIONS,
        ActionId.DENY_EXTENSION: BlockId.APPROVAL_ACTIONS,
        ActionId.CANCEL_REQUEST: BlockId.PENDING_ACTIONS,
    }.get(action, BlockId.SESSION_ACTIONS)
    return send(block_action(action.value, value, block_id=block.value, user_id=user_id, channel=channel, message_ts=ts))


def deny_values(reason: str) -> dict[str, Any]:
    return {BlockId.DENY_REASON.value: {ActionId.DENY_REASON_INPUT.value: {"type": "plain_text_input", "value": reason}}}


def submit_denial(send, subject_id: str, reason: str, *, user_id: str, extension: bool = False) -> BoltResponse:
    callback = CallbackId.DENY_EXTENSION if extension else CallbackId.DENY_REQUEST
    return send(view_submission(deny_values(reason), user_id=user_id, callback_id=callback.value, private_metadata=subject_id))


def submit_extension(send, session_id: str, *, minutes: str = "30", reason: str = "Still reproducing the bug", user_id: str) -> BoltResponse:
    values = {
        BlockId.EXTENSION_MINUTES.value: {
            ActionId.EXTENSION_MINUTES_SELECT.value: {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": minutes}}
        },
        BlockId.EXTENSION_REASON.value: {ActionId.EXTENSION_REASON_INPUT.value: {"type": "plain_text_input", "value": reason}},
    }
    return send(view_submission(values, user_id=user_id, callback_id=CallbackId.REQUEST_EXTENSION.value, private_metadata=session_id))


def posts_to(client: RecordingWebClient, channel: str) -> list[dict[str, Any]]:
    return [c for c in client.calls_to("chat.postMessage") if c["channel"] == channel]


def updates_of(client: RecordingWebClient) -> list[tuple[str, str]]:
    """(channel, ts) of every chat.update, in order."""
    return [(c["channel"], c["ts"]) for c in client.calls_to("chat.update")]


def update_of(client: RecordingWebClient, channel: str) -> dict[str, Any]:
    (update,) = [c for c in client.calls_to("chat.update") if c["channel"] == channel]
    return update


def headline(message: dict[str, Any]) -> str:
    return message["blocks"][0]["text"]["text"]


def approver_messages(ctx, subject_id: str) -> dict[str, MessageView]:
    return {m.recipient: m for m in recorded_approver_dms(ctx, subject_id)}


def with_break_glass(ctx, role: str = "senior") -> None:
    roles = dict(ctx.policy.roles)
    roles[role] = roles[role].model_copy(update={"can_break_glass": True})
    ctx.policy = ctx.policy.model_copy(update={"roles": roles})


def start_live_session(ctx, *, agent: str, channel: str, ts: str, account: str = "acme", user: str = "u-bob") -> SessionView:
    """A granted request whose DM is (channel, ts), redeemed: a live session."""
    return redeem_live_session(ctx, agent=agent, channel=channel, ts=ts, account=account, user=user).session


def redeem_live_session(ctx, *, agent: str, channel: str, ts: str, account: str = "acme", user: str = "u-bob") -> links.Redemption:
    """start_live_session's redemption, with the targets it owed."""
    form = RequestForm(account=account, user=user, reason=REASON, ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(ctx, AgentIdentity(agent), form)
    assert isinstance(granted, requests.Granted), granted
    requests.record_agent_message(ctx, granted.request.id, channel=channel, ts=ts)
    redeemed = links.redeem(ctx, granted.link.url.rsplit("/", 1)[1])
    assert isinstance(redeemed, links.Redemption), redeemed
    return redeemed
