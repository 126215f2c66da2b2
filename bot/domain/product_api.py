"""The product API's domain (DESIGN.md "The hand-off to the SaaS product", step 6;
docs/product-api.md): per-product API keys, the session status the product polls,
and the write actions it reports, appended to the audit log as `action.recorded`.

Keys look like `ibk_<key id>_<secret>`: the `ibk_` prefix makes a leaked key easy to find by
secret scanners, the 16-hex-digit key id is public (looked up by, listed, audited) and the
secret is 256 random bits. Only SHA-256 of the whole key is stored and compared in constant
time. The plaintext exists once, in `create_api_key`'s answer.

An action's `details` are written into the hash-chained audit log, whose canonical encoding
has no floating-point numbers (RFC 8785 JCS would print them differently from language to
language), so floats are refused with the field's path; so are integers beyond ±(2^53 − 1),
which JCS (RFC 8785 §3.2.2.3) cannot carry exactly either.
"""
from __future__ import annotations

import enum
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.db.base import affected_rows
from bot.db.engine import reading
from bot.db.models import ApiKey, AuditEvent, ImpersonationSession, RequestState
from bot.domain import audit
from bot.domain.audit import Actor, EventDraft
from bot.domain.clock import utcnow
from bot.domain.context import DomainContext
from bot.domain.lifecycle import TransitionRefused
from bot.domain.links import ClientInfo, hash_token
from bot.domain.policy import PRODUCT_PATTERN
from bot.domain.refusals import RefusalAuditor
from bot.domain.sessions import SessionStatus, check_session, close_session, status_at

log = logging.getLogger(__name__)

# --- keys ------------------------------------------------------------------------------

KEY_PREFIX = "ibk"
KEY_ID_BYTES = 8  # 16 hex digits: public, only has to be unique
KEY_SECRET_BYTES = 32  # 256 random bits, like the link token (DESIGN.md hand-off 1)
_KEY_ID = r"[0-9a-f]{16}"
_KEY = re.compile(rf"{KEY_PREFIX}_(?P<key_id>{_KEY_ID})_(?P<secret>[A-Za-z0-9_-]{{43}})")
#: enough of a presented credential to read its key id, even when the rest is mangled
_KEY_ID_OF = re.compile(rf"{KEY_PREFIX}_(?P<key_id>{_KEY_ID})(?:_|$)")
KEY_ID_PATTERN = re.compile(_KEY_ID)
#: longer than any key we issue; anything longer is malformed without being looked at
MAX_CREDENTIAL_CHARS = 128
# RFC 6750 §2.1 `Bearer` credentials; the scheme is case-insensitive (RFC 9110 §11.1).
_BEARER = re.compile(r"bearer +(?P<credential>\S+) *", re.IGNORECASE)
# Compared against when the key id is unknown, so both answers cost one digest comparison.
_NO_SUCH_KEY_HASH = hash_token("no such key")


class ApiKeyError(ValueError):
    """Bad input to a key command; the message is safe to show as it is."""


class NewApiKey(NamedTuple):
    """`create_api_key`'s answer: unpacks as (key_id, plaintext_key). Its repr hides the
    key, so it can never reach a log by accident."""

    key_id: str
    plaintext_key: str

    def __repr__(self) -> str:
        return f"NewApiKey(key_id={self.key_id!r}, plaintext_key=<redacted>)"


@dataclass(frozen=True)
class ApiKeyView:
    key_id: str
    product: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def display_id(self) -> str:
        """How the key begins, so an operator can match a listing to a key in a vault."""
        return f"{KEY_PREFIX}_{self.key_id}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _who(actor: Actor) -> str:
    return actor.email or actor.slack_id or actor.role or "unknown"


def create_api_key(db: Session, *, product: str, actor: Actor, now: datetime | None = None) -> NewApiKey:
    """Issue a key for `product` inside the caller's transaction (row and `api_key.created`
    commit together). The plaintext is in the answer only: show it once, store it nowhere."""
    now = now or utcnow()
    if not isinstance(product, str) or not PRODUCT_PATTERN.fullmatch(product):
        raise ApiKeyError(
            "product must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        )
    key_id = secrets.token_hex(KEY_ID_BYTES)
    plaintext = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
    db.add(
        ApiKey(
            id=key_id,
            product=product,
            key_hash=hash_token(plaintext),
            created_at=now,
            created_by=_who(actor),
            revoked_at=None,
            revoked_by=None,
        )
    )
    db.flush()
    audit.append(
        db,
        EventDraft(type="api_key.created", actor=actor, details={"key_id": key_id, "product": product}),
        now=now,
    )
    return NewApiKey(key_id, plaintext)


def revoke_api_key(db: Session, key_id: str, *, actor: Actor, now: datetime | None = None) -> bool:
    """Revoke at once, inside the caller's transaction. True when this call revoked it; False
    when no such key exists or it was already revoked (nothing is written then). Accepts the
    key id or its display form `ibk_<key id>`."""
    now = now or utcnow()
    if key_id.startswith(f"{KEY_PREFIX}_"):
        key_id = key_id[len(KEY_PREFIX) + 1 :]
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ApiKeyError("a key id is 16 hexadecimal digits (as `api-keys list` shows it)")
    # Conditional UPDATE: of two concurrent revocations exactly one records the event.
    won = affected_rows(
        db,
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=_who(actor))
        .execution_options(synchronize_session=False)
    )
    if won != 1:
        return False
    product = db.execute(select(ApiKey.product).where(ApiKey.id == key_id)).scalar_one()
    audit.append(
        db,
        EventDraft(type="api_key.revoked", actor=actor, details={"key_id": key_id, "product": product}),
        now=now,
    )
    return True


def list_api_keys(db: Session) -> list[ApiKeyView]:
    """Every key ever issued, oldest first, revoked ones included (never the key itself)."""
    rows = db.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).scalars()
    return [
        ApiKeyView(
            key_id=row.id,
            product=row.product,
            created_at=row.created_at,
            created_by=row.created_by,
            revoked_at=row.revoked_at,
            revoked_by=row.revoked_by,
        )
        for row in rows
    ]


# --- authentication --------------------------------------------------------------------


@dataclass(frozen=True)
class ApiPrincipal:
    """The product a request authenticated as."""

    key_id: str
    product: str


