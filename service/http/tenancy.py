"""The request's tenant: resolved from `Host` before routing, kept in the ASGI scope's state.

Every handler, guard and dependency reads it from there (`request_tenant`), so a claim token,
a credential, a logout token or an admin call is always judged against the tenant whose host
it came to — never another. A disabled tenant's hosts answer 404 `tenant_disabled`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from service.tenant import TenantConfig
from service.tenants import Disabled, TenantDirectory

TENANT_STATE = "tenant"


def request_tenant(connection: ASGIConnection[Any, Any, Any, Any]) -> TenantConfig:
    tenant = connection.scope.get("state", {}).get(TENANT_STATE)
    if not isinstance(tenant, TenantConfig):
        raise TypeError("the tenant middleware did not run for this request")
    return tenant


def _host(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value.decode("latin-1")
    return None


def tenant_middleware(app: ASGIApp, directory: TenantDirectory) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        tenant = directory.resolve(_host(scope))
        if isinstance(tenant, Disabled):
            body = msgspec.json.encode(
                {"error": "tenant_disabled", "message": "this service is disabled"}
            )
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-store"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        scope.setdefault("state", {})[TENANT_STATE] = tenant
        await app(scope, receive, send)

    return middleware
