"""Tenants over HTTP: each Host its own service — discovery, keys, trust list, limits — and
nothing of one tenant ever acts on another (issue 7 item 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from service.commands.context import Caller
from service.commands.tenants import create_tenant, set_tenant_active
from tests.support.app_client import PUBLIC_URL, Service, link_of, otp_of, running_service
from tests.support.backends import Backend
from tests.support.id_jag import ADMIN, LOGOUT, jag, trust
from tests.support.idp import IdentityProvider

ACME_URL = "https://auth.acme.example"
ACME = {"public_url": ACME_URL, "resource_name": "Acme API"}
OPERATOR = Caller(actor="test")


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as s:
        ctx = await s.resources.command_context()
        await create_tenant(ctx, s.resources.settings, "acme", hosts=["auth.acme.example"],
                            settings=ACME, caller=OPERATOR)  # fmt: skip
        yield s


@pytest.fixture
async def acme(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = svc.client._transport  # the same app, reached by the tenant's own host name
    async with httpx.AsyncClient(transport=transport, base_url=ACME_URL) as client:
        yield client


async def anonymous(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/agent/auth", json={"type": "anonymous", "requested_credential_type": "api_key"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_each_host_gets_its_own_discovery(svc: Service, acme: httpx.AsyncClient) -> None:
    prm = (await acme.get("/.well-known/oauth-protected-resource")).json()
    assert prm["resource"] == f"{ACME_URL}/api/"
    assert prm["resource_name"] == "Acme API"
    assert prm["authorization_servers"] == [ACME_URL]
    inserted = await acme.get("/.well-known/oauth-protected-resource/api/")
    assert inserted.json() == prm
    metadata = (await acme.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == ACME_URL
    assert metadata["agent_auth"]["register_uri"] == f"{ACME_URL}/agent/auth"
    assert "Acme API" in (await acme.get("/auth.md")).text
    default = (await svc.client.get("/.well-known/oauth-authorization-server")).json()
    assert default["issuer"] == PUBLIC_URL
    registered = await anonymous(acme)
    assert registered["claim_url"] == f"{ACME_URL}/agent/auth/claim"


async def test_credentials_act_only_on_their_own_tenant(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    ours, theirs = await svc.anonymous(), await anonymous(acme)
    assert (await svc.client.get("/api/me", headers=bearer(ours["credential"]))).status_code == 200
    assert (await acme.get("/api/me", headers=bearer(theirs["credential"]))).status_code == 200
    crossed = await acme.get("/api/me", headers=bearer(ours["credential"]))
    assert crossed.status_code == 401
    assert (
        f'resource_metadata="{ACME_URL}/.well-known/oauth-protected-resource/api/"'
        in (crossed.headers["www-authenticate"])
    )
    assert (
        await svc.client.get("/api/me", headers=bearer(theirs["credential"]))
    ).status_code == 401
    introspected = await acme.post(
        "/oauth2/introspect", data={"token": ours["credential"]}, headers=ADMIN
    )
    assert introspected.json() == {"active": False}


async def test_claim_tokens_act_only_on_their_own_tenant(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    ours = await svc.anonymous()
    head = await svc.head()
    start = await acme.post(
        "/agent/auth/claim", json={"claim_token": ours["claim_token"], "email": "a@example.net"}
    )
    assert (start.status_code, start.json()["error"]) == (401, "invalid_claim_token")
    complete = await acme.post(
        "/agent/auth/claim/complete", json={"claim_token": ours["claim_token"], "otp": "123456"}
    )
    assert (complete.status_code, complete.json()["error"]) == (401, "invalid_claim_token")
    assert await svc.head() == head


async def test_a_tenants_claim_mail_links_to_its_own_host(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    theirs = await anonymous(acme)
    started = await acme.post(
        "/agent/auth/claim", json={"claim_token": theirs["claim_token"], "email": "b@example.net"}
    )
    assert started.status_code == 200
    mail = await svc.mail(1)
    link = link_of(mail)
    assert link.startswith(f"{ACME_URL}/agent/auth/claim/view?token=")
    assert "Acme API" in mail.part("plain")
    page = await acme.get(link)
    assert page.status_code == 200
    wrong_host = await svc.client.get(link.replace(ACME_URL, PUBLIC_URL))
    assert wrong_host.status_code == 404  # the link token is unknown to the default tenant
    shown = await svc.press_button(page)  # the form posts to the tenant's own host
    assert str(shown.request.url).startswith(ACME_URL)
    code = otp_of(shown.text)
    done = await acme.post(
        "/agent/auth/claim/complete", json={"claim_token": theirs["claim_token"], "otp": code}
    )
    assert done.status_code == 200, done.text


async def test_access_tokens_are_signed_by_the_tenants_own_keys(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    async with IdentityProvider() as idp:
        await acme.post("/admin/trusted-issuers", headers=ADMIN,
                        json={"issuer": idp.issuer, "jwks_uri": idp.jwks_url})  # fmt: skip
        token = idp.mint_id_jag(aud=ACME_URL, now=svc.clock.now())
        registered = await acme.post(
            "/agent/auth",
            json={"type": "identity_assertion", "assertion": token,
                  "assertion_type": "urn:ietf:params:oauth:token-type:id-jag",
                  "requested_credential_type": "access_token"},
        )  # fmt: skip
        assert registered.status_code == 200, registered.text
    access_token = registered.json()["credential"]
    ours = {k["kid"] for k in (await svc.client.get("/.well-known/jwks.json")).json()["keys"]}
    theirs = (await acme.get("/.well-known/jwks.json")).json()["keys"]
    assert {k["kid"] for k in theirs}.isdisjoint(ours)
    header = jwt.get_unverified_header(access_token)
    assert header["kid"] in {k["kid"] for k in theirs}
    claims = jwt.decode(access_token, options={"verify_signature": False})
    assert claims["iss"] == ACME_URL


async def test_a_provider_trusted_by_one_tenant_is_unknown_to_another(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    async with IdentityProvider() as idp:
        await trust(svc, idp)  # the default tenant only
        assert (await acme.get("/admin/trusted-issuers", headers=ADMIN)).json() == {
            "trusted_issuers": []
        }
        head = await svc.head()
        assertion = idp.mint_id_jag(aud=ACME_URL, now=svc.clock.now())
        refused = await acme.post(
            "/agent/auth",
            json={"type": "identity_assertion", "assertion": assertion,
                  "assertion_type": "urn:ietf:params:oauth:token-type:id-jag",
                  "requested_credential_type": "api_key"},
        )  # fmt: skip
        assert refused.json()["error"] == "invalid_issuer"
        logout = idp.mint_logout_token(aud=ACME_URL, now=svc.clock.now())
        revoked = await acme.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
        assert revoked.json()["error"] == "invalid_issuer"
        assert await svc.head() == head
        assert (await svc.client.post("/agent/auth", json={
            "type": "identity_assertion", "assertion": jag(svc, idp),
            "assertion_type": "urn:ietf:params:oauth:token-type:id-jag",
            "requested_credential_type": "api_key"})).status_code == 200  # fmt: skip


async def test_admin_calls_act_only_on_their_own_tenant(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    ours = await svc.anonymous()
    registration = ours["registration_id"]
    revoked = await acme.post(
        "/admin/revocations", json={"registration_id": registration}, headers=ADMIN
    )
    assert revoked.json()["revoked"] == 0
    assert (await svc.client.get("/api/me", headers=bearer(ours["credential"]))).status_code == 200
    erased = await acme.post("/admin/erasures", json={"email": "nobody@example.net"}, headers=ADMIN)
    assert erased.status_code == 404


async def test_a_disabled_tenants_hosts_are_refused(svc: Service, acme: httpx.AsyncClient) -> None:
    theirs = await anonymous(acme)
    ctx = await svc.resources.command_context()
    assert await set_tenant_active(ctx, "acme", False, OPERATOR, "unpaid")
    refused = await acme.get("/api/me", headers=bearer(theirs["credential"]))
    assert (refused.status_code, refused.json()["error"]) == (404, "tenant_disabled")
    assert "x-request-id" in refused.headers
    assert await set_tenant_active(ctx, "acme", True, OPERATOR)
    assert (await acme.get("/api/me", headers=bearer(theirs["credential"]))).status_code == 200
