"""`python -m examples.demo_product` — run the demo product on DEMO_PORT (default 5000).

Environment: DEMO_BOT_URL (impersonation-bot's PUBLIC_BASE_URL, default http://localhost:3000),
DEMO_API_KEY (required: `impersonation-bot api-keys create --product demo --by you@example.com`), DEMO_PUBLIC_URL
(default http://localhost:$DEMO_PORT), DEMO_DB (default demo_product.db), DEMO_SECRET_KEY and
DEMO_KIT_SECRET (hex; random per start if unset). Set the bot's PRODUCT_LAUNCH_URL to
$DEMO_PUBLIC_URL/impersonation/launch.
"""
from __future__ import annotations

import logging
import os
import sys

from examples.demo_product.app import create_app


def main() -> None:
    api_key = os.environ.get("DEMO_API_KEY")
    if not api_key:
        sys.exit("Set DEMO_API_KEY to a product API key: impersonation-bot api-keys create --product demo --by you@example.com")
    port = int(os.environ.get("DEMO_PORT", "5000"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s ctx=%(impersonation_context)s")
    kit_secret = os.environ.get("DEMO_KIT_SECRET")
    app = create_app(
        {
            "BOT_URL": os.environ.get("DEMO_BOT_URL", "http://localhost:3000"),
            "API_KEY": api_key,
            "PUBLIC_URL": os.environ.get("DEMO_PUBLIC_URL", f"http://localhost:{port}"),
            "DATABASE": os.environ.get("DEMO_DB", "demo_product.db"),
            "SECRET_KEY": os.environ.get("DEMO_SECRET_KEY"),
            "KIT_SECRET": bytes.fromhex(kit_secret) if kit_secret else None,
            "SPOOL_DIR": os.environ.get("DEMO_SPOOL_DIR", "demo_product_spool"),
            "WEBHOOK_SECRET": os.environ.get("DEMO_WEBHOOK_SECRET"),
        }
    )
    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    main()
