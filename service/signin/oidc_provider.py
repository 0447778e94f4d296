"""The installation's OpenID Connect provider, as the sign-in talks to it: its discovery
document and its token endpoint (service/signin/oidc.py runs the flow).

The provider is configured for the whole installation (`AUTHLEDGER_OIDC_ISSUER`,
`_CLIENT_ID`, optional `_CLIENT_SECRET`, `_SCOPES`): a client secret cannot be a tenant
setting, which would put it in the log. Its configuration is read from
`<issuer>/.well-known/openid-configuration` (the document's `issuer` must be exactly the
configured one, its endpoints https or allowed loopback http, and PKCE S256 supported when it
lists methods) and kept DISCOVERY_TTL. Every request goes through the outbound guard (public
addresses unless `AUTHLEDGER_OUTBOUND_ALLOW`) with one deadline and a size cap
(service/outbound/fetch.py). The code is redeemed with HTTP Basic when a client secret is set
(RFC 6749 §2.3.1), else as a public client naming its `client_id`, PKCE either way.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx

from events.clock import Clock
from service.outbound.fetch import FetchFailed, fetch_json, url_refusal
from service.outbound.policy import OutboundPolicy
from service.outbound.transport import Guard, guarded_client
from service.providers.id_token import IdTokenCheck
from service.providers.jwt_parts import Refusal

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_TTL = timedelta(minutes=10)
OidcCheck = Literal[
    "discovery", "return_to", "denied", "state", "code", "token", "keys", "signature"
]


class OidcRefused(Refusal[OidcCheck | IdTokenCheck]):
    """The sign-in failed at the step `code` names (an ID-token check's name for the token)."""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """The installation's provider."""

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "email")
    name: str | None = None  # shown on the sign-in page


@dataclass(frozen=True, slots=True)
class ProviderConfiguration:
    """What the provider's discovery document says we need."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OidcProvider:
    """Discovery and the token endpoint of `settings`' provider."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        clock: Clock,
        outbound: OutboundPolicy | None = None,
        allow_loopback_http: bool = False,
        client: httpx.AsyncClient | None = None,
        within: timedelta = timedelta(seconds=5),
        max_bytes: int = 64 * 1024,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.allow_loopback_http = allow_loopback_http
        self.within = within
        self.max_bytes = max_bytes
        self.guard = Guard(outbound or OutboundPolicy(), "oidc")
        self._client = client
        self._owns_client = client is None
        self._configuration: tuple[ProviderConfiguration, datetime] | None = None
        self._discovering = asyncio.Lock()

    async def close(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def configuration(self) -> ProviderConfiguration:
        """The provider's endpoints, read at most once per DISCOVERY_TTL (one read at a time)."""
        async with self._discovering:
            cached = self._configuration
            if cached is not None and self.clock.now() - cached[1] < DISCOVERY_TTL:
                return cached[0]
            url = self.settings.issuer.rstrip("/") + DISCOVERY_PATH
            document = await self._json("GET", url, "discovery", "OpenID configuration")
            found = self._read_configuration(document)
            self._configuration = (found, self.clock.now())
            return found

    def _read_configuration(self, document: Any) -> ProviderConfiguration:
        if not isinstance(document, dict) or document.get("issuer") != self.settings.issuer:
            raise OidcRefused("discovery", "the OpenID configuration is not the issuer's")
        methods = document.get("code_challenge_methods_supported")
        if methods is not None and (not isinstance(methods, list) or "S256" not in methods):
            raise OidcRefused("discovery", "the provider does not support PKCE S256")
        urls: list[str] = []
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str):
                raise OidcRefused("discovery", f"the provider's {name} is missing")
            refused = url_refusal(value, allow_loopback_http=self.allow_loopback_http)
            if refused is not None:
                raise OidcRefused("discovery", f"the provider's {name}: {refused}")
            urls.append(value)
        return ProviderConfiguration(*urls)

    async def redeem(self, code: str, *, verifier: str, redirect_uri: str) -> str:
        """The ID token the token endpoint gives for `code`; OidcRefused(`token`) if none."""
        found = await self.configuration()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.settings.client_secret
        if secret is None:
            form["client_id"] = self.settings.client_id
        else:  # RFC 6749 §2.3.1: each part form-encoded, then Basic
            pair = f"{quote_plus(self.settings.client_id)}:{quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        answer = await self._json("POST", found.token_endpoint, "token", "token response",
                                  headers=headers, data=form)  # fmt: skip
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused("token", "the token response holds no id_token")
        return id_token

    async def _json(
        self,
        method: str,
        url: str,
        step: OidcCheck,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> Any:
        if self._client is None:
            self._client = guarded_client(self.guard)
        refused = url_refusal(url, allow_loopback_http=self.allow_loopback_http)
        if refused is not None:
            raise OidcRefused(step, refused)
        try:
            document, _ = await fetch_json(
                self._client, method, url, what=what, within=self.within,
                max_bytes=self.max_bytes, headers=headers, data=data,
            )  # fmt: skip
        except FetchFailed as exc:
            raise OidcRefused(step, f"{what}: {exc}") from None
        return document
