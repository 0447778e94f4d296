"""Erasing a person (crypto-shredding): after it, nothing anywhere opens their data, their
credentials are refused, the log and its hash chain are untouched, and a rebuild of the read
models still equals the live ones."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from events.hashchain import verify_log
from projections.replay import verify
from service.crypto.pii import Sealer
from tests.e2e.test_no_plaintext import _ceremony
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, SECRET_KEY, Service, running_service
from tests.support.backends import Backend
from tests.support.id_jag import ADMIN, jag, me, registered, trust
from tests.support.idp import IdentityProvider
from tests.support.serve_process import authledger_env, serving
from tests.support.waiting import wait_until

EMAIL = "erin.erased@example.net"
OTHER = "olga.kept@example.net"
SEALED = re.compile(r"pii1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_=-]+")


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as s:
        yield s


async def _claimed_key(svc: Service, email: str, mail: int) -> str:
    anonymous = await svc.anonymous()
    code = await _ceremony(svc, anonymous["claim_token"], email, mail)
    done = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": anonymous["claim_token"], "otp": code}
    )
    assert done.status_code == 200, done.text
    key: str = anonymous["credential"]
    return key


async def _openable(svc: Service) -> dict[str, str]:
    """Every sealed value in any table that the service's secret still opens, and its text."""
    sealer, pool = Sealer(SECRET_KEY), svc.resources.pool
    tables = [r["tablename"] for r in await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]  # fmt: skip
    found: dict[str, str] = {}
    for table in tables:
        dump = await pool.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")
        for sealed in set(SEALED.findall(dump)):
            plain = await sealer.open(pool, sealed)
            if plain is not None:
                found[sealed] = plain
    return found


async def test_erasing_a_person_by_email(svc: Service) -> None:
    key = await _claimed_key(svc, EMAIL, 1)
    kept_key = await _claimed_key(svc, OTHER, 2)
    pending = await svc.anonymous()  # an unclaimed attempt naming the address, by another agent
    started = await svc.client.post(
        "/agent/auth/claim", json={"claim_token": pending["claim_token"], "email": EMAIL}
    )
    assert started.status_code == 200
    async with IdentityProvider() as idp:
        await trust(svc, idp, link_by_verified_email=True)  # opt-in since finding 2
        linked = await registered(svc, jag(svc, idp, overrides={"email": EMAIL}))
    user_id = (await me(svc, key)).json()["user_id"]
    assert (await me(svc, linked["credential"])).json()["user_id"] == user_id
    assert EMAIL in (await _openable(svc)).values()

    response = await svc.client.post(
        "/admin/erasures", json={"email": EMAIL, "reason": "GDPR art. 17 request 42"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    erased = response.json()
    assert erased["users"] == [user_id]
    assert len(erased["registrations"]) == 2  # the claimed one and the pending attempt
    assert len(erased["revoked"]) == 2  # the claimed key and the ID-JAG credential
    assert (await me(svc, pending["credential"])).status_code == 200  # not theirs
    assert (await me(svc, pending["credential"])).status_code == 200  # not theirs

    openable = await _openable(svc)
    assert EMAIL not in openable.values()
    assert OTHER in openable.values()  # someone else's data is untouched
    assert (await me(svc, key)).status_code == 401
    assert (await me(svc, linked["credential"])).status_code == 401
    assert (await me(svc, kept_key)).status_code == 200
    user = await svc.row("users", "user_id", user_id)
    assert user["erased_at"] is not None
    assert (user["email_index"], user["email_sealed"]) == (None, None)
    assert (await verify_log(svc.resources.store.read_all)).ok
    chain = await svc.client.get("/admin/audit/verify", headers=ADMIN)
    assert (chain.json()["ok"], chain.json()["first_break"]) == (True, None)
    export = await svc.client.get(f"/admin/audit/user/{user_id}/export", headers=ADMIN)
    assert export.status_code == 200
    assert EMAIL not in export.text
    sealer = Sealer(SECRET_KEY)
    in_export = set(SEALED.findall(export.text))
    assert in_export  # the slice holds the user's sealed fields, which no longer open
    assert [await sealer.open(svc.resources.pool, v) for v in in_export] == [None] * len(in_export)
    assert await svc.count("user.erased") == 1
    assert await svc.count("registration.erased") == 2

    again = await svc.client.post("/admin/erasures", json={"email": EMAIL}, headers=ADMIN)
    assert again.status_code == 404
    fresh = await _claimed_key(svc, EMAIL, 4)  # the address no longer finds the erased user
    assert (await me(svc, fresh)).json()["user_id"] != user_id


async def test_rebuild_after_erasure_equals_live(svc: Service, owner_database_url: str) -> None:
    key = await _claimed_key(svc, EMAIL, 1)
    user_id = (await me(svc, key)).json()["user_id"]
    response = await svc.client.post("/admin/erasures", json={"user_id": user_id}, headers=ADMIN)
    assert response.status_code == 200
    assert (await verify(owner_database_url)).differences == []  # as the owner: a schema


@pytest.mark.parametrize(
    "body", [{}, {"user_id": "usr_x", "email": EMAIL}, {"email": "x" * 300}, {"user_id": 5}]
)
async def test_bad_erasure_requests_write_nothing(svc: Service, body: dict[str, object]) -> None:
    head = await svc.head()
    response = await svc.client.post("/admin/erasures", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head


async def test_an_erasure_by_another_process_reaches_this_ones_key_cache(
    backend: Backend, database_url: str, svc: Service
) -> None:
    key = await _claimed_key(svc, EMAIL, 1)
    user_id = (await me(svc, key)).json()["user_id"]
    sealed = (await svc.row("users", "user_id", user_id))["email_sealed"]
    sealer = svc.resources.commands.sealer if svc.resources.commands else None
    assert sealer is not None
    assert await sealer.open(svc.resources.pool, sealed) == EMAIL  # now cached here
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_ADMIN_TOKEN=ADMIN_TOKEN, AUTHLEDGER_SECRET_KEY=SECRET_KEY,
        AUTHLEDGER_PUBLIC_URL=PUBLIC_URL,
    )  # fmt: skip
    async with serving([], env) as other:
        done = await other.http.post("/admin/erasures", json={"user_id": user_id}, headers=ADMIN)
        assert done.status_code == 200, done.text

    async def forgotten() -> bool:
        return await sealer.open(svc.resources.pool, sealed) is None

    await wait_until(forgotten, within=5.0, what="the erased subject's key gone")
