"""Modal submissions.

- The request modal: decided by the domain,
  refused inline on the right field, or closed at once, its DMs (the link, or "approval
  needed" and every approver's DM; a break-glass grant also alerts the security channel)
  owed in the outbox and sent after the answer by the deliverer.
- The deny modals: the approver's reason; the domain decides.
- The extension modal: more time, with a fresh reason, asked of approvers.
- The account-flag modal: decided by the domain (`can_flag_accounts` now), refused on the
  right field, or turned into what changed; an opt-out's revocations are delivered after.
"""
from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.domain import account_flags, approvals, extensions, requests
from bot.domain.approvals import ClickResult, Decided, Refused
from bot.domain.context import DomainContext
from bot.domain.ports import Deliverer
from bot.domain.requests import AgentIdentity, AlreadyOpen, Blocked
from bot.slack.blocks.approval import click_answer_text, deny_reason_errors, deny_reason_from_state, notice_modal
from bot.slack.blocks.flags import flag_changed_text, flag_done_modal, flag_errors, flag_form_from_state
from bot.slack.blocks.request import already_open_modal, field_errors, request_form_from_state
from bot.slack.blocks.session import extension_answer_from_state, extension_errors
from bot.slack.blocks.state import carried_id, view_block_ids
from bot.slack.ids import CallbackId


def register(app: App, ctx: DomainContext, deliverer: Deliverer) -> None:
    @app.view(CallbackId.IMPERSONATE_REQUEST.value)
    def submit_request(ack: Ack, body: dict[str, Any]) -> None:
        user, view = body["user"], body["view"]
        agent = AgentIdentity(slack_id=user["id"], team_id=user.get("team_id") or (body.get("team") or {}).get("id"))
        form = request_form_from_state(view["state"]["values"], private_metadata=view.get("private_metadata") or "")
        result = requests.submit_request(ctx, agent, form)
        if isinstance(result, Blocked):
            ack(response_action="errors", errors=field_errors(result, present=view_block_ids(view)))
            return
        if isinstance(result, AlreadyOpen):
            ack(response_action="update", view=already_open_modal(result, tz_name=ctx.people.person(agent.slack_id).tz))
            return
        ack()
        # the link or "approval needed", every approver's DM, break-glass's alert: sent after the answer
        deliverer.deliver(result.targets)

    def answer_denial(ack: Ack, result: ClickResult, *, clicker: str, extension: bool) -> None:
        """A refusal stays on the reason field; a decision closes the modal and edits every
        message; a click that decided nothing turns the modal into a note saying so."""
        if isinstance(result, Refused):
            ack(response_action="errors", errors=deny_reason_errors(result.message))
        elif isinstance(result, Decided):
            ack()
            deliverer.deliver(result.targets)
        else:
            tz_name = ctx.people.person(clicker).tz
            text = click_answer_text(result, tz_name=tz_name, extension=extension)
            ack(response_action="update", view=notice_modal(text, extension=extension))

    @app.view(CallbackId.DENY_REQUEST.value)
    def deny_request(ack: Ack, body: dict[str, Any]) -> None:
        clicker, view = body["user"]["id"], body["view"]
        result = approvals.deny_request(
            ctx,
            carried_id(view.get("private_metadata")),
            clicker_slack_id=clicker,
            reason=deny_reason_from_state(view["state"]["values"]),
        )
        answer_denial(ack, result, clicker=clicker, extension=False)

    @app.view(CallbackId.DENY_EXTENSION.value)
    def deny_extension(ack: Ack, body: dict[str, Any]) -> None:
        clicker, view = body["user"]["id"], body["view"]
        result = extensions.decide_extension(
            ctx,
            carried_id(view.get("private_metadata")),
            clicker_slack_id=clicker,
            approve=False,
            reason=deny_reason_from_state(view["state"]["values"]),
        )
        answer_denial(ack, result, clicker=clicker, extension=True)

    @app.view(CallbackId.REQUEST_EXTENSION.value)
    def request_extension(ack: Ack, body: dict[str, Any]) -> None:
        agent, view = body["user"]["id"], body["view"]
        answer = extension_answer_from_state(view["state"]["values"])
        result = extensions.request_extension(
            ctx, carried_id(view.get("private_metadata")), agent_slack_id=agent, minutes=answer.minutes, reason=answer.reason
        )
        if isinstance(result, Refused):
            ack(response_action="errors", errors=extension_errors(result.message))
            return
        ack()
        # granted: the session DM shows the new end, the feed too; asked: every approver's DM,
        # and the session DM says more time is waiting for them
        deliverer.deliver(result.targets)

    @app.view(CallbackId.FLAG_ACCOUNT.value)
    def flag_account(ack: Ack, body: dict[str, Any]) -> None:
        form = flag_form_from_state(body["view"]["state"]["values"])
        result = account_flags.change_flag_from_slack(ctx, body["user"]["id"], form)
        if isinstance(result, account_flags.FlagRefused):
            ack(response_action="errors", errors=flag_errors(result.message, result.field))
            return
        ack(response_action="update", view=flag_done_modal(flag_changed_text(result)))
        deliverer.deliver(result.targets)  # an opt-out's revocations: the agents' DMs, the feed
