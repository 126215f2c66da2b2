"""Putting text into Slack safely.

Slack "Formatting text for app surfaces" (https://docs.slack.dev/messaging/formatting-message-text#escaping):
in mrkdwn only `&`, `<` and `>` are control characters and must be sent as `&amp;`, `&lt;`,
`&gt;`. Unescaped user text could otherwise ping everyone (`<!channel>`), mention someone
(`<@U123>`) or disguise a link (`<https://evil|Open session>`). Nothing else is escaped:
Slack decodes only these three entities, so escaping more would show `&#39;` to the reader.

`plain_text` text objects are not parsed for mentions or links (Slack "Composition objects:
text object"), so text placed there is only cut to length, never escaped.
"""
from __future__ import annotations

from datetime import datetime

from bot.domain.policy import SLACK_USER_ID

# One home for "which zone": the domain reads agents' clocks too (anomaly rules).
from bot.domain.timezones import zone

ELLIPSIS = "…"
#: Slack user ids are short (`U0123ABCD`, `W…`); the database keeps at most 32 characters
USER_ID_MAX = 32

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: str) -> str:
    """Escape user text for a mrkdwn field (and for a message's `text` fallback)."""
    return text.translate(_ESCAPES)


def truncate_escaped(escaped: str, limit: int) -> str:
    """Cut already-escaped mrkdwn to at most `limit` characters, ending with an ellipsis.

    Never cuts an entity in half: a dangling `&am` would show as text and, worse, a cut
    `&lt` followed by later text could change meaning. Every `&` in escaped text starts an
    entity (escape() turns each literal `&` into `&amp;`), so an `&` with no `;` after it in
    the kept part marks a cut entity, which is dropped whole.
    """
    if limit < len(ELLIPSIS):
        raise ValueError("limit must leave room for the ellipsis")
    if len(escaped) <= limit:
        return escaped
    kept = escaped[: limit - len(ELLIPSIS)]
    amp = kept.rfind("&")
    if amp != -1 and ";" not in kept[amp:]:
        kept = kept[:amp]
    return kept + ELLIPSIS


def escape_truncated(text: str, limit: int) -> str:
    """escape() then truncate_escaped(): user text for a mrkdwn field of size `limit`."""
    return truncate_escaped(escape(text), limit)


def truncate_plain(text: str, limit: int) -> str:
    """Cut text for a plain_text object (not escaped, see the module docstring)."""
    if limit < len(ELLIPSIS):
        raise ValueError("limit must leave room for the ellipsis")
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def link(url: str, label: str) -> str:
    """A mrkdwn link `<url|label>` built from trusted parts.

    The URL is escaped like any text (Slack decodes `&amp;` inside links) and a `|`, which
    would end the URL early, is percent-encoded; the label is escaped so it cannot close the
    link or open another one.
    """
    return f"<{escape(url).replace('|', '%7C')}|{escape(label)}>"


def mention(user_id: str) -> str:
    """`<@U…>`: a user mention Slack renders as the person's name (Slack "Formatting text":
    mentioning users). Only a well-formed Slack user id is turned into markup; anything else
    (a forged or corrupted value) is shown escaped, as text, so it can never become
    `<!channel>` or a link."""
    if len(user_id) <= USER_ID_MAX and SLACK_USER_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return escape(user_id[:USER_ID_MAX])


def format_local_time(moment: datetime, tz_name: str | None) -> str:
    """`14:30 CET`: a time as the agent reads it on their clock, with the zone's abbreviation
    so that a wrong or missing Slack time zone (shown as UTC) is visible, not misleading."""
    if moment.tzinfo is None:
        raise ValueError("format_local_time needs a timezone-aware datetime")
    local = moment.astimezone(zone(tz_name))
    return f"{local:%H:%M} {local.tzname() or 'UTC'}"


def format_local_date_time(moment: datetime, tz_name: str | None) -> str:
    """`15 Jan 14:30 CET`: format_local_time with the day, for events not of today."""
    if moment.tzinfo is None:
        raise ValueError("format_local_date_time needs a timezone-aware datetime")
    local = moment.astimezone(zone(tz_name))
    return f"{local.day} {local:%b} {format_local_time(moment, tz_name)}"
