"""Sign in with Slack before a link redeems: the relying party's half of OpenID Connect.

With the policy's `links.require_slack_sign_in`, the confirmation page's POST does not redeem:
it sends the browser to Slack's authorization endpoint (OpenID Connect Core 1.0 §3.1.2, the
authorization code flow; https://api.slack.com/authentication/sign-in-with-slack), and Slack
sends it back to `CALLBACK_PATH` with a code. The code is exchanged at the token endpoint
(`openid.connect.token`, client_secret_post), the id_token is verified, and only then does the
one-time redemption run, with the signed-in ids as its precondition (bot/domain/links.py).

What holds the flow together is one cookie, encrypted and authenticated (Fernet) under a key
derived from the bot's secret, holding the link token, `state`, `nonce` and the PKCE
`code_verifier` (RFC 7636). `state` bound to that cookie is the return's CSRF protection
(RFC 6749 §10.12): a callback in another browser, or with another flow's state, redeems
nothing. `nonce` in the id_token ties the token to this flow (Core §3.1.2.1, §3.1.3.7). PKCE
makes a stolen code useless without the cookie. The id_token is checked as Core §3.1.3.7
says: signature by a key in the provider's JWKS with RS256 (the only algorithm Slack's
discovery document names), `iss` = the issuer, `aud` = our client id, `exp`, `iat`, `nonce`.

Slack's access token from the exchange is never used, stored or logged.
"""
from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Response

from bot.domain.sign_in import SignedInAgent
from bot.web.security import origin_of

log = logging.getLogger(__name__)

#: where Slack sends the browser back; register `<PUBLIC_BASE_URL>/l/oidc/callback` as a
#: Redirect URL of the Slack app (manifest.yaml oauth_config.redirect_urls). Two path segments,
#: so it can never be read as a link token (`/l/<token>`).
CALLBACK_PATH = "/l/oidc/callback"
#: the only scope needed: the id_token's `sub` and Slack's team/user claims come with `openid`
SCOPE = "openid"
#: a sign-in must come back within the longest link window (policy: never more than 10 min)
FLOW_TTL_SECONDS = 10 * 60
HTTP_TIMEOUT_SECONDS = 10
#: id_token signing algorithms accepted: Slack's discovery document lists only RS256, and
#: naming it here means a token can never choose its own (`alg: none`, HS256 with a public key)
ALGORITHMS = ["RS256"]
#: seconds of clock difference tolerated on `exp` and `iat` (RFC 7519 §4.1.4 "small leeway")
CLOCK_LEEWAY_SECONDS = 30
#: Slack's claims for who signed in (Sign in with Slack, "Response" of openid.connect.token)
SLACK_USER_ID_CLAIM = "https://slack.com/user_id"
SLACK_TEAM_ID_CLAIM = "https://slack.com/team_id"
SLACK_ENTERPRISE_ID_CLAIM = "https://slack.com/enterprise_id"
#: HKDF `info` label (RFC 5869 §3.2) of the flow cookie's key, distinct from the CSRF key's
FLOW_KEY_LABEL = b"impersonation-bot/slack-sign-in-flow/v1"
_DISCOVERY_PATH = "/.well-known/openid-configuration"
_ID_LENGTH = 32  # Slack ids (T…, U…, W…, E…) are far shorter; anything longer is not one


class SignInFailure(str, enum.Enum):
    """Why a return from Slack was refused; recorded in the audit event (`cause`)."""

    MISSING_FLOW = "missing_flow"  # no sign-in cookie, or an expired or forged one
    STATE_MISMATCH = "state_mismatch"
    PROVIDER_ERROR = "provider_error"  # Slack said error=… (e.g. the user cancelled)
    MISSING_CODE = "missing_code"
    TOKEN_EXCHANGE = "token_exchange"  # openid.connect.token refused or unreachable
    ID_TOKEN_INVALID = "id_token_invalid"
    NONCE_MISMATCH = "nonce_mismatch"


