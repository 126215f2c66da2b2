"""Delivering a file to someone's DM with Slack's current upload flow:

1. `conversations.open` (users=U…) gives the id of the app's DM with them (`D…`):
   `files.completeUploadExternal` shares into a channel *id*.
2. `files.getUploadURLExternal` (filename, length in bytes) gives an upload URL and a file id.
3. The bytes are POSTed to that URL (it is pre-authorised: no token is sent there).
4. `files.completeUploadExternal` (files=[{id, title}], channel_id, initial_comment) shares it.

Slack documents this in "Uploading files" (https://docs.slack.dev/messaging/working-with-files)
and `files.upload`'s retirement. slack_sdk's `files_upload_v2` does steps 2-4 but needs the
whole file in memory; here the export's chunks are spooled to a temporary file (in memory
up to SPOOL_IN_MEMORY bytes, on disk beyond) and streamed to the upload URL, so memory stays
flat however large the export.
"""
from __future__ import annotations

import urllib.request
from tempfile import SpooledTemporaryFile
from typing import IO
from urllib.parse import urlsplit

from slack_sdk import WebClient

from bot.reports.exports import ExportFile

#: bytes of an export kept in memory before the spool moves to a temporary file
SPOOL_IN_MEMORY = 1024 * 1024


class UploadFailed(Exception):
    """The upload URL refused the bytes or could not be reached (no Slack error code)."""


def send_file_to_dm(client: WebClient, user_id: str, export: ExportFile, *, title: str, comment: str) -> str:
    """Share `export` in the app's DM with `user_id`; returns the Slack file id. Raises
    SlackApiError (a Web API method refused) or UploadFailed (the upload step failed)."""
    with SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        length = 0
        for chunk in export.chunks:
            spool.write(chunk)
            length += len(chunk)
        spool.seek(0)
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        ticket = client.files_getUploadURLExternal(filename=export.filename, length=length)
        _post(client, str(ticket["upload_url"]), spool, length)
        client.files_completeUploadExternal(
            files=[{"id": ticket["file_id"], "title": title}],
            channel_id=channel,
            initial_comment=comment,
        )
        return str(ticket["file_id"])


def _post(client: WebClient, url: str, body: IO[bytes], length: int) -> None:
    scheme = urlsplit(url).scheme
    # Slack's upload URLs are https. Plain http is accepted only when the Web API itself is
    # reached over http (a local fake in tests); never another scheme (file:, ftp:).
    if scheme != "https" and not (scheme == "http" and client.base_url.startswith("http://")):
        raise UploadFailed(f"refusing an upload URL with scheme {scheme!r}")
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=client.ssl)]
    if client.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": client.proxy, "https": client.proxy}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(
        url,
        data=body,  # http.client streams a file object in blocks
        method="POST",
        headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
    )
    try:
        with opener.open(request, timeout=client.timeout) as response:
            if response.status != 200:
                raise UploadFailed(f"the upload URL answered HTTP {response.status}")
    except OSError as exc:  # URLError, HTTPError and socket errors; the URL is not logged
        raise UploadFailed(f"the upload failed: {type(exc).__name__}") from None
