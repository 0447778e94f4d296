"""Two real `authledger serve` processes on one database: a credential revoked through one
is refused by the other (each follows the Postgres log into its credential cache)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.revocations import ADMIN_TOKEN, serve_env, served
from tests.support.serve_process import Server
from tests.support.waiting import wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
pytestmark = pytest.mark.timeout(120)


async def cached_key(issuer: Server, checker: Server) -> tuple[str, str]:
    """A key registered through `issuer` and already checked (so cached) by `checker`."""
    registered = await issuer.http.post("/agent/auth", json=ANONYMOUS)
    key = registered.json()["credential"]
    me = await checker.http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200
    return key, me.json()["credential_id"]


async def refused_within(server: Server, key: str, seconds: float) -> float:
    """Poll /api/me until 401; how long it took."""

    async def refused() -> httpx.Response | None:
        answer = await server.http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        if answer.status_code == 401:
            return answer
        assert answer.status_code == 200
        return None

    started = time.monotonic()
    what = f"{server.url} refusing the revoked key"
    answer = await wait_until(refused, within=seconds, what=what, every=0.005)
    assert answer.json()["message"] == "the credential has been revoked"
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    return time.monotonic() - started


async def test_revoked_through_one_replica_refused_by_the_other(
    backend: Backend, database_url: str, nats_names: NatsNames
) -> None:
    """Revoke through A (admin API): B, which had the key cached as live, refuses it within
    a bounded time; and the same the other way round."""
    env = serve_env(database_url, backend.nats_url, nats_names)
    async with served(env) as a, served(env) as b:
        for through, other in ((a, b), (b, a)):
            key, credential_id = await cached_key(through, other)
            answer = await through.http.post(
                "/admin/revocations", json={"credential_id": credential_id}, headers=ADMIN
            )
            assert answer.json()["revoked"] == 1
            await refused_within(other, key, 5.0)
            await refused_within(through, key, 0.5)  # the revoking process knew at once
