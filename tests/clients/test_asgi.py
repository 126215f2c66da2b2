"""The ASGI middleware on a Starlette app, against the real bot over HTTP: launch, banner,
scope, the context in the request's state and in contextvars, reporting, ending."""
from __future__ import annotations

import json
import secrets

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from impersonation_kit import ImpersonationKit, KitConfig, get_context
from impersonation_kit.asgi import ImpersonationASGIMiddleware
from tests.clients.conftest import BOT_ISSUER, LAUNCH_PATH, PRODUCT, banner_count, form_field
from tests.web.conftest import audit_events

END = "/_impersonation/end"


async def home(request: Request) -> HTMLResponse:
    ctx = request.state.impersonation_context if hasattr(request.state, "impersonation_context") else None
    who = ctx.customer_user if ctx else "nobody"
    return HTMLResponse(f"<!doctype html><html><body><p id=who>{who}</p></body></html>", headers={"Content-Security-Policy": "script-src 'nonce-r4nd'"})


async def items(request: Request) -> JSONResponse:
    ctx = get_context()
    return JSONResponse({"stamped": ctx.stamp() if ctx else None}, status_code=201)


@pytest.fixture
def asgi_kit(bot, api_key, tmp_path):
    kit = ImpersonationKit(
        KitConfig(bot_url=BOT_ISSUER, launch_url=PRODUCT + LAUNCH_PATH, api_key=api_key, secret=secrets.token_bytes(32),
                  jwks_url=f"{bot.url}/.well-known/jwks.json", api_url=bot.url)
    )
    yield kit
    kit.reporter.close()


@pytest.fixture
def client(asgi_kit):
    app = Starlette(routes=[Route("/", home), Route("/items", items, methods=["POST", "DELETE"])])
    app.add_middleware(ImpersonationASGIMiddleware, kit=asgi_kit)
    return TestClient(app, base_url=PRODUCT, follow_redirects=False)


def test_a_session_through_starlette(client, asgi_kit, handoff, session_factory):
    assert banner_count(client.get("/").text) == 0  # no session: untouched
    sid, token = handoff(scope="read_write")
    launched = client.post(LAUNCH_PATH, data={"token": token})
    assert launched.status_code == 303 and "HttpOnly" in launched.headers["set-cookie"]
    page = client.get("/")
    assert "<p id=who>u-bob</p>" in page.text and banner_count(page.text) == 1
    assert '<script nonce="r4nd">' in page.text and page.headers["cache-control"] == "no-store"
    assert int(page.headers["content-length"]) == len(page.content)
    written = client.post("/items", json={"x": 1})
    assert written.status_code == 201 and written.json()["stamped"] == {"session_id": sid, "agent": "senior1@corp.example", "account": "acme"}
    assert asgi_kit.reporter.flush(timeout=30)
    (row,) = [json.loads(e.details) for e in audit_events(session_factory) if e.type == "action.recorded" and e.session_id == sid]
    assert (row["action"], row["target"]) == ("http.post", "/items")
    ended = client.post(END, data={"csrf": form_field(page.text, END, "csrf")})
    assert ended.status_code == 200 and "Max-Age=0" in ended.headers["set-cookie"]
    assert "<p id=who>nobody</p>" in client.get("/").text


def test_read_only_and_forged_launches_through_starlette(client, handoff):
    _sid, token = handoff()
    assert client.post(LAUNCH_PATH, data={"token": token[:-4] + "AAAA"}).status_code == 403
    assert client.post(LAUNCH_PATH, data={"token": token}).status_code == 303
    refused = client.delete("/items", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and refused.json()["error"] == "read_only_session"
    assert client.post(END, data={"csrf": "forged"}).status_code == 403