class AuthProblem(str, enum.Enum):
    """Why a request was refused; recorded as the `api.refused` event's `cause`."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    WRONG_SECRET = "wrong_secret"
    REVOKED = "revoked"


#: what the caller is told: an unknown key id and a wrong secret read the same, so the answer
#: says nothing about which key ids exist
AUTH_ERRORS: dict[AuthProblem, tuple[str, str]] = {
    AuthProblem.MISSING: ("missing_api_key", "Send the product's API key as `Authorization: Bearer <key>`."),
    AuthProblem.MALFORMED: ("invalid_api_key", "The API key is not valid."),
    AuthProblem.UNKNOWN_KEY: ("invalid_api_key", "The API key is not valid."),
    AuthProblem.WRONG_SECRET: ("invalid_api_key", "The API key is not valid."),
    AuthProblem.REVOKED: ("revoked_api_key", "This API key has been revoked; ask for a new one."),
}


@dataclass(frozen=True)
class AuthRefused:
    problem: AuthProblem

    @property
    def code(self) -> str:
        return AUTH_ERRORS[self.problem][0]

    @property
    def message(self) -> str:
        return AUTH_ERRORS[self.problem][1]


def _credential(authorization: str | None) -> str | None:
    if not authorization:
        return None
    match = _BEARER.fullmatch(authorization.strip()) if len(authorization) <= MAX_CREDENTIAL_CHARS + 16 else None
    return match.group("credential") if match else ""


def authenticate(
    ctx: DomainContext,
    authorization: str | None,
    *,
    endpoint: str,
    refusals: RefusalAuditor,
    client: ClientInfo = ClientInfo(),
    now: datetime | None = None,
) -> ApiPrincipal | AuthRefused:
    """Check an `Authorization` header. A refusal is audited as `api.refused` (bounded by
    `refusals`, bot/domain/refusals.py) with the key id when one can be read, never the secret."""
    now = now or utcnow()
    credential = _credential(authorization)
    if credential is None:
        return _refuse_auth(ctx, AuthProblem.MISSING, None, endpoint=endpoint, refusals=refusals, client=client, now=now)
    match = _KEY.fullmatch(credential) if len(credential) <= MAX_CREDENTIAL_CHARS else None
    if match is None:
        readable = _KEY_ID_OF.match(credential)
        key_id = readable.group("key_id") if readable else None
        return _refuse_auth(ctx, AuthProblem.MALFORMED, key_id, endpoint=endpoint, refusals=refusals, client=client, now=now)
    key_id = match.group("key_id")
    with ctx.sessions() as db:
        row = db.get(ApiKey, key_id)
        stored = (row.key_hash, row.product, row.revoked_at) if row is not None else None
    # compare_digest (hmac's) takes as long wherever the digests differ; an unknown key id is
    # compared too, against a hash no key has, so both refusals cost the same.
    matches = secrets.compare_digest(hash_token(credential), stored[0] if stored else _NO_SUCH_KEY_HASH)
    if stored is None or not matches:
        problem = AuthProblem.UNKNOWN_KEY if stored is None else AuthProblem.WRONG_SECRET
        return _refuse_auth(ctx, problem, key_id, endpoint=endpoint, refusals=refusals, client=client, now=now)
    _, product, revoked_at = stored
    if revoked_at is not None:
        return _refuse_auth(
            ctx, AuthProblem.REVOKED, key_id, product=product, endpoint=endpoint, refusals=refusals, client=client, now=now
        )
    return ApiPrincipal(key_id=key_id, product=product)


def _refuse_auth(
    ctx: DomainContext,
    problem: AuthProblem,
    key_id: str | None,
    *,
    endpoint: str,
    refusals: RefusalAuditor,
    client: ClientInfo,
    now: datetime,
    product: str | None = None,
) -> AuthRefused:
    details: dict[str, Any] = {"cause": problem.value, "endpoint": endpoint[:64], **client.as_details()}
    if key_id is not None:
        details["key_id"] = key_id
    if product is not None:
        details["product"] = product
    draft = EventDraft(type="api.refused", actor=Actor(role="api_client"), details=details)
    if refusals.refuse(f"api.refused:{problem.value}", client.ip, lambda db: draft, now=now):
        log.warning("product API: refused a request (%s, key id %s)", problem.value, key_id or "-")
    return AuthRefused(problem)


# --- session status --------------------------------------------------------------------

_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def looks_like_session_id(value: str) -> bool:
    """Session ids are lower-case UUIDs; anything else is unknown without asking the
    database (PostgreSQL refuses NUL in text, and a long id cannot fit the column)."""
    return bool(_SESSION_ID.fullmatch(value))


@dataclass(frozen=True)
class SessionReport:
    """What `GET /api/v1/sessions/{sid}` answers."""

    session_id: str
    status: SessionStatus
    account: str
    customer_user: str
    scope: str
    started_at: datetime
    #: when the session ends (live) or ended (every other status)
    ends_at: datetime
    #: None while live
    ended_at: datetime | None
    #: the product it was launched into (None: none was configured); not part of the answer
    product: str | None = None


class AccessProblem(str, enum.Enum):
    """Why a product's key may not see a session that exists: recorded as the refusal's
    `cause`; the caller is told only that there is no such session, so one product learns
    nothing about another's sessions."""

    #: the session was launched into another product
    WRONG_PRODUCT = "wrong_product"
    #: the session names no product (none was configured when it was launched) and more than
    #: one product holds keys, so which one it belongs to cannot be told
    UNBOUND_SESSION = "unbound_session"


