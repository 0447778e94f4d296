"""Discovery over HTTP, the way an agent starts: PRM, AS metadata and the auth.md."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import httpx
import pytest
from litestar.testing import AsyncTestClient
from litestar.types import ControllerRouterHandler

from service.dev.mailbox import DevMailbox, dev_mailbox_router
from service.http.app import create_app
from service.http.authmd import render_auth_md
from service.runtime.resources import Resources
from service.settings import Settings
from service.tenancy.config import ID_JAG, REVOKED_EVENT, TenantConfig
from tests.support.backends import Backend

PUBLIC_URL = "https://auth.example.test"
PRM = "/.well-known/oauth-protected-resource"
AS_METADATA = "/.well-known/oauth-authorization-server"
CACHE = "public, max-age=300"
# service/http/health.py's `readyz` still infers its `resources` dependency, which Litestar
# 2.23+ warns about while building the app; drop this once it says NamedDependency[Resources].


@asynccontextmanager
async def agent_client(
    backend: Backend,
    database_url: str,
    *,
    dev_routes: Sequence[ControllerRouterHandler] = (),
    **variables: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, TenantConfig]]:
    """The app on real resources, configured by AUTHLEDGER_* `variables`, and a client."""
    env: Mapping[str, str] = {
        "AUTHLEDGER_DATABASE_URL": database_url,
        "AUTHLEDGER_NATS_URL": backend.nats_url,
        "AUTHLEDGER_ADMIN_TOKEN": "t" * 32,
        "AUTHLEDGER_SECRET_KEY": "k" * 48,
        "AUTHLEDGER_PUBLIC_URL": PUBLIC_URL,
        **{f"AUTHLEDGER_{name}": value for name, value in variables.items()},
    }
    settings = Settings.from_env(env, "serve")
    resources = await Resources.open(settings, pool_size=2)
    try:
        app = create_app(settings, resources=resources, dev_routes=dev_routes)
        async with AsyncTestClient(app, base_url=PUBLIC_URL) as client:
            yield client, TenantConfig.from_settings(settings)
    finally:
        await resources.close()


@pytest.fixture
async def default_agent(
    backend: Backend, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, TenantConfig]]:
    async with agent_client(backend, database_url) as pair:
        yield pair


async def test_protected_resource_metadata_is_served_with_caching(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """GET the PRM: 200 JSON with the RFC 9728 fields and `Cache-Control: public, max-age=300`."""
    client, _ = default_agent
    response = await client.get(PRM)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == CACHE
    assert response.json() == {
        "resource": f"{PUBLIC_URL}/api/",
        "resource_name": "authledger",
        "authorization_servers": [PUBLIC_URL],
        "scopes_supported": ["api.read", "api.write"],
        "bearer_methods_supported": ["header"],
    }


async def test_path_inserted_metadata_url_matches_its_resource(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """The path-inserted PRM URL (O14) answers the same document, whose `resource` it names."""
    client, tenant = default_agent
    inserted = await client.get(f"{PRM}/api/")
    assert inserted.status_code == 200
    assert inserted.headers["cache-control"] == CACHE
    assert inserted.content == (await client.get(PRM)).content
    # RFC 9728 §3.3: removing the well-known segment from the URL gives back `resource`.
    assert tenant.resource_metadata_url == f"{PUBLIC_URL}{PRM}/api/"
    assert tenant.resource_metadata_url.replace(PRM, "") == inserted.json()["resource"]


async def test_authorization_server_metadata_lists_the_default_methods(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """GET the AS metadata: the PRM fields, O13 fields and the full `agent_auth` block, with
    both doors open (the default): v1's keys as they were, v0.6's beside them (O-O)."""
    client, _ = default_agent
    response = await client.get(AS_METADATA)
    assert response.status_code == 200
    assert response.headers["cache-control"] == CACHE
    document = response.json()
    assert document["issuer"] == PUBLIC_URL
    assert document["resource"] == f"{PUBLIC_URL}/api/"
    assert document["authorization_servers"] == [PUBLIC_URL]
    assert document["scopes_supported"] == ["api.read", "api.write"]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["jwks_uri"] == f"{PUBLIC_URL}/.well-known/jwks.json"
    assert document["introspection_endpoint"] == f"{PUBLIC_URL}/oauth2/introspect"
    assert document["agent_auth"] == {
        "skill": f"{PUBLIC_URL}/auth.md",
        "register_uri": f"{PUBLIC_URL}/agent/auth",
        "claim_uri": f"{PUBLIC_URL}/agent/auth/claim",
        "revocation_uri": f"{PUBLIC_URL}/agent/auth/revoke",
        "identity_endpoint": f"{PUBLIC_URL}/agent/identity",
        "claim_endpoint": f"{PUBLIC_URL}/agent/identity/claim",
        "events_endpoint": f"{PUBLIC_URL}/agent/event/notify",
        "identity_types_supported": ["anonymous", "identity_assertion", "service_auth"],
        "anonymous": {"credential_types_supported": ["api_key"]},
        "identity_assertion": {
            "assertion_types_supported": [ID_JAG, "verified_email"],
            "credential_types_supported": ["access_token", "api_key"],
        },
        "events_supported": [REVOKED_EVENT],
    }


async def test_auth_md_is_markdown_with_the_real_urls(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """GET /auth.md (the `skill` URL): text/markdown, the generated walkthrough, real URLs."""
    client, tenant = default_agent
    skill = (await client.get(AS_METADATA)).json()["agent_auth"]["skill"]
    response = await client.get(skill)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.text == render_auth_md(tenant)
    assert f'resource_metadata="{PUBLIC_URL}{PRM}/api/"' in response.text
    assert f"`POST {PUBLIC_URL}/agent/auth`" in response.text
    assert "## Step 5: Use" in response.text


async def test_discovery_routes_are_in_the_openapi_schema(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """The schema still builds and names the three discovery documents."""
    client, _ = default_agent
    paths = set((await client.get("/schema/openapi.json")).json()["paths"])
    assert {PRM, f"{PRM}/api", AS_METADATA, "/auth.md"} <= paths  # Litestar drops the final /


async def test_disabled_anonymous_is_absent_from_metadata_and_auth_md(
    backend: Backend, database_url: str
) -> None:
    """With AUTHLEDGER_FLOWS lacking anonymous, neither document offers it."""
    async with agent_client(backend, database_url, FLOWS="verified_email id_jag") as (client, _):
        agent_auth = (await client.get(AS_METADATA)).json()["agent_auth"]
        auth_md = (await client.get("/auth.md")).text
    assert agent_auth["identity_types_supported"] == ["identity_assertion"]
    assert "anonymous" not in agent_auth
    assert agent_auth["identity_assertion"]["assertion_types_supported"] == [
        ID_JAG,
        "verified_email",
    ]
    assert '"type": "anonymous"' not in auth_md
    assert "### Anonymous start" not in auth_md


async def test_own_resource_url_moves_the_path_inserted_metadata(
    backend: Backend, database_url: str
) -> None:
    """AUTHLEDGER_RESOURCE_URL with another path serves the PRM under that path too."""
    resource = f"{PUBLIC_URL}/v2/"
    async with agent_client(
        backend, database_url, RESOURCE_URL=resource, RESOURCE_NAME="Acme Files"
    ) as (client, _):
        inserted = await client.get(f"{PRM}/v2/")
        root = await client.get(PRM)
    assert inserted.status_code == 200
    assert inserted.json()["resource"] == resource
    assert inserted.json()["resource_name"] == "Acme Files"
    assert root.json() == inserted.json()


INDEXED = {
    "/auth.md",
    PRM,
    AS_METADATA,
    "/.well-known/jwks.json",
    "/api/me",
    "/schema",
    "/schema/swagger",
    "/schema/openapi.json",
    "/schema/openapi.yaml",
}


async def test_root_is_a_page_linking_to_where_to_start(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """GET / is an HTML page whose links are auth.md, discovery, the API docs and /api/me (no
    mailbox outside `dev`), and every link answers: 200, or 401 from /api/me without a key."""
    client, _ = default_agent
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["vary"] == "Accept"
    hrefs = re.findall(r'<a href="([^"]+)">', page.text)
    assert sorted(hrefs) == sorted(PUBLIC_URL + path for path in INDEXED)
    for href in hrefs:
        answer = await client.get(href.removeprefix(PUBLIC_URL))
        assert answer.status_code == (401 if href.endswith("/api/me") else 200), href


async def test_root_answers_json_when_asked(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """With Accept: application/json, GET / lists the same links as JSON, with their rel."""
    client, _ = default_agent
    answer = await client.get("/", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["service"] == "authledger"
    assert {link["href"] for link in body["links"]} == {PUBLIC_URL + path for path in INDEXED}
    rels = {link["href"].removeprefix(PUBLIC_URL): link["rel"] for link in body["links"]}
    assert rels["/auth.md"] == "auth-md"
    assert rels["/api/me"] == "sample-resource"
    assert rels["/schema/openapi.json"] == "service-desc"
    html = await client.get("/", headers={"Accept": "text/html,application/json;q=0.9"})
    assert html.headers["content-type"] == "text/html; charset=utf-8"


async def test_root_links_the_mailbox_under_dev(backend: Backend, database_url: str) -> None:
    """With the dev mailbox mounted (only `authledger dev` mounts it), the index links to it."""
    mailbox = dev_mailbox_router(DevMailbox(), loopback_only=False)
    async with agent_client(backend, database_url, dev_routes=[mailbox]) as (client, _):
        body = (await client.get("/", headers={"Accept": "application/json"})).json()
        page = (await client.get("/")).text
    hrefs = {link["href"] for link in body["links"]}
    assert hrefs == {PUBLIC_URL + path for path in {*INDEXED, "/dev/mailbox"}}
    assert f'<a href="{PUBLIC_URL}/dev/mailbox">' in page


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_mailbox_is_a_page_for_a_browser_and_json_for_api_clients(
    backend: Backend, database_url: str
) -> None:
    """GET /dev/mailbox: a page linking each message for a browser's Accept; JSON for */*."""
    box = DevMailbox()
    box.add(
        b"Subject: Claim <your> agent\r\nTo: ana@example.net\r\n\r\nOpen the link.\r\n",
        "authledger@example.test",
        ["ana@example.net"],
    )
    mailbox = dev_mailbox_router(box, loopback_only=False)
    async with agent_client(backend, database_url, dev_routes=[mailbox]) as (client, _):
        page = await client.get("/dev/mailbox", headers={"Accept": BROWSER_ACCEPT})
        listed = await client.get("/dev/mailbox", headers={"Accept": "*/*"})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["vary"] == "Accept"
    assert '<a href="/dev/mailbox/1">Claim &lt;your&gt; agent</a>' in page.text
    assert "<script" not in page.text
    assert "sandbox" in page.headers["content-security-policy"]
    assert listed.headers["content-type"] == "application/json"
    assert [m["subject"] for m in listed.json()] == ["Claim <your> agent"]


async def test_api_docs_load_nothing_from_another_host(
    default_agent: tuple[httpx.AsyncClient, TenantConfig],
) -> None:
    """/schema and /schema/swagger are Swagger UI whose every script and style this app serves."""
    client, _ = default_agent
    for path in ("/schema", "/schema/swagger"):
        page = await client.get(path)
        assert page.status_code == 200
        assert "SwaggerUIBundle" in page.text
        sources = re.findall(r'(?:src|href)="([^"]*)"', page.text)
        assert sources, page.text[:500]
        assert all(source.startswith("/schema-assets/") for source in sources), sources
        for source in sources:
            asset = await client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 10_000, source
