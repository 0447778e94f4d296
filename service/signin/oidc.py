"""Sign-in through the installation's OpenID Connect provider: the authorization code flow
with PKCE (RFC 7636, S256), for companies whose people already have an identity provider.
Talking to the provider (discovery, token endpoint) is oidc_provider.py's.

`start` makes `state`, `nonce` (32 base64url characters each) and a PKCE verifier (43), seals
them with `return_to` into the `authledger_oidc` cookie (10 minutes, Lax so that it rides the
provider's top-level redirect back) and gives the provider's authorization URL. `callback`
checks the `state` against the cookie, redeems the code, checks the ID token's signature with
the provider's keys (`jwks_uri`, through the JwksCache machinery and its outbound guard) and
its claims (service/providers/id_token.py), and answers who signed in. Any failure is
OidcRefused naming the failed step; no session is made. The cookie is single-use: the caller
clears it (`cleared_cookie`) whatever the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog

from events.clock import Clock
from service.outbound.policy import OutboundPolicy
from service.providers.id_token import IdTokenClaims, IdTokenRefused, check_id_token, read_id_token
from service.providers.jwks import JwksCache, KeyUnavailable
from service.providers.trust import TrustedIssuer
from service.signin.cookies import CookieSpec, cookie, cookie_name, seal, unseal
from service.signin.keys import SignInKeys
from service.signin.oidc_provider import OidcProvider, OidcRefused, OidcSettings
from service.signin.return_to import safe_return_to

log = structlog.get_logger("service.signin.oidc")

OIDC_COOKIE = "authledger_oidc"
CALLBACK_PATH = "/login/oidc/callback"
STATE_TTL = timedelta(minutes=10)
MAX_CODE_CHARS = 2048


@dataclass(frozen=True, slots=True)
class OidcStart:
    authorize_url: str  # where to send the browser (302)
    cookie: CookieSpec  # set it on that redirect


@dataclass(frozen=True, slots=True)
class OidcSignedIn:
    issuer: str
    subject: str
    email: str
    return_to: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    """The PKCE S256 challenge of `verifier`."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