#: the products holding a key that is not revoked; two are enough to know "more than one"
_ACTIVE_PRODUCTS = select(ApiKey.product).where(ApiKey.revoked_at.is_(None)).distinct().limit(2)


def product_access(db: Session, principal: ApiPrincipal, session_product: str | None) -> AccessProblem | None:
    """May the product `principal` authenticated as read, or report actions in, a session
    launched into `session_product`? None when it may. A session bound to a product belongs
    to that product alone. A session bound to none (launched while the policy named no
    product, or before sessions were bound) belongs to the install's only product: allowed
    while exactly one product holds keys, refused as soon as a second one does."""
    if session_product is not None:
        return None if session_product == principal.product else AccessProblem.WRONG_PRODUCT
    products = db.execute(_ACTIVE_PRODUCTS).scalars().all()
    return None if products == [principal.product] else AccessProblem.UNBOUND_SESSION


def session_report_for(
    ctx: DomainContext,
    principal: ApiPrincipal,
    session_id: str,
    *,
    refusals: RefusalAuditor,
    client: ClientInfo = ClientInfo(),
    now: datetime | None = None,
) -> SessionReport | None:
    """`GET /api/v1/sessions/{sid}` for one product: the report, or None — no such session, or
    one the product may not see (product_access). The second is audited as `api.refused`
    with its cause, through `refusals` like every refusal an API client can repeat."""
    now = now or utcnow()
    report = session_report(ctx, session_id, now=now)
    if report is None:
        return None
    with reading(ctx.sessions) as db:
        problem = product_access(db, principal, report.product)
    if problem is None:
        return report
    draft = EventDraft(
        type="api.refused",
        actor=Actor(role="api_client"),
        account=report.account,
        customer_user=report.customer_user,
        session_id=report.session_id,
        details={
            "cause": problem.value,
            "endpoint": "product_api.session_status",
            "key_id": principal.key_id,
            "product": principal.product,
            "session_product": report.product,
            **client.as_details(),
        },
    )
    if refusals.refuse(f"api.refused:{problem.value}", client.ip, lambda db: draft, now=now):
        log.warning("product API: product %s refused session %s (%s)", principal.product, session_id, problem.value)
    return None


@dataclass(frozen=True)
class ProductEnd:
    """What the product's "end session" did: the session's report (None, as for a status read,
    for no such session or another product's) and the outbox targets the end owed (none when
    the session was already over), for the deliverer."""

    report: SessionReport | None
    targets: tuple[str, ...] = ()


def end_session_for(
    ctx: DomainContext,
    principal: ApiPrincipal,
    session_id: str,
    *,
    refusals: RefusalAuditor,
    client: ClientInfo = ClientInfo(),
    now: datetime | None = None,
) -> ProductEnd:
    """`POST /api/v1/sessions/{sid}/end`: the agent pressed "End session" in the product. The
    session ends exactly as when the agent ends it from Slack (`session.ended`, the agent's DM,
    any expiry warning and the security feed edited through the outbox), recorded as done
    through the product. Idempotent: a session already over is left as it ended and its report
    returned. No report, as for a status read, for no such session or another product's
    (audited)."""
    now = now or utcnow()
    report = session_report_for(ctx, principal, session_id, refusals=refusals, client=client, now=now)
    if report is None or report.status is not SessionStatus.LIVE:
        return ProductEnd(report)
    targets: tuple[str, ...] = ()
    with ctx.sessions() as db, db.begin():
        session = db.execute(
            select(ImpersonationSession).where(ImpersonationSession.id == session_id).with_for_update(of=ImpersonationSession)
        ).scalar_one()
        if status_at(session, now) is SessionStatus.LIVE:
            try:
                with db.begin_nested():
                    targets = close_session(
                        db, session, target=RequestState.ENDED, actor=Actor.agent_of(session.request), now=now,
                        details={"via": "product", "product": principal.product, "key_id": principal.key_id, **client.as_details()},
                    )
            except TransitionRefused:
                pass  # ended, revoked or expired meanwhile by someone else: nothing to do
    return ProductEnd(session_report(ctx, session_id, now=now), targets)


