"""An agent provider trusted by the service under test, and the calls tests make through it
(ID-JAG registration, `/api/me`, logout tokens): shared by the e2e and security modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from service.tenancy.config import ID_JAG
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, Service, running_service
from tests.support.backends import Backend
from tests.support.idp import IdentityProvider

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LOGOUT = {"Content-Type": "application/logout+jwt"}


@asynccontextmanager
async def trusting_service(
    backend: Backend, database_url: str, idp: IdentityProvider
) -> AsyncIterator[Service]:
    """The service (JWKS over loopback http allowed) with `idp` on its trust list."""
    async with running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as svc:
        await trust(svc, idp)
        yield svc


async def trust(svc: Service, idp: IdentityProvider, **terms: Any) -> None:
    body = {"issuer": idp.issuer, "jwks_uri": idp.jwks_url, **terms}
    response = await svc.client.post("/admin/trusted-issuers", json=body, headers=ADMIN)
    assert response.status_code in (200, 201), response.text


async def present(svc: Service, assertion: str, kind: str = "access_token") -> Any:
    return await svc.client.post(
        "/agent/auth",
        json={"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": assertion,
              "requested_credential_type": kind},
    )  # fmt: skip


async def registered(svc: Service, assertion: str, kind: str = "access_token") -> dict[str, Any]:
    response = await present(svc, assertion, kind)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def me(svc: Service, credential: str) -> httpx.Response:
    return await svc.client.get("/api/me", headers={"Authorization": f"Bearer {credential}"})


def jag(svc: Service, idp: IdentityProvider, **kwargs: Any) -> str:
    return idp.mint_id_jag(aud=kwargs.pop("aud", PUBLIC_URL), now=svc.clock.now(), **kwargs)
