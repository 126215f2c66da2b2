"""The test suite's Slack Web API: the stand-in that ships with the bot (bot/local/webapi.py,
also the local workspace's), plus the Socket Mode server (a test dependency) that
apps.connections.open hands out, and Slack's reference data checked on every call where
../shared/slack-reference is present."""
from __future__ import annotations

from typing import Any

from bot.local import reference
from bot.local.webapi import (  # noqa: F401 — the names tests use
    APP_LEVEL_SCOPES,
    GENERIC_ERRORS,
    MANIFEST_PATH,
    METHODS,
    TRIGGER_TTL_SECONDS,
    VIEW_STACK_MAX,
    Call,
    Message,
    MethodSpec,
    SlackStandIn,
    StandInFile,
    StandInUser,
    Violation,
    block_kit_errors,
    manifest_bot_scopes,
)
from tests.fakes.socket_mode import FakeSocketMode

FakeUser = StandInUser
FakeFile = StandInFile


class FakeSlack(SlackStandIn):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reference", reference.find())
        super().__init__(**kwargs)

    @property
    def socket_mode(self) -> FakeSocketMode:
        """The Socket Mode server whose URLs apps.connections.open hands out; started on first
        use, stopped with the fake."""
        with self._lock:
            if self._socket_mode is None:
                self._socket_mode = FakeSocketMode(app_id=self.app_id).start()
            return self._socket_mode

    def socket_mode_url(self) -> str:
        return self.socket_mode.issue_url()
