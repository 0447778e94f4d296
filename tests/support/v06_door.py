"""The v0.6 door as its e2e tests drive it: a service whose default tenant opens both doors,
the agent's calls (V1 anonymous, V6, V8) over HTTP, and what they wrote, found by the request
id every answer echoes (`X-Request-ID`) and every event carries as its correlation id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec

from service.tenancy.config import JWT_BEARER
from tests.support.app_client import Service, running_service
from tests.support.backends import Backend

IDENTITY = "/agent/identity"
TOKEN = "/oauth2/token"
REVOKE = "/oauth2/revoke"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@asynccontextmanager
async def v06_service(
    backend: Backend, database_url: str, **variables: str
) -> AsyncIterator[Service]:
    """The running service with both doors open on its default tenant."""
    async with running_service(backend, database_url, DOORS="v1 v06", **variables) as svc:
        yield svc


async def identify(client: httpx.AsyncClient) -> dict[str, Any]:
    """V1 anonymous, which must succeed."""
    response = await client.post(IDENTITY, json={"type": "anonymous"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def exchange(client: httpx.AsyncClient, assertion: str, **more: str) -> httpx.Response:
    """V6 with the jwt-bearer grant."""
    form = {"grant_type": JWT_BEARER, "assertion": assertion, **more}
    return await client.post(TOKEN, data=form)


async def token_for(client: httpx.AsyncClient, assertion: str) -> str:
    response = await exchange(client, assertion)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def revoke(client: httpx.AsyncClient, token: str, **more: str) -> httpx.Response:
    """V8."""
    return await client.post(REVOKE, data={"token": token, **more})


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


async def written_by(svc: Service, response: httpx.Response) -> list[dict[str, Any]]:
    """The events the request that got `response` appended: type, payload and metadata."""
    rows = await svc.resources.pool.fetch(
        "SELECT type, payload::text, metadata::text FROM events"
        " WHERE metadata->>'correlation_id' = $1 ORDER BY position",
        response.headers["x-request-id"],
    )
    return [
        {
            "type": row["type"],
            "payload": msgspec.json.decode(row["payload"]),
            "metadata": msgspec.json.decode(row["metadata"]),
        }
        for row in rows
    ]


def assert_no_store(response: httpx.Response) -> None:
    """The headers of every answer of the identity and oauth families."""
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    """RFC 6749's error shape, exactly, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error
    assert body["error_description"]
    assert_no_store(response)


def assert_identity_error(response: httpx.Response, status: int, error: str) -> None:
    """The identity family's shape: both texts, the same (O-Q)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message", "error_description"}, body
    assert body["error"] == error
    assert body["message"] == body["error_description"] != ""
    assert_no_store(response)
