"""The request's tenant: resolved from `Host` before routing, kept in the ASGI scope's state.

Every handler, guard and dependency reads it from there (`request_tenant`), so a claim token,
a credential, a logout token or an admin call is always judged against the tenant whose host
it came to — never another. A disabled tenant's hosts answer 404 `tenant_disabled`; the hosts
of a tenant whose configuration did not load (service/tenancy/directory.py) answer 503
`temporarily_unavailable` with `Retry-After`, never the default tenant's answer. The probes
(`/healthz`, `/readyz`) answer for the process whatever the host.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Guard, HTTPResponseStartEvent, Receive, Scope, Send

from service.domain.errors import ProtocolError
from service.http.envelopes import envelope_of
from service.tenancy.config import Door, TenantConfig
from service.tenancy.directory import Disabled, TenantDirectory, Unavailable

TENANT_STATE = "tenant"
PROBES = frozenset({"/healthz", "/readyz"})
UNAVAILABLE_RETRY_AFTER = 30  # seconds: an operator has to fix the tenant's configuration


def request_tenant(connection: ASGIConnection[Any, Any, Any, Any]) -> TenantConfig:
    tenant = connection.scope.get("state", {}).get(TENANT_STATE)
    if not isinstance(tenant, TenantConfig):
        raise TypeError("the tenant middleware did not run for this request")
    return tenant


def door_guard(door: Door) -> Guard:
    """A guard for a door's routes: 404 `not_found` on a tenant that keeps that door shut
    (AUTHLEDGER_DOORS), before anything is read, limited or written."""

    # async: Litestar runs a plain-function guard in a worker thread, a thread hop on every
    # request of the door (it cost a v1 registration over half of its CPU, issue 11).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not request_tenant(connection).opens(door):
            raise ProtocolError("not_found", f"this service does not serve the {door} dialect")

    return guard


def _host(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value.decode("latin-1")
    return None


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    body: dict[str, str],
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """The refusal as JSON, in the shape of the path's v0.6 route family if it has one."""
    envelope = envelope_of(scope["path"])
    if envelope is not None:
        body = envelope.shape(body["error"], body["message"])
        headers = (*headers, (b"pragma", b"no-cache"))
    encoded = msgspec.json.encode(body)
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(encoded)).encode()),
            *headers,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": encoded, "more_body": False})


def tenant_middleware(app: ASGIApp, directory: TenantDirectory) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        host = _host(scope)
        tenant = directory.resolve(host)
        if isinstance(tenant, Unavailable) and tenant.tenant_id is None:
            await directory.load_if_never_loaded()
            tenant = directory.resolve(host)
        if isinstance(tenant, Unavailable) and scope["path"] in PROBES:
            tenant = directory.default  # the probes answer for the process, not a tenant
        if isinstance(tenant, Disabled):
            body = {"error": "tenant_disabled", "message": "this service is disabled"}
            await _refuse(scope, send, 404, body)
            return
        if isinstance(tenant, Unavailable):
            body = {
                "error": "temporarily_unavailable",
                "message": "this service's configuration is unavailable; retry later",
            }
            retry = (b"retry-after", str(UNAVAILABLE_RETRY_AFTER).encode())
            await _refuse(scope, send, 503, body, (retry,))
            return
        scope.setdefault("state", {})[TENANT_STATE] = tenant
        await app(scope, receive, send)

    return middleware