def session_report(ctx: DomainContext, session_id: str, *, now: datetime | None = None) -> SessionReport | None:
    """Decided now, from `expires_at` and the recorded state (sessions.status_at): a session
    past its `expires_at` is expired even if the scheduler has not tidied it yet."""
    now = now or utcnow()
    if not looks_like_session_id(session_id):
        return None
    check = check_session(ctx, session_id, now=now)
    if check.session is None or check.status is None:
        return None
    session = check.session
    ended_at = None if check.status is SessionStatus.LIVE else (session.ended_at or session.expires_at)
    return SessionReport(
        session_id=session.id,
        status=check.status,
        account=session.request.account,
        customer_user=session.request.customer_user,
        scope=session.request.scope,
        started_at=session.started_at,
        ends_at=ended_at or session.expires_at,
        ended_at=ended_at,
        product=session.product,
    )


# --- actions ---------------------------------------------------------------------------

MAX_ACTION_BYTES = 16 * 1024
#: a product reports late (retries, queues) but an action more than this after the session's
#: end, or ahead of our clock, is not believed (clock skew between two NTP-synced hosts is far
#: smaller)
ACTION_GRACE = timedelta(seconds=60)
ACTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: Idempotency-Key values (draft-ietf-httpapi-idempotency-key-header): a UUID fits, and none of
#: these characters needs escaping in JSON, so the key is found in the stored details as sent.
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_TARGET_CHARS = 256
MAX_DETAIL_KEYS = 32  # in any one object of `details`
MAX_DETAIL_ITEMS = 32  # in any one list of `details`
MAX_DETAIL_VALUES = 256  # in the whole of `details`
MAX_DETAIL_DEPTH = 4
MAX_DETAIL_KEY_CHARS = 64
MAX_DETAIL_STRING_CHARS = 1024
MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 §3.2.2.3 / I-JSON (RFC 7493 §2.2)
BODY_FIELDS = frozenset({"action", "target", "at", "details"})
JSON_MEDIA_TYPE = "application/json"
# RFC 3339 §5.6 date-time: an offset is required ("Z" or ±hh:mm); "T" and "Z" may be lower case.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
# Control characters have no place in a one-line name; surrogates cannot be encoded as UTF-8.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")  # NUL: PostgreSQL text refuses it


NO_SUCH_SESSION = "There is no session with this id."


class ActionProblem(str, enum.Enum):
    """Why an action was refused; recorded as the `action.refused` event's `cause`."""

    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    UNKNOWN_SESSION = "unknown_session"
    BEFORE_SESSION = "before_session"
    AFTER_SESSION = "after_session"
    IN_FUTURE = "in_future"
    #: the session is another product's (AccessProblem); answered like UNKNOWN_SESSION
    WRONG_PRODUCT = "wrong_product"
    UNBOUND_SESSION = "unbound_session"


@dataclass(frozen=True)
class ActionUpload:
    """The request as the web face read it: at most MAX_ACTION_BYTES + 1 bytes of body (so a
    body that is too large is seen to be, without reading all of it)."""

    content_type: str | None
    body: bytes
    declared_length: int | None = None
    idempotency_key: str | None = None  # the Idempotency-Key header, as sent


@dataclass(frozen=True)
class ActionReport:
    """A validated action, as it is written into the audit log."""

    action: str
    target: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None

    def as_details(self) -> dict[str, Any]:
        written = {"action": self.action, "target": self.target, "at": audit.format_time(self.at), "details": self.details}
        if self.idempotency_key is not None:
            written["idempotency_key"] = self.idempotency_key
        return written


