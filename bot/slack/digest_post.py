"""Posting a scheduled access review for the outbox: the summary message in
the security channel (edited, not posted again, when the row is retried after it went out),
then the report as Markdown, HTML and CSV files in that message's thread.

The report is built at delivery from the database (the row carries only the period key), so a
retried delivery reports the same period as it stands. Files are uploaded with slack_sdk's
`files_upload_v2` (files.getUploadURLExternal → the upload URL → files.completeUploadExternal,
Slack "Uploading files"); the reports are small, so they are sent from memory.
"""
from __future__ import annotations

import logging
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.domain import digests
from bot.domain.audit import Actor
from bot.domain.context import DomainContext
from bot.domain.messages import Delivery, Outcome, Permanent, Sent, Transient
from bot.reports import digests as digest_files
from bot.slack.blocks.digest import digest_message
from bot.slack.errors import classify

log = logging.getLogger(__name__)


def post_digest(ctx: DomainContext, client: WebClient, delivery: Delivery, *, channel: str, now: datetime) -> Outcome:
    try:
        period = digests.period_of_key(ctx.policy, delivery.subject_id)
    except digests.PeriodError:
        return Permanent("unknown_period")
    report = digests.make_report(ctx, period, by=Actor.system("scheduler"), now=now)
    text, shown = digest_message(report)
    try:
        if delivery.ref is not None:
            client.chat_update(channel=delivery.ref.channel, ts=delivery.ref.ts, text=text, blocks=shown)
            channel, ts = delivery.ref.channel, delivery.ref.ts
        else:
            response = client.chat_postMessage(channel=channel, text=text, blocks=shown, unfurl_links=False, unfurl_media=False)
            channel, ts = str(response["channel"]), str(response["ts"])
        client.files_upload_v2(
            file_uploads=[
                {"content": digest_files.render(report, fmt), "filename": digest_files.filename(report, fmt), "title": f"Access review {period.key} ({fmt.upper()})"}
                for fmt in digest_files.FORMATS
            ],
            channel=channel,
            thread_ts=ts,
            initial_comment="The full review: Markdown, HTML and CSV.",
        )
    except SlackApiError as error:
        return classify(error)
    except (SlackRequestError, OSError) as error:  # the upload URL refused the bytes, or the network failed
        log.warning("digest %s: upload failed: %s", period.key, type(error).__name__)
        return Transient(type(error).__name__[:64])
    return Sent(channel, ts)
