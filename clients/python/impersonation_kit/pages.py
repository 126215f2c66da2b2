"""The kit's own small pages: refused write, session ended, launch refused. Nothing in them
echoes the request."""
from __future__ import annotations

from html import escape

STYLE = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f6}main{max-width:34rem;margin:4rem auto;padding:2rem;background:#fff;border:1px solid #ddd;border-radius:8px}h1{font-size:1.3rem;margin-top:0}"


def page(title: str, message: str, *, nonce: str | None = None) -> bytes:
    n = f' nonce="{escape(nonce)}"' if nonce else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style{n}>{STYLE}</style></head>'
        f'<body><main><h1>{escape(title)}</h1><p>{escape(message)}</p></main></body></html>'
    ).encode("utf-8")
