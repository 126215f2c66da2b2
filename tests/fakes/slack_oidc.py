"""A fake Sign in with Slack (OpenID Connect provider) of the project's own, over real HTTP.

It serves what Slack serves for Sign in with Slack
(https://api.slack.com/authentication/sign-in-with-slack, and Slack's discovery document at
https://slack.com/.well-known/openid-configuration), on its own loopback port:

- `GET /.well-known/openid-configuration`: the discovery document, Slack's fields with this
  server's endpoints and this server as issuer;
- `GET /openid/connect/authorize`: checks the client id, the registered redirect URI, the
  response type, the `openid` scope, `state`, `nonce` and a PKCE S256 challenge, then "signs
  in" the test's chosen Slack user (`sign_in_as`) and redirects back with `code` and `state`
  (or `error=access_denied` when the test says the user cancelled);
- `POST /api/openid.connect.token`: client authentication (client_secret_post or _basic),
  a code issued to that client, used once, within 10 minutes, the same redirect URI, the PKCE
  verifier; answers as Slack does (`ok`, `access_token`, `token_type`, `id_token`) or
  `ok: false` with an error from Slack's reference for the method;
- `GET /openid/connect/keys`: the JWKS with the RSA key that signs id_tokens (RS256, `kid`).

id_tokens carry Slack's claims: `iss`, `sub` (= user id), `aud` (= client id), `exp`, `iat`,
`auth_time`, `nonce`, `https://slack.com/user_id`, `https://slack.com/team_id` and, for an
Enterprise Grid user, `https://slack.com/enterprise_id`. `id_token_override` lets a test change
claims or the signing key to see the relying party refuse the result.

Anything a client sends that Slack would refuse is appended to `violations`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

REFERENCE_TOKEN_METHOD = (
    Path(__file__).resolve().parents[2].parent / "shared" / "slack-reference" / "slack-api-ref" / "methods" / "openid" / "openid.connect.token.json"
)
CODE_TTL_SECONDS = 600  # OAuth 2.0 (RFC 6749 §4.1.2): "a maximum authorization code lifetime of 10 minutes"
ID_TOKEN_TTL_SECONDS = 300


@dataclass(frozen=True)
class SlackUser:
    user_id: str
    team_id: str
    enterprise_id: str | None = None
    email: str | None = None


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    code_challenge: str
    user: SlackUser
    issued: float
    used: bool = False


@dataclass
class FakeSlackOidc:
    client_id: str = "2141029472.691202649728"
    client_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    redirect_uris: list[str] = field(default_factory=list)
    #: who "signs in" at the next authorize request
    sign_in_as: SlackUser | None = None
    #: the user presses Cancel on Slack's consent page
    deny: bool = False
    #: (claims, key) → (claims, key, headers): a test's change to the next id_tokens
    id_token_override: Callable[[dict[str, Any], Any], tuple[dict[str, Any], Any, dict[str, Any]]] | None = None
    violations: list[str] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None
        reference = json.loads(REFERENCE_TOKEN_METHOD.read_text()) if REFERENCE_TOKEN_METHOD.exists() else None
        self._reference_args = frozenset(reference["args"]) if reference else None
        self._reference_errors = frozenset(reference["errors"]) if reference else None

    # --- the server -------------------------------------------------------------------

    def start(self) -> FakeSlackOidc:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSlackOidc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def issuer(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.port}"

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        routes = {
            ("GET", "/.well-known/openid-configuration"): self._discovery,
            ("GET", "/openid/connect/authorize"): self._authorize,
            ("POST", "/api/openid.connect.token"): self._token,
            ("GET", "/openid/connect/keys"): self._keys,
        }
        handler = routes.get((request.method, request.path))
        response = handler(request) if handler else Response("not found", status=404)
        return response(environ, start_response)

    # --- endpoints ----------------------------------------------------------------------

    def _discovery(self, request: Request) -> Response:
        return _json(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/openid/connect/authorize",
                "token_endpoint": f"{self.issuer}/api/openid.connect.token",
                "userinfo_endpoint": f"{self.issuer}/api/openid.connect.userInfo",
                "jwks_uri": f"{self.issuer}/openid/connect/keys",
                "scopes_supported": ["openid", "profile", "email"],
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["sub", "auth_time", "iss"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            }
        )

    def _keys(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return _json({"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]})

    def _authorize(self, request: Request) -> Response:
        args = {k: request.args[k] for k in request.args}
        self.authorize_requests.append(args)
        problems = []
        if args.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        if args.get("redirect_uri") not in self.redirect_uris:
            problems.append(f"redirect_uri {args.get('redirect_uri')!r} is not a registered Redirect URL")
        if args.get("response_type") != "code":
            problems.append("response_type must be code")
        if "openid" not in (args.get("scope") or "").split():
            problems.append("scope must include openid")
        for name in ("state", "nonce", "code_challenge"):
            if not args.get(name):
                problems.append(f"{name} missing")
        if args.get("code_challenge_method") != "S256":
            problems.append("code_challenge_method must be S256")
        if problems:
            self.violations.extend(f"authorize: {p}" for p in problems)
            # Slack shows its own error page and never redirects to an unverified URI
            return Response("; ".join(problems), status=400)
        back = args["redirect_uri"]
        if self.deny or self.sign_in_as is None:
            return _redirect(back, {"error": "access_denied", "state": args["state"]})
        code = secrets.token_hex(24)
        with self._lock:
            self._grants[code] = _Grant(
                client_id=args["client_id"],
                redirect_uri=back,
                nonce=args["nonce"],
                code_challenge=args["code_challenge"],
                user=self.sign_in_as,
                issued=time.time(),
            )
        return _redirect(back, {"code": code, "state": args["state"]})

    def _token(self, request: Request) -> Response:
        form = {k: request.form[k] for k in request.form}
        self.token_requests.append({k: ("<secret>" if k == "client_secret" else v) for k, v in form.items()})
        if self._reference_args is not None and (unknown := set(form) - self._reference_args):
            self.violations.append(f"token: arguments Slack does not know: {sorted(unknown)}")
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id, client_secret = request.authorization.username, request.authorization.password
        if client_id != self.client_id or not client_secret or not secrets.compare_digest(client_secret, self.client_secret):
            return self._error("invalid_client")
        if form.get("grant_type", "authorization_code") != "authorization_code":
            return self._error("unsupported_grant_type")
        with self._lock:
            grant = self._grants.get(form.get("code", ""))
            if grant is None or grant.used or time.time() - grant.issued > CODE_TTL_SECONDS or grant.client_id != client_id:
                return self._error("invalid_code")
            grant.used = True  # RFC 6749 §4.1.2: a code is used once
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._error("bad_redirect_uri")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest()).rstrip(b"=").decode()
        if not verifier or not secrets.compare_digest(challenge, grant.code_challenge):
            return self._error("invalid_grant")
        return _json(
            {
                "ok": True,
                "access_token": "xoxp-" + secrets.token_hex(16),
                "token_type": "Bearer",
                "id_token": self.id_token(grant.user, nonce=grant.nonce),
            }
        )

    def _error(self, error: str) -> Response:
        if self._reference_errors is not None and error not in self._reference_errors:
            self.violations.append(f"token: {error!r} is not an error of openid.connect.token")
        return _json({"ok": False, "error": error})

    # --- id_tokens ----------------------------------------------------------------------

    def id_token(self, user: SlackUser, *, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.user_id,
            "aud": self.client_id,
            "exp": now + ID_TOKEN_TTL_SECONDS,
            "iat": now,
            "auth_time": now,
            "nonce": nonce,
            "https://slack.com/user_id": user.user_id,
            "https://slack.com/team_id": user.team_id,
        }
        if user.enterprise_id:
            claims["https://slack.com/enterprise_id"] = user.enterprise_id
        if user.email:
            claims.update(email=user.email, email_verified=True)
        key, headers = self.key, {"kid": self.kid}
        if self.id_token_override is not None:
            claims, key, extra = self.id_token_override(claims, key)
            headers.update(extra)
        return jwt.encode(claims, key, algorithm=headers.pop("alg", "RS256"), headers=headers)


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json; charset=utf-8")


def _redirect(uri: str, params: dict[str, str]) -> Response:
    separator = "&" if "?" in uri else "?"
    return Response(status=302, headers={"Location": f"{uri}{separator}{urlencode(params)}"})
