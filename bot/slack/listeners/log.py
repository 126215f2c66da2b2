"""`/impersonation-log` and the buttons under its answer.

- The command is answered in its acknowledgement, as an ephemeral message (Slack "Responding
  to slash commands": the HTTP response's body is shown to the invoker alone), so no extra
  Slack call and no channel membership are needed.
- **Previous** / **Next** replace that ephemeral message through the click's `response_url`
  (ephemeral messages cannot be edited with chat.update).
- **Export CSV / JSON** are acknowledged at once; the export and the upload run afterwards as
  Bolt lazy listeners (Slack allows 3 s for the acknowledgement, and an upload is several
  round trips), and the file lands in the clicker's DM with the app.

Every click is decided again by the domain: `can_view_log` now, not when the answer was shown.
"""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import exports, log_query
from bot.domain.context import DomainContext
from bot.domain.exports import AccessExport, ExportFormat
from bot.reports.exports import access_file
from bot.slack.blocks.log import EXPORT_FAILED, PAGE_SIZE, export_comment, export_sent_text, file_title, log_answer
from bot.slack.command_text import parse_log_command
from bot.slack.ids import ActionId, SlashCommand
from bot.slack.uploads import UploadFailed, send_file_to_dm

log = logging.getLogger(__name__)


def register(app: App, ctx: DomainContext) -> None:
    @app.command(SlashCommand.IMPERSONATION_LOG.value)
    def look_up(ack: Ack, command: dict[str, Any]) -> None:
        text = command.get("text") or ""
        result = log_query.look_up(ctx, command["user_id"], parse_log_command(text), text=text, page_size=PAGE_SIZE)
        text, blocks = log_answer(result)
        ack(response_type="ephemeral", text=text, blocks=blocks)

    def turn_page(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        result = log_query.look_up_page(ctx, body["user"]["id"], action.get("value"), page_size=PAGE_SIZE)
        text, blocks = log_answer(result)
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)

    app.action(ActionId.LOG_PREVIOUS_PAGE.value)(turn_page)
    app.action(ActionId.LOG_NEXT_PAGE.value)(turn_page)

    def acknowledge(ack: Ack) -> None:
        ack()

    def export_csv(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
        deliver_export(ctx, ExportFormat.CSV, clicker=body["user"]["id"], token=action.get("value"), client=client, respond=respond)

    def export_json(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
        deliver_export(ctx, ExportFormat.JSON, clicker=body["user"]["id"], token=action.get("value"), client=client, respond=respond)

    app.action(ActionId.LOG_EXPORT_CSV.value)(ack=acknowledge, lazy=[export_csv])
    app.action(ActionId.LOG_EXPORT_JSON.value)(ack=acknowledge, lazy=[export_json])


def deliver_export(
    ctx: DomainContext, fmt: ExportFormat, *, clicker: str, token: object, client: WebClient, respond: Respond
) -> None:
    """One export, after the click was acknowledged: the domain decides and audits it, the
    file goes to the clicker's DM, and the clicker is told privately how it went. Runs outside
    Bolt's error handler (a lazy listener), so every failure is handled, and logged as
    bot.slack.app.handle_listener_error would (Slack's error code, never a message body)."""
    try:
        result = exports.slack_export(ctx, clicker, token, fmt)
        if not isinstance(result, AccessExport):
            text, blocks = log_answer(result)
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
            return
        export = access_file(result)
        send_file_to_dm(client, clicker, export, title=file_title(export), comment=export_comment(export))
    except SlackApiError as error:
        log.warning("export %s for %s failed: Slack answered %s", fmt.value, clicker, error.response.get("error") or "unknown_error")
    except UploadFailed as error:
        log.warning("export %s for %s failed: %s", fmt.value, clicker, error)
    except Exception as error:  # noqa: BLE001 - nothing else would catch it (see above)
        log.error("export %s for %s failed: %s", fmt.value, clicker, type(error).__name__, exc_info=error)
    else:
        respond(text=export_sent_text(export), response_type="ephemeral", replace_original=False)
        return
    respond(text=EXPORT_FAILED, response_type="ephemeral", replace_original=False)
