"""The impersonation context a product reads during a session: on the request (WSGI environ /
ASGI scope), in a contextvars value, and in log records through `ImpersonationLogFilter`."""
from __future__ import annotations

import contextvars
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

ENVIRON_KEY = "impersonation.context"
current: contextvars.ContextVar["ImpersonationContext | None"] = contextvars.ContextVar("impersonation_context", default=None)


@dataclass(frozen=True)
class ImpersonationContext:
    session_id: str  # the hand-off's `sid`: stamp it on every write (`impersonation_context`)
    agent: str  # act.sub: the support agent
    account: str
    customer_user: str  # sub: whom the product acts as
    scope: str  # read_only | read_write
    expires_at: int  # epoch seconds, the session's end
    account_name: str | None = None
    customer_user_name: str | None = None
    reason: str | None = None
    ticket: str | None = None

    @property
    def read_only(self) -> bool:
        return self.scope != "read_write"

    def stamp(self) -> dict[str, str]:
        """The `impersonation_context` to store beside a write: session id, agent, account."""
        return {"session_id": self.session_id, "agent": self.agent, "account": self.account}

    def header_value(self) -> str:
        return json.dumps(self.stamp() | {"customer_user": self.customer_user, "scope": self.scope}, separators=(",", ":"), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> "ImpersonationContext":
        return cls(
            session_id=claims["sid"],
            agent=claims["act"]["sub"],
            account=claims["account"],
            customer_user=claims["sub"],
            scope=claims["scope"],
            expires_at=int(claims["exp"]),
            account_name=_text(claims.get("account_name")),
            customer_user_name=_text(claims.get("name")),
            reason=_text(claims.get("reason")),
            ticket=_text(claims.get("ticket")),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def get_context() -> ImpersonationContext | None:
    """The session the current request runs in, or None (not impersonated)."""
    return current.get()


class ImpersonationLogFilter(logging.Filter):
    """Adds `impersonation_context` (a dict, or None outside a session) to every record, so a
    format like `%(impersonation_context)s` or a JSON formatter stamps log lines of writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current.get()
        record.impersonation_context = ctx.stamp() if ctx is not None else None
        return True