class OidcSignIn:
    """OpenID Connect sign-in against the installation's provider; see the module docstring.
    `outbound` and `allow_loopback_http` rule every request it makes, keys included."""

    def __init__(
        self,
        settings: OidcSettings,
        keys: SignInKeys,
        *,
        clock: Clock,
        outbound: OutboundPolicy | None = None,
        allow_loopback_http: bool = False,
        within: timedelta = timedelta(seconds=5),
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.clock = clock
        self.provider = OidcProvider(
            settings, clock=clock, outbound=outbound, allow_loopback_http=allow_loopback_http,
            within=within,
        )  # fmt: skip
        self._jwks = JwksCache(
            clock=clock, allow_loopback_http=allow_loopback_http, outbound=outbound,
            timeout=within,
        )  # fmt: skip

    async def close(self) -> None:
        await self.provider.close()
        await self._jwks.close()

    async def start(self, *, tenant_id: str, service_issuer: str, return_to: str) -> OidcStart:
        """The provider's authorization URL and the state cookie for a sign-in that comes
        back to `return_to` (which must be a safe one)."""
        back = safe_return_to(return_to)
        if back is None:
            raise OidcRefused("return_to", "return_to is not a page a sign-in returns to")
        found = await self.provider.configuration()
        state = _b64(secrets.token_bytes(24))  # 32 characters
        nonce = _b64(secrets.token_bytes(24))
        verifier = _b64(secrets.token_bytes(32))  # 43 characters (RFC 7636: 43 to 128)
        expires = int((self.clock.now() + STATE_TTL).timestamp())
        fields = {"v": 1, "state": state, "nonce": nonce, "verifier": verifier,
                  "return_to": back, "exp": expires}  # fmt: skip
        name = cookie_name(service_issuer, OIDC_COOKIE)
        value = seal(self.keys.oidc, tenant_id, name, fields)
        query = urlencode({
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri(service_issuer),
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        })  # fmt: skip
        joiner = "&" if "?" in found.authorization_endpoint else "?"
        ttl = int(STATE_TTL.total_seconds())
        return OidcStart(
            f"{found.authorization_endpoint}{joiner}{query}",
            cookie(service_issuer, OIDC_COOKIE, value, ttl),
        )

    def cleared_cookie(self, service_issuer: str) -> CookieSpec:
        """The Set-Cookie that drops the state cookie (at the callback, whatever its outcome)."""
        return cookie(service_issuer, OIDC_COOKIE, "", 0)

    async def callback(
        self,
        *,
        tenant_id: str,
        service_issuer: str,
        cookie_value: str | None,
        state: str | None,
        code: str | None,
        error: str | None = None,
    ) -> OidcSignedIn:
        """Who signed in, from the provider's redirect back (`code`, `state` or `error`) and
        the state cookie; OidcRefused naming the failed step."""
        name = cookie_name(service_issuer, OIDC_COOKIE)
        fields = unseal(self.keys.oidc, tenant_id, name, cookie_value) or {}
        try:
            pending = _pending(fields, state=state, code=code, error=error, now=self.clock.now())
            id_token = await self.provider.redeem(
                pending.code, verifier=pending.verifier, redirect_uri=redirect_uri(service_issuer)
            )
            claims = await self._verify(id_token, pending.nonce)
        except OidcRefused as refused:
            log.info("oidc.refused", step=refused.code, reason=refused.message)
            raise
        log.info("oidc.signed_in", issuer=claims.issuer)
        return OidcSignedIn(claims.issuer, claims.subject, claims.email, pending.return_to)

    async def _verify(self, id_token: str, nonce: str) -> IdTokenClaims:
        try:
            jws = read_id_token(id_token)
        except IdTokenRefused as refused:
            raise OidcRefused(refused.code, refused.message) from None
        found = await self.provider.configuration()
        issuer = TrustedIssuer(issuer=self.settings.issuer, jwks_uri=found.jwks_uri)
        try:
            key = await self._jwks.key(issuer, jws.kid)
        except KeyUnavailable as exc:
            raise OidcRefused("keys", f"no key of the provider for the ID token: {exc}") from None
        if not key.verify(jws.alg, jws.signing_input, jws.signature):
            raise OidcRefused("signature", "the ID token signature does not verify")
        try:
            return check_id_token(
                jws, issuer=self.settings.issuer, client_id=self.settings.client_id,
                nonce=nonce, now=self.clock.now(),
            )  # fmt: skip
        except IdTokenRefused as refused:
            raise OidcRefused(refused.code, refused.message) from None


@dataclass(frozen=True, slots=True)
class _Pending:
    """A sign-in under way in this browser whose state matched: what to redeem and check."""

    code: str
    nonce: str
    verifier: str
    return_to: str


def _pending(
    fields: dict[str, Any], *, state: str | None, code: str | None, error: str | None,
    now: datetime,
) -> _Pending:  # fmt: skip
    """The sign-in the state cookie's `fields` hold, if the redirect back belongs to it."""
    if error is not None:
        raise OidcRefused("denied", "the provider did not sign the person in")
    expected, nonce, verifier, back = (
        fields.get(k) for k in ("state", "nonce", "verifier", "return_to")
    )  # fmt: skip
    expires = fields.get("exp")
    if (
        not isinstance(expected, str) or not isinstance(nonce, str)
        or not isinstance(verifier, str) or not isinstance(back, str)
        or not isinstance(expires, int) or expires <= now.timestamp()
    ):  # fmt: skip
        raise OidcRefused("state", "no sign-in is under way in this browser, or it expired")
    if not isinstance(state, str) or not hmac.compare_digest(
        state.encode("utf-8", "replace"), expected.encode()
    ):
        raise OidcRefused("state", "the state is not this browser's sign-in")
    if not isinstance(code, str) or not 0 < len(code) <= MAX_CODE_CHARS:
        raise OidcRefused("code", "the provider sent no usable code")
    return _Pending(code, nonce, verifier, back)


def redirect_uri(service_issuer: str) -> str:
    """Where the provider sends the browser back: our callback under the tenant's issuer."""
    return service_issuer.rstrip("/") + CALLBACK_PATH
