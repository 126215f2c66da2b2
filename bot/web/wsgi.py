"""The WSGI entry point for gunicorn: `gunicorn -c python:bot.web.gunicorn_conf bot.web.wsgi:app`.

Imported in each worker after the fork, so each builds its own engine and connection pool.
A configuration problem becomes gunicorn's AppImportError: gunicorn prints the one line and
halts, rather than respawning workers that can never start.
"""
from __future__ import annotations

from gunicorn.errors import AppImportError

from bot.wiring import STARTUP_ERRORS, build_web_app_from_env, configure_logging

try:
    configure_logging()
    app = build_web_app_from_env()
except STARTUP_ERRORS as error:
    raise AppImportError(str(error)) from None