class SignInError(Exception):
    def __init__(self, failure: SignInFailure) -> None:
        super().__init__(failure.value)
        self.failure = failure


class ProviderConfigError(RuntimeError):
    """The provider's discovery document cannot be used (wrong issuer, missing endpoints)."""


@dataclass(frozen=True)
class SignInFlow:
    """One sign-in in progress, as the cookie carries it."""

    token: str
    state: str
    nonce: str
    code_verifier: str

    def __repr__(self) -> str:  # the link token and the verifier are bearer secrets
        return "SignInFlow(<redacted>)"


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _http_json(request: urllib.request.Request) -> Any:
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - https URLs from config
        return json.loads(response.read().decode("utf-8"))


class SlackSignIn:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        issuer: str,
        public_base_url: str,
        secret: bytes,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.issuer = issuer.rstrip("/")
        self.redirect_uri = public_base_url.rstrip("/") + CALLBACK_PATH
        self.secure = public_base_url.startswith("https://")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=FLOW_KEY_LABEL).derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._metadata: ProviderMetadata | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SlackSignIn(client_id={self.client_id!r}, issuer={self.issuer!r})"

    # --- the provider ------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The authorization endpoint's origin, for the link pages' CSP `form-action` (a
        browser applies it to the redirect that follows the form's POST)."""
        return origin_of(self.issuer)

    def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched once per process (OpenID Connect Discovery 1.0 §4).
        Its `issuer` must be exactly the configured one (§4.3), and the authorization endpoint
        on the issuer's origin (the CSP above allows that origin alone)."""
        with self._lock:
            if self._metadata is None:
                request = urllib.request.Request(self.issuer + _DISCOVERY_PATH, headers={"Accept": "application/json"})
                document = _http_json(request)
                if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                    raise ProviderConfigError(f"the discovery document at {self.issuer} names another issuer")
                try:
                    metadata = ProviderMetadata(
                        issuer=self.issuer,
                        authorization_endpoint=str(document["authorization_endpoint"]),
                        token_endpoint=str(document["token_endpoint"]),
                        jwks_uri=str(document["jwks_uri"]),
                    )
                except KeyError as exc:
                    raise ProviderConfigError(f"the discovery document at {self.issuer} has no {exc.args[0]}") from None
                if origin_of(metadata.authorization_endpoint) != self.origin:
                    raise ProviderConfigError("the authorization endpoint is not on the issuer's origin")
                self._metadata = metadata
                self._jwks = jwt.PyJWKClient(metadata.jwks_uri, cache_keys=True, timeout=HTTP_TIMEOUT_SECONDS)
            return self._metadata

    # --- the flow cookie ----------------------------------------------------------------

    @property
    def cookie_name(self) -> str:
        return "__Host-slack_sign_in" if self.secure else "slack_sign_in"

    @property
    def cookie_path(self) -> str:
        return "/" if self.secure else "/l/"

    def _seal(self, flow: SignInFlow) -> str:
        payload = {"t": flow.token, "s": flow.state, "n": flow.nonce, "v": flow.code_verifier}
        return self._fernet.encrypt(json.dumps(payload).encode("utf-8")).decode("ascii")

    def read_flow(self, cookie: str | None) -> SignInFlow | None:
        """The flow in the browser's cookie; None when absent, forged or older than the TTL."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(cookie.encode("ascii"), ttl=FLOW_TTL_SECONDS))
            return SignInFlow(token=payload["t"], state=payload["s"], nonce=payload["n"], code_verifier=payload["v"])
        except (InvalidToken, UnicodeEncodeError, ValueError, KeyError, TypeError):
            return None

    def set_cookie(self, response: Response, flow: SignInFlow) -> None:
        # SameSite=Lax, not Strict: the return from Slack is a cross-site top-level navigation,
        # on which browsers send Lax cookies and withhold Strict ones (RFC 6265bis §5.4.7).
        response.set_cookie(
            self.cookie_name,
            self._seal(flow),
            max_age=FLOW_TTL_SECONDS,
            path=self.cookie_path,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(self.cookie_name, path=self.cookie_path, secure=self.secure, httponly=True, samesite="Lax")

    # --- the two legs --------------------------------------------------------------------

    def start(self, token: str) -> tuple[str, SignInFlow]:
        """Where to send the browser, and the flow to keep in its cookie."""
        flow = SignInFlow(
            token=token,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 characters: RFC 7636 §4.1 asks 43–128
        )
        challenge = _b64url(hashlib.sha256(flow.code_verifier.encode("ascii")).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "scope": SCOPE,
                "redirect_uri": self.redirect_uri,
                "state": flow.state,
                "nonce": flow.nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.metadata().authorization_endpoint}?{query}", flow

    def finish(self, flow: SignInFlow, *, state: str | None, code: str | None, error: str | None) -> SignedInAgent:
        """Check the return against the flow, exchange the code, verify the id_token: who
        signed in, or SignInError."""
        if not state or not hmac.compare_digest(state.encode("utf-8"), flow.state.encode("utf-8")):
            raise SignInError(SignInFailure.STATE_MISMATCH)
        if error:
            raise SignInError(SignInFailure.PROVIDER_ERROR)
        if not code:
            raise SignInError(SignInFailure.MISSING_CODE)
        id_token = self._exchange(code, flow.code_verifier)
        return self._verify(id_token, flow.nonce)

    def _exchange(self, code: str, code_verifier: str) -> str:
        """openid.connect.token (RFC 6749 §4.1.3, client_secret_post): the id_token, or
        SignInError. Slack answers 200 with `ok: false` and an `error` on failure."""
        metadata = self.metadata()
        body = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "code_verifier": code_verifier,
            }
        ).encode("ascii")
        request = urllib.request.Request(
            metadata.token_endpoint,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        try:
            answer = _http_json(request)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # the exception text names the endpoint and status, never the body we sent
            log.warning("Sign in with Slack: the token endpoint failed: %s", type(exc).__name__)
            raise SignInError(SignInFailure.TOKEN_EXCHANGE) from None
        if not isinstance(answer, dict) or answer.get("ok") is False or not isinstance(answer.get("id_token"), str):
            error = answer.get("error") if isinstance(answer, dict) else None
            log.info("Sign in with Slack: the token endpoint refused the code (%s)", str(error)[:64])
            raise SignInError(SignInFailure.TOKEN_EXCHANGE)
        return answer["id_token"]

    def _verify(self, id_token: str, nonce: str) -> SignedInAgent:
        self.metadata()
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(id_token)
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.client_id,
                issuer=self.issuer,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "nonce"]},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            log.info("Sign in with Slack: id_token refused (%s)", type(exc).__name__)
            raise SignInError(SignInFailure.ID_TOKEN_INVALID) from None
        if not isinstance(claims["nonce"], str) or not hmac.compare_digest(claims["nonce"].encode("utf-8"), nonce.encode("utf-8")):
            raise SignInError(SignInFailure.NONCE_MISMATCH)
        user_id = claims.get(SLACK_USER_ID_CLAIM)
        team_id = claims.get(SLACK_TEAM_ID_CLAIM)
        enterprise_id = claims.get(SLACK_ENTERPRISE_ID_CLAIM)
        # Slack's `sub` is the user id; a token where they differ is not one Slack issued
        if not _is_id(user_id) or user_id != claims["sub"] or not _is_id(team_id) or not (enterprise_id is None or _is_id(enterprise_id)):
            raise SignInError(SignInFailure.ID_TOKEN_INVALID)
        return SignedInAgent(user_id=user_id, team_id=team_id, enterprise_id=enterprise_id)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _ID_LENGTH and value.isalnum()
