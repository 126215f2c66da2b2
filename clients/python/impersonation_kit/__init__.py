"""impersonation-kit: the product side of impersonation-bot's hand-off.

    from impersonation_kit import ImpersonationKit, KitConfig
    from impersonation_kit.wsgi import ImpersonationMiddleware        # Flask, Django, WSGI
    from impersonation_kit.asgi import ImpersonationASGIMiddleware    # Starlette, FastAPI

See docs/product-integration.md in impersonation-bot's repository for the contract.
"""
from impersonation_kit.config import KitConfig
from impersonation_kit.context import ImpersonationContext, ImpersonationLogFilter, get_context
from impersonation_kit.core import Active, ImpersonationKit
from impersonation_kit.replay import MemoryJtiStore, SqliteJtiStore
from impersonation_kit.reporter import ActionReporter
from impersonation_kit.verify import HandoffVerifier, LaunchRefused

__all__ = [
    "Active",
    "ActionReporter",
    "HandoffVerifier",
    "ImpersonationContext",
    "ImpersonationKit",
    "ImpersonationLogFilter",
    "KitConfig",
    "LaunchRefused",
    "MemoryJtiStore",
    "SqliteJtiStore",
    "get_context",
]
