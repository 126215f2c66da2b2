"""Keep bearer secrets and forged lines out of application and access logs.

A one-time link is a bearer credential carried in the URL path (`/l/<token>`), and URL
paths are exactly what web servers log: werkzeug's request log, gunicorn's access log
(`%(r)s`, `%(U)s`, `{raw_uri}e`, a Referer header) and Flask's "Exception on <path>" line.
`redact()` rewrites every `/l/<anything>` to `/l/<redacted>`. It also masks, as defence in
depth, compact JWTs (the hand-off token), Slack tokens (`xoxb-…`, `xapp-…`), and the two
short-lived bearer credentials every Slack interaction carries: its `response_url` (whoever
holds it can post as the app into that conversation for 30 minutes) and its `trigger_id`
(opens a modal in the user's client) — by field name in JSON and form bodies, and by shape.

`escape_controls()` writes line breaks and other control characters as visible escapes, so
text from a request (a body, a header, a Slack field) can never start a forged log line
(CWE-117).

`RedactSecretsFilter` applies both to log records (message, arguments, formatted traceback);
`RedactingGunicornLogger` applies them to gunicorn's access-log atoms and error log. Start
gunicorn with `--logger-class bot.web.logging.RedactingGunicornLogger`.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

REDACTED_LINK_PATH = "/l/<redacted>"
REDACTED_JWT = "<redacted-jwt>"
REDACTED_SLACK_TOKEN = "<redacted-slack-token>"
REDACTED = "<redacted>"

# `/l/` (or its percent-encoded form) followed by a path segment. Everything up to the next
# delimiter goes, whatever it looks like: a mistyped or truncated token is still a secret.
_LINK_PATH = re.compile(r"(?:/|%2[fF])l(?:/|%2[fF])[^\s/?#\"'<>\\]+")
# RFC 7515 §7.1 compact serialisation of a JSON header: base64url("{\"") starts "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Slack token prefixes (https://api.slack.com/authentication/token-types).
_SLACK_TOKEN = re.compile(r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9-]+")

# Slack's response URLs (https://hooks.slack.com/commands|actions|app/…), also percent-encoded
# as they appear in form bodies.
_RESPONSE_URL = re.compile(r"https?(?::|%3[aA])(?://|%2[fF]%2[fF])hooks\.[A-Za-z0-9.-]+(?:/|%2[fF])[^\s\"'&<>\\]+")
# A field named response_url or trigger_id, in JSON ("name": "value", also inside a
# percent-encoded payload= form field) or in a form body (name=value).
_SECRET_FIELD = re.compile(
    r"(?P<name>response_url|trigger_id)"
    r"(?P<sep>\\?\"\s*:\s*\\?\"|%22%3[aA]%22|%22%3[aA]\+?%22|=)"
    r"(?P<value>[^\"&\s\\%]*(?:%(?!22)[0-9A-Fa-f]{2}[^\"&\s\\%]*)*)"
)
# The query of Sign in with Slack's return (bot/web/slack_sign_in.py CALLBACK_PATH): its `code`
# is a bearer credential until exchanged, its `state` the flow's CSRF secret.
_OIDC_RETURN_FIELD = re.compile(r"(?P<name>[?&](?:code|state))=[^&\s\"'#]*")
# Slack's trigger_id shape: "<digits>.<digits>.<hex>", e.g. 13345224609.738474920.8088930838d88f008e0
_TRIGGER_ID = re.compile(r"\b\d{4,}\.\d{4,}\.[0-9a-f]{16,}\b")
# C0 controls, DEL and the Unicode line separators: each written as a visible escape
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), 0x7F]}
_CONTROLS.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\x85"})

#: loggers that print request paths: the dev server, gunicorn's two logs
REQUEST_LOGGERS = ("werkzeug", "gunicorn.error", "gunicorn.access")


def redact(text: str) -> str:
    text = _LINK_PATH.sub(REDACTED_LINK_PATH, text)
    text = _JWT.sub(REDACTED_JWT, text)
    text = _SLACK_TOKEN.sub(REDACTED_SLACK_TOKEN, text)
    # the Slack-interaction patterns only where their markers occur (most lines have neither)
    if "hooks." in text:
        text = _RESPONSE_URL.sub(REDACTED, text)
    if "response_url" in text or "trigger_id" in text:
        text = _SECRET_FIELD.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    if "." in text:
        text = _TRIGGER_ID.sub(REDACTED, text)
    if "/callback?" in text:
        text = _OIDC_RETURN_FIELD.sub(lambda m: f"{m['name']}={REDACTED}", text)
    return text


def escape_controls(text: str) -> str:
    """`text` on one line: control characters written as escapes (a newline as `\\n`)."""
    return text.translate(_CONTROLS)


def clean(text: str) -> str:
    """What may reach a log: secrets redacted, on one line."""
    return escape_controls(redact(text))


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record in place (`clean`: redacted, one line) and always lets it through.
    A formatted traceback keeps its line breaks (it is the program's text, not a request's)
    but is redacted.

    Attached to a logger it covers records created on that logger (they keep the rewrite
    as they propagate); attached to a handler it covers everything that handler emits.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report, not ours
            return True
        cleaned = clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _add_once(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactSecretsFilter) for f in target.filters):
        target.addFilter(RedactSecretsFilter())


def install_log_redaction(
    extra_loggers: Iterable[logging.Logger | str] = (), *, root_handlers: bool = True
) -> None:
    """Redact on the request-logging loggers and `extra_loggers` and, with `root_handlers`,
    on every handler the root logger has now (call again after configuring logging).
    Idempotent."""
    for logger in (*REQUEST_LOGGERS, *extra_loggers):
        _add_once(logging.getLogger(logger) if isinstance(logger, str) else logger)
    if root_handlers:
        for handler in logging.getLogger().handlers:
            _add_once(handler)


#: the fields of a JSON log line (LOG_FORMAT=json), renamed to the names log shippers expect
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


def json_formatter() -> logging.Formatter:
    """One JSON object per line (python-json-logger), time in UTC ISO 8601. Redaction runs
    before formatting (RedactSecretsFilter on the loggers and handlers), so JSON fields hold
    the same cleaned text as the plain format."""
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp=False)
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter


def json_logs_wanted() -> bool:
    return os.environ.get("LOG_FORMAT", "").strip().lower() == "json"


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger with every access-log atom and error-log record redacted, and in
    JSON (LOG_FORMAT=json) like the application's records. gunicorn's "-" sends the access
    log to stdout and the error log to stderr."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            _add_once(logger)
            if json_logs_wanted():
                for handler in logger.handlers:
                    handler.setFormatter(json_formatter())

    # gunicorn's stubs type atoms() as a TypedDict of the fixed atoms; it also holds one per
    # request and response header and environ variable ({name}i, {name}o, {name}e), so a dict
    def atoms(self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: Any) -> dict[str, Any]:  # type: ignore[override]
        return {
            key: clean(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }
