"""The resource-server side: the sample protected resource `/api/me` (E10), token introspection
(RFC 7662) and the JWKS for offline `at+jwt` checks (spec §3.1, O11, O12, O13).

Bearer credentials (API keys and access tokens alike) are checked by their SHA-256 against the
in-memory CredentialCache, which the event feed keeps current, so a check costs no database
round trip and a revocation anywhere is refused here at once: 401 with the RFC 6750/9728
challenge when the credential is missing or not live, 403 `insufficient_scope` when it lacks
the scope. The `BearerAuth` sits in the router's `opt` under `BEARER_AUTH`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler

from events.clock import Clock, SystemClock
from service.caches.credentials import CredentialCache, Refusal
from service.caches.principal import Principal
from service.domain.access import INTROSPECTION
from service.http.access import AccessGate, AdminRefused, admin_refused, bearer_token
from service.http.bodies import FORM, NO_STORE, json_reply, media_type, read_raw, timestamp
from service.http.route_docs import INTROSPECT_DOC, JWKS_DOC, ME_DOC
from service.http.tenancy import TENANT_STATE
from service.observability.request_outcome import note_refusal
from service.runtime.resources import Resources
from service.tenancy.config import INTROSPECT_PATH, JWKS_PATH, ME_PATH, TenantConfig

BEARER_AUTH = "bearer_auth"  # router opt key of the BearerAuth
JWKS_CACHE = {"Cache-Control": "public, max-age=300"}
REFUSED: dict[Refusal | None, str] = {
    None: "a bearer credential is required",
    "unknown": "the credential is not recognised",
    "revoked": "the credential has been revoked",
    "expired": "the credential has expired",
}
AnyRequest = Request[Any, Any, Any]
AnyConnection = ASGIConnection[Any, Any, Any, Any]


class BearerRefused(HTTPException):
    """A 401/403 with its protocol error code and the `WWW-Authenticate` challenge."""

    def __init__(self, status: int, error: str, message: str, challenge: str | None = None) -> None:
        super().__init__(detail=message, status_code=status)
        self.headers = {"WWW-Authenticate": challenge} if challenge else {}
        self.error = error


def tenant_of(connection: AnyConnection) -> TenantConfig | None:
    """The tenant the tenant middleware resolved for this request (None without it)."""
    tenant = connection.scope.get("state", {}).get(TENANT_STATE)
    return tenant if isinstance(tenant, TenantConfig) else None


def bearer_refused(_: AnyRequest, exc: BearerRefused) -> Response[bytes]:
    return json_reply(*bearer_refusal(exc))


def bearer_refusal(exc: BearerRefused) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A BearerRefused's answer (body, status, headers), counted; service.http.hot_routes
    sends it itself."""
    note_refusal(exc.error)
    return {"error": exc.error, "message": exc.detail}, exc.status_code, dict(exc.headers or {})


@dataclass(frozen=True)
class BearerAuth:
    cache: CredentialCache
    tenant: TenantConfig
    clock: Clock

    def __deepcopy__(self, memo: dict[int, object]) -> BearerAuth:
        return self  # Litestar deep-copies router opts; the cache and its pools are shared

    async def authenticate(
        self, authorization: str | None, tenant: TenantConfig | None = None
    ) -> Principal:
        """The principal of a live credential of `tenant` (the request's; by default the one
        this router was built for); BearerRefused (401) if none. A credential of another
        tenant is as unknown here as one never issued."""
        tenant = tenant or self.tenant
        token = bearer_token(authorization)
        reason: Refusal | None = None
        if token is not None:
            verdict = await self.cache.verdict(token, self.clock.now()) if token else "unknown"
            if not isinstance(verdict, Principal):
                reason = verdict
            elif verdict.tenant_id == tenant.tenant_id:
                return verdict
            else:
                reason = "unknown"
        challenge = f'Bearer resource_metadata="{tenant.resource_metadata_url}"'
        if token is not None:
            challenge += ', error="invalid_token"'
        raise BearerRefused(401, "unauthorized", REFUSED[reason], challenge)


def _holding(principal: Principal, scope: str) -> Principal:
    if scope not in principal.scopes:
        raise BearerRefused(
            403,
            "insufficient_scope",
            f"this resource needs the {scope} scope",
            f'Bearer error="insufficient_scope", scope="{scope}"',
        )
    return principal


async def me(request: AnyRequest) -> Response[bytes]:
    # /api/me is a hot path (issue 11): the scope is checked here, not by a Litestar guard
    # (Litestar copies the route handler for each guard it runs, on every request), the one
    # header is read from the scope without building the request's `Headers`, and the answer
    # of a principal is encoded once.
    auth: BearerAuth = request.route_handler.opt[BEARER_AUTH]
    answer = await me_answer(auth, request.scope["headers"], tenant_of(request))
    return Response(answer, media_type=MediaType.JSON, headers=NO_STORE)