@dataclass(frozen=True)
class ActionRecorded:
    seq: int
    session_id: str
    recorded_at: datetime
    replayed: bool = False  # the same Idempotency-Key was recorded before: nothing appended


@dataclass(frozen=True)
class ActionRefused:
    problem: ActionProblem
    #: one sentence the product's developers can act on; never echoes submitted values
    message: str


class _Invalid(Exception):
    def __init__(self, problem: ActionProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE:
        return False
    # RFC 8259 §8.1: JSON between systems is UTF-8; any other declared charset is refused.
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # RFC 8259 §4: names SHOULD be unique; parsers disagree on which one wins.
            raise _Invalid(ActionProblem.INVALID_JSON, "The JSON body has a duplicate key.")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise _Invalid(ActionProblem.INVALID_JSON, f"{name} is not JSON.")


def _parse_json(upload: ActionUpload) -> Any:
    try:
        text = upload.body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Invalid(ActionProblem.INVALID_JSON, "The body is not UTF-8.") from None
    try:
        return json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant, parse_float=Decimal
        )
    except (json.JSONDecodeError, RecursionError):
        raise _Invalid(ActionProblem.INVALID_JSON, "The body is not valid JSON.") from None


def _invalid(message: str) -> _Invalid:
    return _Invalid(ActionProblem.INVALID_BODY, message)


def _string(value: Any, name: str, *, max_chars: int, one_line: bool) -> str:
    if not isinstance(value, str):
        raise _invalid(f"`{name}` must be a string.")
    if not value:
        raise _invalid(f"`{name}` must not be empty.")
    if len(value) > max_chars:
        raise _invalid(f"`{name}` must be at most {max_chars} characters.")
    if _UNSTORABLE.search(value) or (one_line and _CONTROL.search(value)):
        raise _invalid(f"`{name}` contains control characters or unpaired surrogates.")
    return value


