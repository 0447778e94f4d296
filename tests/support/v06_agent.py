"""An agent of the auth.md 0.6.0 dialect (`/agent/identity`), written from the contract
(../shared/spec/auth-md-v06.md, V1-V10) and nothing of this repository's service: it is what an
agent written against upstream's documentation does, so the e2e tests that drive it check the
service against the contract rather than against itself.

Discovery reads the AS metadata (merged with v1's keys, which a v0.6 agent ignores, O-O) and
the service's keys at its `jwks_uri`; V1 registers (anonymous, service_auth with a login hint,
an ID-JAG); the identity assertion is verified against those keys before it is trusted; V2
starts a claim; V7 polls the claim grant as RFC 8628 polls (`interval`, `slow_down` adds 5 s,
`authorization_pending` waits, `expired_token` and `access_denied` end it); V6 trades an
assertion for an access token; the API is called with it (once more with a fresh token after
a 401); V8 revokes it.

Waiting and time are the caller's (`sleep`, `now`), so a test can run the ceremony on a manual
clock and act as the person while the agent waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

AS_METADATA = "/.well-known/oauth-authorization-server"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLAIM_GRANT_TYPE = "urn:workos:agent-auth:grant-type:claim"
ASSERTION_TYP = "oauth-id-jag+jwt"
ALGORITHMS = ["EdDSA", "ES256"]  # the contract's ES256, and what a service may sign with
SKEW = 60  # seconds, as the contract's checks allow
SLOW_DOWN_STEP = 5  # RFC 8628 3.5: each slow_down adds 5 s to the interval
PENDING = {"authorization_pending", "slow_down"}


class AgentError(Exception):
    """A refusal, as the service's family sent it: the status and the `error` code."""

    def __init__(self, status: int, error: str, description: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description, self.body = status, error, description, body


@dataclass(frozen=True)
class Discovery:
    """What the agent needs from the AS metadata (contract §2)."""

    issuer: str
    identity_endpoint: str
    claim_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    jwks_uri: str
    identity_types: tuple[str, ...]
    assertion_types: tuple[str, ...]
    grant_types: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """The ceremony handed to the agent: the code to pass on and where the person goes."""

    user_code: str
    verification_uri: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class Identity:
    """A V1 answer: an assertion to exchange (anonymous, ID-JAG), or a ceremony to run
    (service_auth, step-up), and the claim handles when there are any."""

    registration_id: str
    registration_type: str
    assertion: str | None = None
    assertion_expires: str | None = None
    claim_url: str | None = None
    claim_token: str | None = None
    attempt: Attempt | None = None
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Token:
    """A token response (V6, V7): V7's also carries a fresh assertion."""

    access_token: str
    expires_in: int
    scope: tuple[str, ...]
    assertion: str | None = None
    assertion_expires: str | None = None


@dataclass
class V06Agent:
    http: httpx.AsyncClient
    issuer: str
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], float] = time.time
    discovery: Discovery | None = None
    keys: jwt.PyJWKSet | None = None
    waited: list[float] = field(default_factory=list)  # every interval slept while polling

    async def discover(self) -> Discovery:
        """GET the AS metadata, check the v0.6 door is there, fetch the service's keys."""
        metadata = self._json(await self.http.get(self.issuer.rstrip("/") + AS_METADATA))
        block = metadata.get("agent_auth") or {}
        if "identity_endpoint" not in block or "token_endpoint" not in metadata:
            raise AgentError(0, "no_v06_door", "the metadata has no identity endpoint", metadata)
        self.discovery = Discovery(
            issuer=metadata["issuer"],
            identity_endpoint=block["identity_endpoint"],
            claim_endpoint=block["claim_endpoint"],
            token_endpoint=metadata["token_endpoint"],
            revocation_endpoint=metadata["revocation_endpoint"],
            jwks_uri=metadata["jwks_uri"],
            identity_types=tuple(block.get("identity_types_supported", ())),
            assertion_types=tuple(
                (block.get("identity_assertion") or {}).get("assertion_types_supported", ())
            ),
            grant_types=tuple(metadata.get("grant_types_supported", ())),
        )
        self.keys = jwt.PyJWKSet.from_dict(self._json(await self.http.get(self.discovery.jwks_uri)))
        return self.discovery

    @property
    def found(self) -> Discovery:
        if self.discovery is None:
            raise RuntimeError("discover() first")
        return self.discovery

    async def register_anonymous(self) -> Identity:
        return await self._identify({"type": "anonymous"})

    async def register_service_auth(self, login_hint: str) -> Identity:
        return await self._identify({"type": "service_auth", "login_hint": login_hint})

    async def register_id_jag(self, id_jag: str) -> Identity:
        """V1 with an ID-JAG: a clean subject gets an assertion; one that needs the person
        first raises AgentError `interaction_required` whose body carries the ceremony (read it
        with `identity_of`)."""
        if ID_JAG_TYPE not in self.found.assertion_types:
            raise AgentError(0, "no_applicable_method", "ID-JAG not advertised", {})
        body = {"type": "identity_assertion", "assertion_type": ID_JAG_TYPE, "assertion": id_jag}
        return await self._identify(body)

    async def _identify(self, body: dict[str, str]) -> Identity:
        if body["type"] not in self.found.identity_types:
            raise AgentError(0, "no_applicable_method", f"{body['type']} not advertised", {})
        answer = self._json(await self.http.post(self.found.identity_endpoint, json=body))
        identity = self.identity_of(answer)
        if identity.assertion is not None:
            self.verify_assertion(identity.assertion, sub=identity.registration_id)
        return identity

    @staticmethod
    def identity_of(answer: dict[str, Any]) -> Identity:
        """A V1 answer (or a step-up's 401 body: its handles are top level)."""
        claim = answer.get("claim")
        scopes = answer.get("scopes") or answer.get("pre_claim_scopes") or ()
        return Identity(
            registration_id=answer["registration_id"],
            registration_type=answer["registration_type"],
            assertion=answer.get("identity_assertion"),
            assertion_expires=answer.get("assertion_expires"),
            claim_url=answer.get("claim_url"),
            claim_token=answer.get("claim_token"),
            attempt=_attempt(claim) if claim else None,
            scopes=tuple(scopes),
        )

    def verify_assertion(self, assertion: str, *, sub: str | None = None) -> dict[str, Any]:
        """The service-signed identity assertion (contract §4) against the service's own keys:
        `typ`, signature, `iss` = `aud` = the issuer, `exp`/`iat` within the skew, `sub`
        (the registration's id, when given) and `jti` present. Raises on any failure."""
        if self.keys is None:
            raise RuntimeError("discover() first")
        header = jwt.get_unverified_header(assertion)
        if str(header.get("typ", "")).lower() != ASSERTION_TYP:
            raise AgentError(0, "bad_assertion", f"typ {header.get('typ')!r}", header)
        key = self.keys[header["kid"]]  # KeyError: not one of the service's keys
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key=key.key,
            algorithms=ALGORITHMS,
            audience=self.found.issuer,
            issuer=self.found.issuer,
            leeway=SKEW,
            options={
                "require": ["iss", "aud", "sub", "exp", "iat", "jti"],
                "verify_exp": False,  # on the agent's own clock, below
                "verify_iat": False,
            },
        )
        now = self.now()
        if not (claims["iat"] <= now + SKEW and now < claims["exp"] + SKEW):
            raise AgentError(0, "bad_assertion", "iat or exp outside the agent's clock", claims)
        if sub is not None and claims["sub"] != sub:
            raise AgentError(0, "bad_assertion", f"sub {claims['sub']!r}", claims)
        return claims

    async def start_claim(self, claim_token: str, email: str) -> Attempt:
        """V2: a new attempt for the person with `email`; the old code and link die."""
        body = {"claim_token": claim_token, "email": email}
        answer = self._json(await self.http.post(self.found.claim_endpoint, json=body))
        return _attempt(answer["claim_attempt"])

    async def poll(self, claim_token: str, interval: int) -> Token:
        """V7 until the claim delivers: wait `interval` before each poll (RFC 8628 3.5),
        5 s more after each `slow_down`; `expired_token`, `access_denied` or any other
        refusal ends it (AgentError)."""
        if CLAIM_GRANT_TYPE not in self.found.grant_types:
            raise AgentError(0, "no_claim_grant", "the claim grant is not advertised", {})
        form = {"grant_type": CLAIM_GRANT_TYPE, "claim_token": claim_token}
        while True:
            self.waited.append(interval)
            await self.sleep(interval)
            response = await self.http.post(self.found.token_endpoint, data=form)
            try:
                token = self._token(response)
            except AgentError as refusal:
                if refusal.error not in PENDING:
                    raise
                if refusal.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                continue
            if token.assertion is not None:
                self.verify_assertion(token.assertion)
            return token

    async def exchange(self, assertion: str) -> Token:
        """V6, RFC 7523's jwt-bearer grant."""
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
        return self._token(await self.http.post(self.found.token_endpoint, data=form))

    async def call(self, url: str, token: Token, method: str = "GET") -> httpx.Response:
        """The API (V10) with the access token as a bearer."""
        headers = {"Authorization": f"Bearer {token.access_token}"}
        return await self.http.request(method, url, headers=headers)

    async def fetch(self, url: str, token: Token, assertion: str) -> tuple[httpx.Response, Token]:
        """The API as an agent calls it: on a 401, drop the token, exchange the assertion
        again and retry once. The answer, and the token now held."""
        response = await self.call(url, token)
        if response.status_code != 401:
            return response, token
        fresh = await self.exchange(assertion)
        return await self.call(url, fresh), fresh

    async def revoke(self, token: Token) -> None:
        """V8 (RFC 7009): 200 whether or not the token was live."""
        form = {"token": token.access_token, "token_type_hint": "access_token"}
        response = await self.http.post(self.found.revocation_endpoint, data=form)
        if response.status_code != 200:
            self._json(response)  # raises the refusal
            raise AgentError(response.status_code, "unexpected_response", response.text, {})

    def _token(self, response: httpx.Response) -> Token:
        """A token endpoint answer: RFC 6749 5.1, never cached (contract §3)."""
        if response.headers.get("cache-control") != "no-store":
            raise AgentError(response.status_code, "cacheable_token", "no no-store header", {})
        answer = self._json(response)
        if answer.get("token_type", "").lower() != "bearer":
            raise AgentError(response.status_code, "unexpected_response", str(answer), answer)
        return Token(
            access_token=answer["access_token"],
            expires_in=int(answer["expires_in"]),
            scope=tuple(answer.get("scope", "").split()),
            assertion=answer.get("identity_assertion"),
            assertion_expires=answer.get("assertion_expires"),
        )

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        """A 2xx answer's object; any other answer as an AgentError, whichever family's shape
        (`{error, message}`, RFC 6749's `{error, error_description}`, `{err, description}`)."""
        try:
            body = response.json() if response.content else {}
        except json.JSONDecodeError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.is_success:
            return body
        error = str(body.get("error") or body.get("err") or "unexpected_response")
        text = body.get("error_description") or body.get("message") or body.get("description")
        raise AgentError(response.status_code, error, str(text or response.text[:200]), body)


def _attempt(block: dict[str, Any]) -> Attempt:
    return Attempt(
        user_code=block["user_code"],
        verification_uri=block["verification_uri"],
        expires_in=int(block["expires_in"]),
        interval=int(block["interval"]),
    )
