"""`GET /admin/revocations?after=&limit=`: the revocation feed's authoritative state."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from subscriber.wire import public_keys, verify
from tests.support.app_client import ADMIN_TOKEN, Service, running_service
from tests.support.backends import Backend

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FEED = "/admin/revocations"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as s:
        yield s


async def revoked_keys(svc: Service, count: int) -> list[dict[str, Any]]:
    """`count` anonymous keys, each revoked by the operator; their /api/me answers."""
    found = []
    for _ in range(count):
        key = (await svc.anonymous())["credential"]
        me = (await svc.client.get("/api/me", headers={"Authorization": f"Bearer {key}"})).json()
        answer = await svc.client.post(
            FEED, json={"credential_id": me["credential_id"], "reason": "leak"}, headers=ADMIN
        )
        assert answer.json()["revoked"] == 1
        found.append({**me, "key": key})
    return found


async def test_lists_signed_entries_after_a_position_in_pages(svc: Service) -> None:
    """Every revocation after `after`, in log order, each signed (verifiable with the JWKS)
    and saying the same as its plain fields; `limit` pages with `more` and `through`."""
    keys = await revoked_keys(svc, 3)
    await svc.anonymous()  # a live key, not listed
    body = (await svc.client.get(FEED, headers=ADMIN)).json()
    head = await svc.head()
    assert (body["tenant"], body["after"], body["through"], body["head"], body["more"]) == (
        "default", 0, head, head, False)  # fmt: skip
    entries = body["revocations"]
    assert [e["credential_id"] for e in entries] == [k["credential_id"] for k in keys]
    jwks = public_keys((await svc.client.get("/.well-known/jwks.json")).json())
    for entry, key in zip(entries, keys, strict=True):
        claims = verify(entry["signed"], jwks)
        assert claims.credential_id == entry["credential_id"] == key["credential_id"]
        assert claims.position == entry["position"]
        assert claims.reason == entry["reason"] == "revoked:operator"
        assert claims.token_hash_prefix == hashlib.sha256(key["key"].encode()).hexdigest()[:16]
        assert (claims.registration_id, claims.credential_kind) == (key["registration_id"],
                                                                     "api_key")  # fmt: skip
    positions = [e["position"] for e in entries]
    assert [e["previous_position"] for e in entries] == [0, *positions[:-1]]
    page = (await svc.client.get(FEED, params={"limit": 2}, headers=ADMIN)).json()
    assert [e["position"] for e in page["revocations"]] == positions[:2]
    assert (page["through"], page["more"]) == (positions[1], True)
    rest = (await svc.client.get(FEED, params={"after": positions[1]}, headers=ADMIN)).json()
    assert [e["position"] for e in rest["revocations"]] == positions[2:]
    assert (rest["through"], rest["more"], rest["after"]) == (head, False, positions[1])


async def test_needs_the_admin_token(svc: Service) -> None:
    """Without the admin token: 401, nothing listed."""
    await revoked_keys(svc, 1)
    for headers in ({}, {"Authorization": "Bearer not-the-admin-token-at-all"}):
        answer = await svc.client.get(FEED, headers=headers)
        assert answer.status_code == 401
        assert "revocations" not in answer.json()


@pytest.mark.parametrize(
    "params", [{"after": -1}, {"limit": 0}, {"limit": 1001}, {"after": "x"}, {"limit": "ten"}]
)
async def test_bad_bounds_are_refused(svc: Service, params: dict[str, int | str]) -> None:
    """A negative position or a limit outside 1..1000 (or not a number) gets a 400."""
    answer = await svc.client.get(FEED, params=params, headers=ADMIN)
    assert answer.status_code == 400
