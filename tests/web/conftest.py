"""Fixtures for the web face: a granted link, the Flask app, page parsing, DB snapshots."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from bot.db.models import AuditEvent, ImpersonationRequest, ImpersonationSession, Link
from bot.domain import requests as domain_requests
from bot.domain.requests import AgentIdentity, RequestForm
from bot.web.app import REFUSALS_EXTENSION, create_web_app
from tests.fakes.directory_data import load_directory


class RecordingDeliverer:
    """The Deliverer port, recording the targets each change handed over."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, ...]] = []

    def deliver(self, targets) -> None:
        self.delivered.append(tuple(targets))


@pytest.fixture
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path)


@pytest.fixture
def grant(ctx, directory):
    """grant(**form overrides) → the plaintext token of a freshly granted link."""

    def _grant(**overrides) -> str:
        values = dict(
            account="acme",
            user="u-bob",
            reason="customer ticket about billing",
            ticket="SUP-1",
            duration_minutes=30,
            scope="read_only",
        )
        values.update(overrides)
        result = domain_requests.submit_request(ctx, AgentIdentity("UAGENT1"), RequestForm(**values))
        assert isinstance(result, domain_requests.Granted), result
        return result.link.url.rsplit("/", 1)[1]

    return _grant


@pytest.fixture
def token(grant) -> str:
    return grant()


@pytest.fixture
def deliverer() -> RecordingDeliverer:
    return RecordingDeliverer()


@pytest.fixture
def csrf_secret() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def web_app(ctx, deliverer, csrf_secret):
    app = create_web_app(ctx, deliverer=deliverer, csrf_secret=csrf_secret)
    app.testing = True
    yield app
    app.extensions[REFUSALS_EXTENSION].close()  # its timer must not outlive the test's database


@pytest.fixture
def client(web_app):
    return web_app.test_client()


# --- reading pages -------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    id: str | None
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (type, value)
    has_submit: bool = False


@dataclass
class Page:
    forms: list[Form] = field(default_factory=list)
    scripts: list[tuple[str | None, str]] = field(default_factory=list)  # (nonce, body)
    urls: list[str] = field(default_factory=list)  # every href/src/action attribute
    in_noscript: list[str] = field(default_factory=list)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._script: tuple[str | None, list[str]] | None = None
        self._noscript = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("href", "src", "action"):
            if name in a:
                self.page.urls.append(a[name] or "")
        if tag == "form":
            self.page.forms.append(Form(action=a.get("action") or "", method=(a.get("method") or "get").lower(), id=a.get("id")))
        elif tag == "input" and self.page.forms:
            self.page.forms[-1].inputs[a.get("name") or ""] = (a.get("type") or "text", a.get("value") or "")
        elif tag == "button" and self.page.forms:
            self.page.forms[-1].has_submit = True
            if self._noscript:
                self.page.in_noscript.append("button")
        elif tag == "script":
            self._script = (a.get("nonce"), [])
        elif tag == "noscript":
            self._noscript = True

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.page.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None
        elif tag == "noscript":
            self._noscript = False

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)


def parse_page(html: str) -> Page:
    parser = _PageParser()
    parser.feed(html)
    return parser.page


def csrf_proof(html: str) -> str:
    (form,) = [f for f in parse_page(html).forms if f.method == "post"]
    return form.inputs["csrf"][1]


# --- looking at the database ---------------------------------------------------------


def audit_events(session_factory) -> list[AuditEvent]:
    with session_factory() as db:
        rows = db.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        db.expunge_all()
        return list(rows)


def state_snapshot(session_factory) -> dict[str, list[tuple]]:
    """Everything a redemption could change besides the audit log."""
    with session_factory() as db:
        return {
            "links": [(r.id, r.token_hash, r.expires_at, r.redeemed_at) for r in db.execute(select(Link).order_by(Link.id)).scalars()],
            "requests": [(r.id, r.state, r.updated_at) for r in db.execute(select(ImpersonationRequest).order_by(ImpersonationRequest.id)).scalars()],
            "sessions": [(r.id, r.expires_at, r.ended_at) for r in db.execute(select(ImpersonationSession).order_by(ImpersonationSession.id)).scalars()],
        }
