"""V9 as its e2e tests drive it: a service with both doors open that trusts a test provider,
the provider's SETs posted to `/agent/event/notify`, and the events family's refusal shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import trust
from tests.support.idp import IdentityProvider
from tests.support.v06_door import v06_service

NOTIFY = "/agent/event/notify"
SECEVENT = {"content-type": "application/secevent+jwt"}


@asynccontextmanager
async def set_service(
    backend: Backend, database_url: str, idp: IdentityProvider, **variables: str
) -> AsyncIterator[Service]:
    """Both doors open, JWKS over loopback http allowed, `idp` on the trust list."""
    async with v06_service(
        backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true", **variables
    ) as svc:
        await trust(svc, idp, link_by_verified_email=True)
        yield svc


def mint_set(svc: Service, idp: IdentityProvider, **kwargs: Any) -> str:
    return idp.mint_set(aud=kwargs.pop("aud", PUBLIC_URL), now=svc.clock.now(), **kwargs)


async def notify(
    svc: Service, token: str | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """V9: the SET as the body, `application/secevent+jwt` unless `headers` say otherwise."""
    return await svc.client.post(NOTIFY, content=token, headers=SECEVENT if headers is None
                                 else headers)  # fmt: skip


def assert_accepted(response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"


def assert_events_error(response: httpx.Response, status: int, err: str) -> None:
    """The events family's shape, exactly, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"err", "description"}, body
    assert body["err"] == err
    assert body["description"]
    assert response.headers["cache-control"] == "no-store"
    assert "Traceback" not in response.text
