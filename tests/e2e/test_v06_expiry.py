"""A v0.6 anonymous registration's access tokens end with it (docs/design/v06-dialect.md,
section 12, "What remains" 4): V6 never mints a token that outlives the unclaimed
registration it acts for, and when the registration expires the expiry worker ends every
token it still holds in the same append, as v1 ends a pre-claim key (`credential.revoked`,
`registration_expired`; `credential.expired` for one whose own end came first), which the API
refuses and the revocation feed lists. Over HTTP against real Postgres and NATS, the expiry
worker on the service's own clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from service.http.bodies import timestamp
from tests.support.app_client import ADMIN_TOKEN, Service
from tests.support.backends import Backend
from tests.support.v06_door import exchange, identify, me, v06_service
from workers.expiry import ACTOR, ExpiryWorker

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REGISTRATION_TTL = timedelta(minutes=30)
ACCESS_TOKEN_TTL = timedelta(minutes=15)


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(
        backend,
        database_url,
        REGISTRATION_TTL=str(int(REGISTRATION_TTL.total_seconds())),
        ACCESS_TOKEN_TTL=str(int(ACCESS_TOKEN_TTL.total_seconds())),
        ASSERTION_TTL="3600",
    ) as service:
        yield service


async def minted(svc: Service, assertion: str) -> dict[str, Any]:
    """V6, which must succeed: the token answer and what /api/me says of the token."""
    response = await exchange(svc.client, assertion)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    principal = await me(svc.client, body["access_token"])
    assert principal.status_code == 200, principal.text
    return {**body, **principal.json()}


async def worker_events(svc: Service) -> list[dict[str, Any]]:
    rows = await svc.resources.pool.fetch(
        "SELECT position, type, stream_id, payload->>'reason' AS reason, occurred_at,"
        " recorded_at FROM events WHERE metadata->>'actor' = $1 ORDER BY position",
        ACTOR,
    )
    return [dict(row) for row in rows]


async def test_tokens_end_with_their_registration(svc: Service) -> None:
    """A token minted 20 minutes into a 30-minute registration lives 10 minutes (`expires_in`
    600, not the 15-minute TTL); past the registration's end the API refuses both tokens
    before any worker runs. The worker then records, in one append, `registration.expired`
    (ttl), `credential.expired` for the first token (its own end came first) and
    `credential.revoked` (`registration_expired`) for the second, each dated when it became
    true; the revocation feed lists both, and the API still refuses them."""
    start = svc.clock.now()
    registered = await identify(svc.client)
    ends = start + REGISTRATION_TTL
    assert registered["claim_token_expires"] == timestamp(ends)
    first = await minted(svc, registered["identity_assertion"])
    assert first["expires_in"] == ACCESS_TOKEN_TTL.total_seconds()
    svc.clock.advance(timedelta(minutes=20))
    second = await minted(svc, registered["identity_assertion"])
    assert second["expires_in"] == 600  # cut to the registration's end
    row = await svc.row("credentials", "credential_id", second["credential_id"])
    assert row["expires_at"] == ends
    svc.clock.advance(timedelta(minutes=10))  # the registration's last instant has passed
    for token in (first, second):
        assert (await me(svc.client, token["access_token"])).status_code == 401

    svc.clock.advance(timedelta(minutes=1))
    head = await svc.head()
    worker = ExpiryWorker(svc.resources.pool, store=svc.resources.store, clock=svc.clock)
    assert await worker.run_once() == 3
    recorded = await worker_events(svc)
    assert [e["position"] for e in recorded] == [head + 1, head + 2, head + 3]  # one append
    assert len({e["recorded_at"] for e in recorded}) == 1
    seen = {(e["stream_id"], e["type"], e["reason"], e["occurred_at"]) for e in recorded}
    assert seen == {
        (registered["registration_id"], "registration.expired", "ttl", ends),
        (first["credential_id"], "credential.expired", None, start + ACCESS_TOKEN_TTL),
        (second["credential_id"], "credential.revoked", "registration_expired", ends),
    }
    assert await worker.run_once() == 0  # nothing more is due
    for token in (first, second):
        assert (await me(svc.client, token["access_token"])).status_code == 401
        ended = await svc.row("credentials", "credential_id", token["credential_id"])
        assert ended["status"] in ("expired", "revoked")
    feed = (await svc.client.get("/admin/revocations", headers=ADMIN)).json()
    reasons = {e["credential_id"]: e["reason"] for e in feed["revocations"]}
    assert reasons == {
        first["credential_id"]: "expired",
        second["credential_id"]: "revoked:registration_expired",
    }
    registration = await svc.row("registrations", "registration_id", registered["registration_id"])
    assert registration["status"] == "expired"


async def test_a_registration_expiring_alone_writes_no_token_events(svc: Service) -> None:
    """A registration whose tokens were all ended before (one by its holder at V8) expires
    alone; a token minted just before the end is refused from that end on, by its own
    `expires_at` (an answer never waits for the worker)."""
    registered = await identify(svc.client)
    token = await minted(svc, registered["identity_assertion"])
    revoked = await svc.client.post("/oauth2/revoke", data={"token": token["access_token"]})
    assert revoked.status_code == 200
    svc.clock.advance(REGISTRATION_TTL - timedelta(seconds=1))
    last = await minted(svc, registered["identity_assertion"])
    assert last["expires_in"] == 1
    svc.clock.advance(timedelta(seconds=1))
    assert (await me(svc.client, last["access_token"])).status_code == 401
    worker = ExpiryWorker(svc.resources.pool, store=svc.resources.store, clock=svc.clock)
    assert await worker.run_once() == 2
    recorded = await worker_events(svc)
    assert [(e["type"], e["reason"]) for e in recorded] == [
        ("registration.expired", "ttl"),
        ("credential.revoked", "registration_expired"),
    ]
    assert recorded[1]["stream_id"] == last["credential_id"]
