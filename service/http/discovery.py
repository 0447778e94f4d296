"""Discovery: protected resource metadata, authorization server metadata and the auth.md.

The documents depend only on the request's tenant's configuration, so each is encoded once
per tenant configuration and every request for that tenant gets the same bytes. The PRM is
served at the root and at the tenant's path-inserted URL (O14); another tenant's path on this
host is not found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Operation

from service.http.authmd import render_auth_md
from service.http.route_docs import AS_DOC, AUTH_MD_DOC, INSERTED_PRM_DOC, PRM_DOC
from service.http.tenancy import request_tenant
from service.tenancy.config import AS_METADATA_PATH, AUTH_MD_PATH, PRM_PATH, TenantConfig

METADATA_CACHE = "public, max-age=300"
JSON = "application/json"
MARKDOWN = "text/markdown"  # Litestar adds "; charset=utf-8" to text/* types
AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True)
class Documents:
    config: TenantConfig
    prm: bytes
    as_metadata: bytes
    auth_md: bytes


class DocumentCache:
    """The encoded documents of each tenant, remade when its configuration changes."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, Documents] = {}

    def of(self, tenant: TenantConfig) -> Documents:
        known = self._by_tenant.get(tenant.tenant_id)
        if known is None or known.config is not tenant:
            known = self._by_tenant[tenant.tenant_id] = Documents(
                tenant,
                msgspec.json.encode(tenant.protected_resource_metadata()),
                msgspec.json.encode(tenant.authorization_server_metadata()),
                render_auth_md(tenant).encode(),
            )
        return known


def discovery_router(default: TenantConfig) -> Router:
    """E1 to E3. Routes: the root PRM, the default tenant's path-inserted PRM (so it shows in
    the OpenAPI document) and any other path under the PRM prefix for other tenants."""
    cache = DocumentCache()

    def prm(request: AnyRequest) -> bytes:
        tenant = request_tenant(request)
        inserted = request.url.path.removeprefix(PRM_PATH)
        if inserted and inserted.rstrip("/") != tenant.resource_path.rstrip("/"):
            raise NotFoundException()
        return cache.of(tenant).prm

    prm_paths = [PRM_PATH]
    if default.resource_path:
        prm_paths.append(PRM_PATH + default.resource_path)
    handlers = [
        _served(prm_paths, prm, JSON, "Protected resource metadata (RFC 9728)", PRM_DOC),
        _served([PRM_PATH + "/{inserted:path}"], prm, JSON,
                "Protected resource metadata of a tenant's path-inserted URL", INSERTED_PRM_DOC),
        _served([AS_METADATA_PATH], lambda r: cache.of(request_tenant(r)).as_metadata, JSON,
                "Authorization server metadata", AS_DOC),
        _served([AUTH_MD_PATH], lambda r: cache.of(request_tenant(r)).auth_md, MARKDOWN,
                "How an agent registers (auth.md)", AUTH_MD_DOC),
    ]  # fmt: skip
    return Router("/", route_handlers=handlers, tags=["discovery"])


def _served(
    paths: list[str],
    body: Callable[[AnyRequest], bytes],
    media_type: str,
    summary: str,
    doc: type[Operation],
) -> HTTPRouteHandler:
    headers = {"Cache-Control": METADATA_CACHE}

    @get(paths, summary=summary, media_type=media_type, sync_to_thread=False, operation_class=doc)
    def serve(request: AnyRequest) -> Response[bytes]:
        return Response(body(request), media_type=media_type, headers=headers)

    return serve
