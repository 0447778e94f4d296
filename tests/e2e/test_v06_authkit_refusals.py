"""The v0.6 door's AuthKit profile refusing (contract [PR28]; docs/design/v06-dialect.md
section 12): malformed or unknown input at its routes in the identity family's shape with
nothing written, its page without a session, a tenant of the main profile that serves neither
route, and the profile chosen per tenant. Real Postgres, NATS and SMTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.commands.context import Caller
from service.commands.tenants import create_tenant
from service.tenancy.config import JWT_BEARER
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.authkit import CLAIM, COMPLETE, IDENTITY, authkit_service, complete
from tests.support.backends import Backend
from tests.support.v06_door import assert_identity_error, v06_service, written_by

HINT = "ana@example.net"
DIALECT = "0.6.0+authkit"
ACME_URL = "https://auth.acme.example"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with authkit_service(backend, database_url) as service:
        yield service


@pytest.mark.parametrize(
    ("path", "payload", "status", "error"),
    [
        (IDENTITY, {"type": "refresh"}, 400, "invalid_request"),
        (IDENTITY, {"type": "anonymous", "refresh_token": "rt_x"}, 400, "invalid_request"),
        (IDENTITY, {"type": "refresh", "refresh_token": "rt_x", "login_hint": HINT}, 400,
         "invalid_request"),
        (IDENTITY, {"type": "refresh", "refresh_token": "rt_unknown"}, 400,
         "invalid_refresh_token"),
        (IDENTITY, {"type": "password"}, 400, "invalid_request"),
        (IDENTITY, {"type": "anonymous", "extra": 1}, 400, "invalid_request"),
        (COMPLETE, {"claim_token": "clm_x"}, 400, "invalid_request"),
        (COMPLETE, {"claim_token": "clm_x", "user_code": "12345"}, 400, "invalid_request"),
        (COMPLETE, {"claim_token": "clm_x", "user_code": "123456"}, 400, "invalid_claim"),
        (CLAIM, {"claim_token": "clm_x", "login_hint": HINT}, 401, "invalid_claim_token"),
    ],
)  # fmt: skip
async def test_bad_input_identity_shape_no_event(
    svc: Service, path: str, payload: dict[str, Any], status: int, error: str
) -> None:
    """Malformed or unknown input at the profile's routes: the identity family's shape, 4xx,
    nothing written."""
    head = await svc.head()
    response = await svc.client.post(path, json=payload)
    assert_identity_error(response, status, error)
    assert await svc.head() == head


async def test_malformed_bodies_and_pages(svc: Service) -> None:
    """Not JSON at complete, a confirm page without a link or session: refused, nothing
    written; the confirm page without a session sends the person to sign in."""
    head = await svc.head()
    raw = await svc.client.post(
        COMPLETE, content=b"{", headers={"content-type": "application/json"}
    )
    assert_identity_error(raw, 400, "invalid_request")
    assert (await svc.client.get("/claim/confirm")).status_code == 404
    away = await svc.client.get("/claim/confirm?claim_attempt_token=cvt_nothing")
    assert away.status_code == 302
    assert away.headers["location"].startswith(f"{PUBLIC_URL}/login?return_to=%2Fclaim%2Fconfirm")
    forged = await svc.client.post(
        "/claim/confirm", data={"claim_attempt_token": "cvt_nothing", "csrf": "x"}
    )
    assert forged.status_code == 302  # no session: sign in first
    assert await svc.head() == head


async def test_main_profile_serves_neither(backend: Backend, database_url: str) -> None:
    """A tenant of the main profile: complete is 404 `not_found` (identity shape), the confirm
    page 404, and V1 answers flat, its events dialect 0.6.0."""
    async with v06_service(backend, database_url) as main:
        head = await main.head()
        response = await complete(main.client, "clm_x", "123456")
        assert_identity_error(response, 404, "not_found")
        assert (await main.client.get("/claim/confirm?claim_attempt_token=x")).status_code == 404
        assert await main.head() == head
        flat = await main.client.post(IDENTITY, json={"type": "anonymous"})
        assert "registration_id" in flat.json()
        [created] = await written_by(main, flat)
        assert created["metadata"]["dialect"] == "0.6.0"


async def test_the_profile_is_a_tenant_setting(backend: Backend, database_url: str) -> None:
    """One installation, two tenants: the default keeps the main profile (flat answers,
    dialect 0.6.0), a tenant configured with `v06_profile = authkit` answers nested at its own
    host, its events dialect 0.6.0+authkit, and serves claim/complete; its discovery lists
    only the jwt-bearer grant."""
    async with v06_service(backend, database_url) as main:
        ctx = await main.resources.command_context()
        settings = {"public_url": ACME_URL, "doors": "v1 v06", "v06_profile": "authkit"}
        await create_tenant(ctx, main.resources.settings, "acme", hosts=["auth.acme.example"],
                            settings=settings, caller=Caller(actor="test"))  # fmt: skip
        transport = main.client._transport
        async with httpx.AsyncClient(transport=transport, base_url=ACME_URL) as acme:
            nested = await acme.post(IDENTITY, json={"type": "anonymous"})
            assert nested.status_code == 200, nested.text
            assert set(nested.json()) == {"id", "type", "identity", "scopes", "claim"}
            [created] = await written_by(main, nested)
            assert created["metadata"]["dialect"] == DIALECT
            metadata = await acme.get("/.well-known/oauth-authorization-server")
            assert metadata.json()["grant_types_supported"] == [JWT_BEARER]
            unknown = await complete(acme, "clm_x", "123456")
            assert_identity_error(unknown, 400, "invalid_claim")
        flat = await main.client.post(IDENTITY, json={"type": "anonymous"})
        assert "registration_id" in flat.json()
        [created] = await written_by(main, flat)
        assert created["metadata"]["dialect"] == "0.6.0"


async def test_auth_md_walks_the_profile(svc: Service) -> None:
    """An AuthKit tenant's auth.md tells an agent the profile's way: nested answers, the
    person reading the code from the confirm page, claim/complete and refresh; not the poll."""
    page = (await svc.client.get("/auth.md")).text
    a4 = page[page.index("### A4.") : page.index("### A5.")]
    assert f"{PUBLIC_URL}/agent/identity/claim/complete" in a4
    assert '"type": "refresh"' in a4
    assert "%2Fclaim%2Fconfirm%3Fclaim_attempt_token" in page
    assert "authorization_pending" not in a4
    assert '"identity": {' in page[page.index("### A2.") : page.index("### A3.")]
