"""Keep bearer secrets out of application and access logs (issue 2, point 18).

A one-time link is a bearer credential carried in the URL path (`/l/<token>`), and URL
paths are exactly what web servers log: werkzeug's request log, gunicorn's access log
(`%(r)s`, `%(U)s`, `{raw_uri}e`, a Referer header) and Flask's "Exception on <path>" line.
`redact()` rewrites every `/l/<anything>` to `/l/<redacted>`. It also masks, as defence in
depth, compact JWTs (the hand-off token) and Slack tokens (`xoxb-…`, `xapp-…`), so a
careless log line elsewhere cannot leak them either.

`RedactSecretsFilter` applies it to log records (message, arguments, formatted traceback);
`RedactingGunicornLogger` applies it to gunicorn's access-log atoms and error log. Start
gunicorn with `--logger-class bot.web.logging.RedactingGunicornLogger`.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

REDACTED_LINK_PATH = "/l/<redacted>"
REDACTED_JWT = "<redacted-jwt>"
REDACTED_SLACK_TOKEN = "<redacted-slack-token>"

# `/l/` (or its percent-encoded form) followed by a path segment. Everything up to the next
# delimiter goes, whatever it looks like: a mistyped or truncated token is still a secret.
_LINK_PATH = re.compile(r"(?:/|%2[fF])l(?:/|%2[fF])[^\s/?#\"'<>\\]+")
# RFC 7515 §7.1 compact serialisation of a JSON header: base64url("{\"") starts "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Slack token prefixes (https://api.slack.com/authentication/token-types).
_SLACK_TOKEN = re.compile(r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9-]+")

#: loggers that print request paths: the dev server, gunicorn's two logs
REQUEST_LOGGERS = ("werkzeug", "gunicorn.error", "gunicorn.access")


def redact(text: str) -> str:
    text = _LINK_PATH.sub(REDACTED_LINK_PATH, text)
    text = _JWT.sub(REDACTED_JWT, text)
    return _SLACK_TOKEN.sub(REDACTED_SLACK_TOKEN, text)


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record in place and always lets it through.

    Attached to a logger it covers records created on that logger (they keep the rewrite
    as they propagate); attached to a handler it covers everything that handler emits.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
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


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger with every access-log atom and error-log record redacted."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            _add_once(logger)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        return {
            key: redact(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }
