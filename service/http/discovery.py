"""Discovery: protected resource metadata, authorization server metadata and the auth.md.

The documents depend only on the tenant's configuration, so they are encoded once when the
app is built and every request gets the same bytes.
"""

from __future__ import annotations

import msgspec
from litestar import Response, Router, get
from litestar.handlers import HTTPRouteHandler

from service.authmd import render_auth_md
from service.tenant import (
    AS_METADATA_PATH,
    AUTH_MD_PATH,
    PRM_PATH,
    TenantConfig,
)

METADATA_CACHE = "public, max-age=300"
JSON = "application/json"
MARKDOWN = "text/markdown"  # Litestar adds "; charset=utf-8" to text/* types


def discovery_router(tenant: TenantConfig) -> Router:
    """E1 to E3 for `tenant`; PRM at the root and at the path-inserted URL (O14)."""
    prm = msgspec.json.encode(tenant.protected_resource_metadata())
    as_metadata = msgspec.json.encode(tenant.authorization_server_metadata())
    auth_md = render_auth_md(tenant).encode()
    prm_paths = [PRM_PATH]
    if tenant.resource_path:
        prm_paths.append(PRM_PATH + tenant.resource_path)
    handlers = [
        _static(prm_paths, prm, JSON, "Protected resource metadata (RFC 9728)"),
        _static([AS_METADATA_PATH], as_metadata, JSON, "Authorization server metadata"),
        _static([AUTH_MD_PATH], auth_md, MARKDOWN, "How an agent registers (auth.md)"),
    ]
    return Router("/", route_handlers=handlers, tags=["discovery"])


def _static(paths: list[str], body: bytes, media_type: str, summary: str) -> HTTPRouteHandler:
    headers = {"Cache-Control": METADATA_CACHE}

    @get(paths, summary=summary, media_type=media_type, sync_to_thread=False)
    def serve() -> Response[bytes]:
        return Response(body, media_type=media_type, headers=headers)

    return serve
