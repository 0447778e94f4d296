"""The OpenID Connect face of the test provider (tests/support/idp.py `IdentityProvider.oidc`).

Three routes beside the JWKS, served by the provider's own HTTP server:

- `/.well-known/openid-configuration`: issuer, the two endpoints, the provider's `jwks_uri`,
  S256 as the only PKCE method;
- `/authorize`: no login page; it approves at once as `signed_in_as` and answers 302 to the
  `redirect_uri` with a single-use code (remembered with its nonce, challenge and redirect
  URI) and the `state`; a wrong `client_id`, response type or PKCE method is a 400;
- `/token`: checks the form (grant type, code, redirect URI), the client (HTTP Basic with
  the secret when one is set, else `client_id` in the form) and PKCE S256 (unless
  `ignore_pkce`), then answers `{id_token, access_token, token_type}` with an ID token signed
  by the provider's current key. A refused request answers 400/401 with an OAuth error, and
  the reason is appended to `token_refusals` so a test can say which check fired.

Knobs: `email_verified` (the claim's value, any JSON), `id_token_overrides` (claims to set
or, with None, remove: a wrong nonce, aud, iss, exp ...), `token_status` (answer the token
request with this status once the request is good), `ignore_pkce`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

if TYPE_CHECKING:
    from tests.support.idp import IdentityProvider

DISCOVERY = "/.well-known/openid-configuration"
AUTHORIZE = "/authorize"
TOKEN = "/token"
Answer = tuple[int, bytes, dict[str, str]]


@dataclass(frozen=True)
class IssuedCode:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    email: str


def _json(status: int, document: Mapping[str, Any]) -> Answer:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return status, json.dumps(document).encode(), headers


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcFace:
    """See the module docstring; made by `IdentityProvider.oidc(client_id, client_secret)`."""

    paths = frozenset({DISCOVERY, AUTHORIZE, TOKEN})

    def __init__(
        self,
        provider: IdentityProvider,
        client_id: str,
        client_secret: str | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.provider = provider
        self.client_id = client_id
        self.client_secret = client_secret
        self.now = now  # the provider's clock for iat/exp (a test's ManualClock.now)
        self.signed_in_as = "ana@example.net"
        self.subject = "oidc-user-1"
        self.email_verified: Any = True
        self.id_token_overrides: dict[str, Any] = {}
        self.token_status = 200
        self.ignore_pkce = False
        self.codes: dict[str, IssuedCode] = {}
        self.discovery_requests = 0
        self.authorize_requests = 0
        self.token_requests = 0
        self.token_refusals: list[str] = []

    @property
    def configuration(self) -> dict[str, Any]:
        issuer = self.provider.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": issuer + AUTHORIZE,
            "token_endpoint": issuer + TOKEN,
            "jwks_uri": self.provider.jwks_url,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.provider.signing_key.alg],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic" if self.client_secret else "none"
            ],
        }

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The answer to one request for a path of `paths` (headers' names in lower case)."""
        parts = urlsplit(target)
        if parts.path == DISCOVERY and method == "GET":
            self.discovery_requests += 1
            return _json(200, self.configuration)
        if parts.path == AUTHORIZE and method == "GET":
            self.authorize_requests += 1
            return self._authorize(parse_qs(parts.query))
        if parts.path == TOKEN and method == "POST":
            self.token_requests += 1
            return self._token(headers, body)
        return _json(405, {"error": "invalid_request"})

    def id_token_claims(self, issued: IssuedCode) -> dict[str, Any]:
        at = int(self.now().timestamp())
        claims: dict[str, Any] = {
            "iss": self.provider.issuer,
            "sub": self.subject,
            "aud": issued.client_id,
            "iat": at,
            "exp": at + 300,
            "auth_time": at,
            "email": issued.email,
            "email_verified": self.email_verified,
        }
        if issued.nonce is not None:
            claims["nonce"] = issued.nonce
        claims.update(self.id_token_overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def _authorize(self, query: dict[str, list[str]]) -> Answer:
        one = {name: values[0] for name, values in query.items() if len(values) == 1}
        redirect = one.get("redirect_uri")
        if redirect is None or one.get("client_id") != self.client_id:
            return _json(400, {"error": "invalid_request"})
        if one.get("response_type") != "code" or one.get("code_challenge_method", "S256") != "S256":
            return _json(400, {"error": "invalid_request"})
        code = secrets.token_urlsafe(24)
        self.codes[code] = IssuedCode(
            self.client_id, redirect, one.get("nonce"), one.get("code_challenge"),
            self.signed_in_as,
        )  # fmt: skip
        back = {"code": code} | ({"state": one["state"]} if "state" in one else {})
        joiner = "&" if "?" in redirect else "?"
        return 302, b"", {"Location": f"{redirect}{joiner}{urlencode(back)}"}

    def _refuse(self, reason: str, error: str = "invalid_grant", status: int = 400) -> Answer:
        self.token_refusals.append(reason)
        return _json(status, {"error": error, "error_description": reason})

    def _token(self, headers: Mapping[str, str], body: bytes) -> Answer:
        try:
            form = {k: v[0] for k, v in parse_qs(body.decode(), strict_parsing=True).items()}
        except ValueError:
            return self._refuse("form", "invalid_request")
        if form.get("grant_type") != "authorization_code":
            return self._refuse("grant_type", "unsupported_grant_type")
        if not self._client_ok(headers, form):
            return self._refuse("client", "invalid_client", 401)
        issued = self.codes.pop(form.get("code", ""), None)  # single use, right or wrong
        if issued is None:
            return self._refuse("code")
        if form.get("redirect_uri") != issued.redirect_uri:
            return self._refuse("redirect_uri")
        verifier = form.get("code_verifier")
        if not self.ignore_pkce and (
            issued.challenge is None or verifier is None or _s256(verifier) != issued.challenge
        ):
            return self._refuse("pkce")
        if self.token_status != 200:
            return self._refuse("token_status", "server_error", self.token_status)
        header = {"typ": "JWT", "alg": self.provider.signing_key.alg,
                  "kid": self.provider.signing_key.kid}  # fmt: skip
        id_token = self.provider.sign(self.id_token_claims(issued), header=header)
        return _json(200, {"id_token": id_token, "access_token": secrets.token_urlsafe(16),
                           "token_type": "Bearer", "expires_in": 300})  # fmt: skip

    def _client_ok(self, headers: Mapping[str, str], form: Mapping[str, str]) -> bool:
        if self.client_secret is None:
            return form.get("client_id") == self.client_id
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            pair = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            return False
        client_id, _, secret = pair.partition(":")
        return (unquote_plus(client_id), unquote_plus(secret)) == (
            self.client_id, self.client_secret,
        )  # fmt: skip