def parse_time(value: Any, name: str = "at") -> datetime:
    """A strict RFC 3339 date-time with an offset, as an aware UTC datetime (microseconds)."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) and len(value) <= 40 else None
    if match is None:
        raise _invalid(f"`{name}` must be an RFC 3339 time with an offset, e.g. 2026-01-01T12:00:00Z.")
    fraction = (match.group("fraction") or "")[:6].ljust(6, "0")
    offset = match.group("offset").upper().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}.{fraction}{offset}")
    except ValueError:
        raise _invalid(f"`{name}` is not a real date and time.") from None
    return parsed.astimezone(UTC)


class _DetailsChecker:
    def __init__(self) -> None:
        self.values = 0

    def check(self, value: Any, path: str, depth: int) -> Any:
        self.values += 1
        if self.values > MAX_DETAIL_VALUES:
            raise _invalid(f"`details` must hold at most {MAX_DETAIL_VALUES} values in all.")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                raise _invalid(f"`{path}` is an integer beyond ±(2^53 - 1); send it as a string.")
            return value
        if isinstance(value, (Decimal, float)):
            raise _invalid(
                f"`{path}` is a number with a fraction or exponent; the audit log holds integers "
                "only (canonical encoding, RFC 8785), so send it as a string or an integer."
            )
        if isinstance(value, str):
            return _string(value, path, max_chars=MAX_DETAIL_STRING_CHARS, one_line=False) if value else value
        if depth >= MAX_DETAIL_DEPTH:
            raise _invalid(f"`details` may nest at most {MAX_DETAIL_DEPTH} levels deep.")
        if isinstance(value, list):
            if len(value) > MAX_DETAIL_ITEMS:
                raise _invalid(f"`{path}` must hold at most {MAX_DETAIL_ITEMS} items.")
            return [self.check(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
        if isinstance(value, dict):
            if len(value) > MAX_DETAIL_KEYS:
                raise _invalid(f"`{path}` must hold at most {MAX_DETAIL_KEYS} keys.")
            checked = {}
            for key, item in value.items():
                if not key or len(key) > MAX_DETAIL_KEY_CHARS or _CONTROL.search(key) or _UNSTORABLE.search(key):
                    raise _invalid(
                        f"`{path}` has a key that is empty, longer than {MAX_DETAIL_KEY_CHARS} characters "
                        "or contains control characters."
                    )
                checked[key] = self.check(item, f"{path}.{key}", depth + 1)
            return checked
        raise _invalid(f"`{path}` has a value JSON cannot hold.")  # pragma: no cover - json gives no other types


def parse_action(upload: ActionUpload) -> ActionReport:
    """Validate a reported action strictly. Raises _Invalid with a message naming the field."""
    if (upload.declared_length or 0) > MAX_ACTION_BYTES or len(upload.body) > MAX_ACTION_BYTES:
        raise _Invalid(ActionProblem.TOO_LARGE, f"The body must be at most {MAX_ACTION_BYTES} bytes.")
    if not _is_json(upload.content_type):
        raise _Invalid(ActionProblem.UNSUPPORTED_MEDIA_TYPE, "Send the action as JSON (Content-Type: application/json).")
    document = _parse_json(upload)
    if not isinstance(document, dict):
        raise _invalid("The body must be a JSON object.")
    unknown = set(document) - BODY_FIELDS
    if unknown:
        raise _invalid(f"Unknown fields; the body has only {', '.join(sorted(BODY_FIELDS))}.")
    for required in ("action", "target", "at"):
        if required not in document:
            raise _invalid(f"`{required}` is required.")
    action = _string(document["action"], "action", max_chars=64, one_line=True)
    if not ACTION_NAME_PATTERN.fullmatch(action):
        raise _invalid("`action` must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'.")
    target = _string(document["target"], "target", max_chars=MAX_TARGET_CHARS, one_line=True)
    at = parse_time(document["at"])
    details = document.get("details", {})
    if not isinstance(details, dict):
        raise _invalid("`details` must be a JSON object.")
    checked = _DetailsChecker().check(details, "details", 0)
    key = upload.idempotency_key
    if key is not None and not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise _invalid("The Idempotency-Key header must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'.")
    return ActionReport(action=action, target=target, at=at, details=checked, idempotency_key=key)


def _recorded_before(db: Session, session_id: str, key: str) -> AuditEvent | None:
    """The `action.recorded` event of this session that carried this idempotency key, if any.
    The key's characters need no JSON escaping, so it is found as written in the canonical
    details (docs/audit.md); the (session_id, type) index bounds the scan to the session."""
    needle = f'"idempotency_key":"{key}"'
    return db.execute(
        select(AuditEvent)
        .where(AuditEvent.session_id == session_id, AuditEvent.type == "action.recorded", AuditEvent.details.contains(needle, autoescape=True))
        .limit(1)
    ).scalar_one_or_none()


def _timing_problem(session: ImpersonationSession, report: ActionReport, now: datetime) -> ActionRefused | None:
    if report.at < session.started_at:
        return ActionRefused(
            ActionProblem.BEFORE_SESSION,
            f"`at` is before the session started ({audit.format_time(session.started_at)}).",
        )
    grace = int(ACTION_GRACE.total_seconds())
    if report.at > now + ACTION_GRACE:
        return ActionRefused(ActionProblem.IN_FUTURE, f"`at` is more than {grace} s ahead of this service's clock.")
    # Checked after the clock, so the session here has already ended (or expired) by now.
    end = session.ended_at or session.expires_at
    if report.at > end + ACTION_GRACE:
        return ActionRefused(
            ActionProblem.AFTER_SESSION,
            f"`at` is more than {grace} s after the session's end "
            f"({status_at(session, now).value} at {audit.format_time(end)}).",
        )
    return None


def record_action(
    ctx: DomainContext,
    principal: ApiPrincipal,
    session_id: str,
    upload: ActionUpload,
    *,
    client: ClientInfo = ClientInfo(),
    now: datetime | None = None,
) -> ActionRecorded | ActionRefused:
    """Append a write action the product did in a session as `action.recorded`: the session
    id is the event's `session_id` (the hand-off's `sid`, the `impersonation_context`), the
    actor is the session's agent as recorded, and the details name the product and its key.
    Every refusal is audited as `action.refused` with why, in the same way."""
    now = now or utcnow()
    parsed: ActionReport | ActionRefused
    try:
        parsed = parse_action(upload)
    except _Invalid as invalid:
        parsed = ActionRefused(invalid.problem, str(invalid))
    with ctx.sessions() as db, db.begin():
        session = db.get(ImpersonationSession, session_id) if looks_like_session_id(session_id) else None
        refuse = partial(_refuse_action, db, principal, session_id, session, upload=upload, client=client, now=now)
        if isinstance(parsed, ActionRefused):
            return refuse(None, parsed)
        if session is None:
            return refuse(parsed, ActionRefused(ActionProblem.UNKNOWN_SESSION, NO_SUCH_SESSION))
        access = product_access(db, principal, session.product)
        if access is not None:
            return refuse(parsed, ActionRefused(ActionProblem(access.value), NO_SUCH_SESSION))
        if parsed.idempotency_key is not None:
            # A retry of a report whose answer was lost: answer as the first time, append
            # nothing (draft-ietf-httpapi-idempotency-key-header). The session row is locked
            # first (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), so two
            # concurrent copies cannot both miss each other.
            db.execute(select(ImpersonationSession.id).where(ImpersonationSession.id == session.id).with_for_update())
            earlier = _recorded_before(db, session.id, parsed.idempotency_key)
            if earlier is not None:
                return ActionRecorded(seq=earlier.seq, session_id=session.id, recorded_at=earlier.occurred_at, replayed=True)
        timing = _timing_problem(session, parsed, now)
        if timing is not None:
            return refuse(parsed, timing)
        request = session.request
        event = audit.append_now(
            db,
            EventDraft.about(
                request,
                "action.recorded",
                actor=Actor(slack_id=session.agent_slack_id, email=request.agent_email, role=request.agent_role),
                session_id=session.id,
                details={
                    "product": principal.product,
                    "key_id": principal.key_id,
                    **parsed.as_details(),
                    # A write in a read-only session is still recorded (it happened); the scope
                    # and status are kept beside it so reviews and alerts can find it.
                    "session_scope": request.scope,
                    "session_status": status_at(session, now).value,
                },
            ),
            now=now,
        )
        return ActionRecorded(seq=event.seq, session_id=session.id, recorded_at=now)


def _refuse_action(
    db: Session,
    principal: ApiPrincipal,
    session_id: str,
    session: ImpersonationSession | None,
    report: ActionReport | None,
    refusal: ActionRefused,
    *,
    upload: ActionUpload,
    client: ClientInfo,
    now: datetime,
) -> ActionRefused:
    """Audit a refused action as `action.refused` (in the caller's transaction) and return
    the refusal. A validated action is kept in full: the evidence stays even when refused."""
    details: dict[str, Any] = {
        "product": principal.product,
        "key_id": principal.key_id,
        "cause": refusal.problem.value,
        "message": refusal.message,
        **client.as_details(),
    }
    if report is not None:
        details.update(report.as_details())
    if refusal.problem is ActionProblem.TOO_LARGE:
        details["limit"] = MAX_ACTION_BYTES
        if upload.declared_length is not None:
            details["declared_length"] = min(upload.declared_length, MAX_SAFE_INTEGER)
    request = session.request if session is not None else None
    if session is None and looks_like_session_id(session_id):
        details["session_id"] = session_id
    audit.append(
        db,
        EventDraft(
            type="action.refused",
            actor=Actor(role="product"),
            account=request.account.external_id if request else None,
            customer_user=request.customer_user.external_id if request else None,
            request_id=request.id if request else None,
            session_id=session.id if session else None,
            details=details,
        ),
        now=now,
    )
    return refusal
