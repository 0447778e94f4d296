"""`GET /`: where to start. A small page (JSON when the client asks for application/json)
linking to the agents' walkthrough (auth.md), the discovery documents, the sample resource,
the API docs and, under `authledger dev`, the mailbox: each only when this app serves it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler

from service.http.openapi import SCHEMA_PATH
from service.http.page_templates import PAGE_HEADERS, index_view
from service.http.route_docs import INDEX_DOC
from service.http.tenancy import request_tenant
from service.tenancy.config import AS_METADATA_PATH, AUTH_MD_PATH, JWKS_PATH, ME_PATH, PRM_PATH

JSON = "application/json"
HTML = "text/html"
AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Link:
    section: str
    rel: str
    path: str
    title: str


AGENTS, TRY, DOCS, DEV = "For agents", "Try it", "API docs", "Development"
CANDIDATES = (
    Link(AGENTS, "auth-md", AUTH_MD_PATH, "auth.md: how an agent gets a credential"),
    Link(AGENTS, "oauth-protected-resource", PRM_PATH, "Protected resource metadata (RFC 9728)"),
    Link(AGENTS, "oauth-authorization-server", AS_METADATA_PATH,
         "Authorization server metadata (RFC 8414)"),
    Link(AGENTS, "jwks", JWKS_PATH, "The service's signing keys (JWK Set)"),
    Link(TRY, "sample-resource", ME_PATH,
         "/api/me: the sample protected resource (send a credential as a bearer token)"),
    Link(DOCS, "service-doc", SCHEMA_PATH, "API reference (Swagger UI, works offline)"),
    Link(DOCS, "service-doc", SCHEMA_PATH + "/swagger", "Swagger UI"),
    Link(DOCS, "service-desc", SCHEMA_PATH + "/openapi.json", "OpenAPI document (JSON)"),
    Link(DOCS, "service-desc", SCHEMA_PATH + "/openapi.yaml", "OpenAPI document (YAML)"),
    Link(DEV, "dev-mailbox", "/dev/mailbox", "Mailbox: the mail `authledger dev` caught"),
)  # fmt: skip


def index_route(served: Collection[str]) -> HTTPRouteHandler:
    """`GET /` linking to the candidates among the `served` route paths."""
    links = [link for link in CANDIDATES if link.path in served]

    @get("/", summary="Where to start: auth.md, discovery, the API docs", media_type=MediaType.HTML,
         sync_to_thread=False, operation_class=INDEX_DOC, tags=["discovery"])  # fmt: skip
    def index(request: AnyRequest) -> Response[Any]:
        tenant = request_tenant(request)
        headers = {"Vary": "Accept"}
        if request.accept.best_match([HTML, JSON], default=HTML) == JSON:
            body = {
                "service": tenant.resource_name,
                "links": [
                    {"rel": link.rel, "title": link.title, "href": tenant.issuer + link.path}
                    for link in links
                ],
            }
            return Response(body, media_type=MediaType.JSON, headers=headers)
        sections: dict[str, list[tuple[str, str]]] = {}
        for link in links:
            sections.setdefault(link.section, []).append((link.title, tenant.issuer + link.path))
        page = index_view(tenant.resource_name, list(sections.items()))
        return Response(page, media_type=MediaType.HTML, headers={**PAGE_HEADERS, **headers})

    return index