async def me_answer(
    auth: BearerAuth, headers: Iterable[tuple[bytes, bytes]], tenant: TenantConfig | None
) -> bytes:
    """E10's answer for the request's bearer credential; BearerRefused (401/403) if it has
    none with `api.read`. The route above and service.http.hot_routes both answer with it."""
    principal = await auth.authenticate(_authorization(headers), tenant)
    return _me_body(_holding(principal, "api.read"))


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The first `Authorization` header, as `request.headers.get` would give it (values are
    latin-1)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            return value.decode("latin-1")
    return None


@lru_cache(maxsize=4096)
def _me_body(principal: Principal) -> bytes:
    """What /api/me says of `principal` (frozen, so equal principals say the same)."""
    expires = principal.expires_at
    return msgspec.json.encode(
        {
            "credential_id": principal.credential_id,
            "credential_type": principal.credential_type,
            "scopes": list(principal.scopes),
            "registration_id": principal.registration_id,
            "user_id": principal.user_id,
            "claim_state": principal.claim_state,
            "expires_at": timestamp(expires) if expires is not None else None,
        }
    )


def introspection(auth: BearerAuth, gate: AccessGate) -> HTTPRouteHandler:
    """RFC 7662 for resource servers holding an introspection credential of the tenant (Bearer,
    or HTTP Basic `client_id:token` as §2.1 has it), or an operator one; no-store answers."""

    @post(INTROSPECT_PATH, status_code=200, summary="Token introspection (RFC 7662)",
          operation_class=INTROSPECT_DOC)  # fmt: skip
    async def introspect(request: AnyRequest) -> Response[bytes]:
        await gate.admit(request, INTROSPECTION, basic=True)
        tenant = tenant_of(request) or auth.tenant
        verdict = await auth.cache.verdict(await _form_token(request), auth.clock.now())
        if not isinstance(verdict, Principal) or verdict.tenant_id != tenant.tenant_id:
            return json_reply({"active": False})
        body: dict[str, Any] = {
            "active": True,
            "scope": " ".join(verdict.scopes),
            "client_id": verdict.client_id,
            "sub": verdict.subject,
            "token_type": verdict.credential_type,
            "iat": int(verdict.issued_at.timestamp()),
            "iss": tenant.issuer,
            "aud": tenant.resource,
        }
        if verdict.expires_at is not None:
            body["exp"] = int(verdict.expires_at.timestamp())
        return json_reply(body)

    return introspect


async def _form_token(request: AnyRequest) -> str:
    if media_type(request) != FORM:
        raise BearerRefused(400, "invalid_request", f"send the body as {FORM}")
    try:
        fields = parse_qs((await read_raw(request)).decode(), strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        raise BearerRefused(400, "invalid_request", "the form is malformed") from None
    tokens = fields.get("token", [])
    if len(tokens) != 1 or not tokens[0] or len(fields.get("token_type_hint", [])) > 1:
        raise BearerRefused(400, "invalid_request", "the form must hold exactly one token")
    return tokens[0]


def key_set(resources: Resources, auth: BearerAuth) -> HTTPRouteHandler:
    """The JWKS of the request's tenant: the active key and the retired ones whose tokens may
    still be live (access tokens, and the v0.6 door's identity assertions: the longer of the
    two lifetimes, plus the skew)."""

    @get(JWKS_PATH, summary="The service's signing keys (JWK Set)", operation_class=JWKS_DOC)
    async def jwks(request: AnyRequest) -> Response[bytes]:
        keys: dict[str, Any] = {"keys": []}
        tenant = tenant_of(request) or auth.tenant
        if resources.commands is not None:
            ring = (await resources.context_for(tenant)).keyring
            keys = ring.jwks(auth.clock.now(), timedelta(seconds=tenant.longest_token_ttl))
        return Response(msgspec.json.encode(keys), media_type=MediaType.JSON, headers=JWKS_CACHE)

    return jwks


def resource_router(tenant: TenantConfig, resources: Resources, gate: AccessGate) -> Router:
    """/api/me, /oauth2/introspect and /.well-known/jwks.json for `tenant`."""
    if resources.credentials is None:
        raise RuntimeError("the resource routes need the process's CredentialCache")
    clock = resources.commands.clock if resources.commands is not None else SystemClock()
    auth = BearerAuth(resources.credentials, tenant, clock)
    handlers = [
        get(ME_PATH, summary="Who the credential is", operation_class=ME_DOC)(me),
        introspection(auth, gate),
        key_set(resources, auth),
    ]
    return Router(
        "/",
        route_handlers=handlers,
        opt={BEARER_AUTH: auth},
        exception_handlers={BearerRefused: bearer_refused, AdminRefused: admin_refused},
        tags=["resource server"],
    )
