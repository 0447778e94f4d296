"""Security issue 12, finding 9: a tenant whose configuration fails to load must not become the
default tenant on its hosts.

Before, `TenantDirectory` dropped a tenant whose settings no longer parsed (logged, then
forgotten), so its hosts fell through to the default tenant: its agents registered with, and
got credentials from, another service, and a directory that did not load at all (Postgres down
at start-up) sent every tenant's host there. After, those hosts answer 503
`temporarily_unavailable` with `Retry-After`, and the other tenants keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx

from service.commands.context import Caller
from service.commands.tenants import create_tenant
from service.tenancy.directory import TenantDirectory, Unavailable
from tests.support.app_client import (
    ADMIN_TOKEN,
    PUBLIC_URL,
    Service,
    running_service,
    settings_for,
)
from tests.support.backends import Backend, with_database

ACME_URL, GLOBEX_URL, INITECH_URL = (
    "https://auth.acme.example",
    "https://auth.globex.example",
    "https://auth.initech.example",
)
OPERATOR = Caller(actor="test")
# The installation narrows its scopes after acme chose one of the wider set: acme's settings
# no longer pass the checks they passed when recorded.
NARROWER = {"SCOPES": "api.read", "PRE_CLAIM_SCOPES": "api.read", "POST_CLAIM_SCOPES": "api.read"}


@asynccontextmanager
async def at(svc: Service, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same app, reached by another host name."""
    async with httpx.AsyncClient(transport=svc.client._transport, base_url=base_url) as client:
        yield client


async def three_tenants(backend: Backend, database_url: str, owner_database_url: str) -> None:
    """acme (which will break with the base), globex (whose row will be damaged, by hand, as
    the owner: the runtime role cannot write a row no event backs), initech."""
    async with running_service(backend, database_url) as svc:
        ctx = await svc.resources.command_context()
        base = svc.resources.settings
        for tenant_id, url, extra in (
            ("acme", ACME_URL, {"post_claim_scopes": "api.read api.write"}),
            ("globex", GLOBEX_URL, {}),
            ("initech", INITECH_URL, {}),
        ):
            host = url.removeprefix("https://")
            settings = {"public_url": url, "resource_name": tenant_id.title(), **extra}
            await create_tenant(ctx, base, tenant_id, hosts=[host], settings=settings,
                                caller=OPERATOR)  # fmt: skip
    damaged = 'UPDATE tenants SET settings = \'["not", "a", "map"]\' WHERE tenant_id = $1'
    owner = await asyncpg.connect(owner_database_url)
    try:
        await owner.execute(damaged, "globex")
    finally:
        await owner.close()


async def test_a_tenant_that_fails_to_load_answers_503_not_the_default(
    backend: Backend, database_url: str, owner_database_url: str
) -> None:
    """acme (settings the base no longer accepts) and globex (a damaged row) answer 503 on
    every path and write nothing; initech and the default tenant answer as themselves."""
    await three_tenants(backend, database_url, owner_database_url)
    async with running_service(backend, database_url, **NARROWER) as svc:
        head = await svc.head()
        for url in (ACME_URL, GLOBEX_URL):
            async with at(svc, url) as broken:
                for method, path in (
                    ("GET", "/.well-known/oauth-authorization-server"),
                    ("GET", "/auth.md"),
                    ("GET", "/.well-known/jwks.json"),
                    ("POST", "/agent/auth"),
                ):
                    body = {"type": "anonymous", "requested_credential_type": "api_key"}
                    answer = await broken.request(
                        method, path, json=body if method == "POST" else None
                    )
                    assert answer.status_code == 503, (url, path, answer.text)
                    assert answer.json()["error"] == "temporarily_unavailable"
                    assert int(answer.headers["retry-after"]) > 0
                    assert PUBLIC_URL not in answer.text
                probe = await broken.get("/readyz")  # answers for the process, whatever the host
                assert (probe.status_code, probe.json()) == (200, {"status": "ok"})
        assert await svc.head() == head  # no registration went to the default tenant
        async with at(svc, INITECH_URL) as initech:
            metadata = (await initech.get("/.well-known/oauth-authorization-server")).json()
            assert metadata["issuer"] == INITECH_URL
            registered = await initech.post(
                "/agent/auth", json={"type": "anonymous", "requested_credential_type": "api_key"}
            )
            assert registered.status_code == 200, registered.text
        default = (await svc.client.get("/.well-known/oauth-authorization-server")).json()
        assert default["issuer"] == PUBLIC_URL
        operator = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ready = (await svc.client.get("/readyz", headers=operator)).json()
        assert ready["tenants_unavailable"] == ["acme", "globex"]


async def test_a_directory_that_never_loaded_refuses_tenant_hosts(
    backend: Backend, database_url: str
) -> None:
    """When the tenants cannot be read at all, no host but the default's own is served: each
    could be a tenant's; the default's host still is."""
    missing = with_database(backend.database_url, "authledger_no_such_database")
    directory = TenantDirectory(settings_for(backend, database_url))
    pool = await asyncpg.create_pool(missing, min_size=0, max_size=1)
    try:
        try:
            await directory.load(pool)
        except asyncpg.PostgresError:
            pass
        else:
            raise AssertionError("a missing database loaded")
        await directory.load_if_never_loaded()  # tries again: still nothing
    finally:
        await pool.close()
    assert isinstance(directory.resolve("auth.acme.example"), Unavailable)
    assert directory.resolve("auth.example.test") is directory.default
    assert directory.unavailable() == ["*"]
    good = await asyncpg.create_pool(database_url, min_size=0, max_size=1)
    try:
        await directory.load(good)
    finally:
        await good.close()
    assert directory.resolve("auth.acme.example") is directory.default  # now known: no tenant
    assert directory.unavailable() == []
