"""One ledger behind two doors (docs/design/v06-dialect.md, section 8): what one door records,
the other door's revocation reaches, and an auditor reads both doors in one history. Over
HTTP against real Postgres, NATS and SMTP; the default tenant opens both doors, and the e2e
autouse fixture checks `replay --verify` after each test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.test_v06_id_jag import jag as v06_jag
from tests.e2e.test_v06_id_jag import served
from tests.support.app_client import PUBLIC_URL, Service, link_token_of, otp_of
from tests.support.audit import run_authledger
from tests.support.backends import Backend
from tests.support.id_jag import jag, me, registered
from tests.support.idp import IdentityProvider
from tests.support.serve_process import SECRETS, authledger_env
from tests.support.v06_door import token_for
from tests.support.v06_events import (
    assert_accepted,
    mint_set,
    notify,
    set_service,
)

EMAIL = "ana@example.net"  # the test provider's address for its subject "ana"


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with set_service(backend, database_url, idp) as running:
        yield running


async def claimed_anonymous(svc: Service, email: str) -> dict[str, Any]:
    """A v1 anonymous registration claimed by the person at `email` (E4, E5, E7, E8); the E4
    answer (its key, re-scoped by the claim)."""
    registered_v1 = await svc.anonymous()
    claim_token = registered_v1["claim_token"]
    started = await svc.client.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": email}
    )
    assert started.status_code == 200, started.text
    link_token = link_token_of(await svc.mail(1))
    page = await svc.client.post(
        "/agent/auth/claim/attempt/challenge", data={"claim_attempt_token": link_token}
    )
    done = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp_of(page.text)}
    )
    assert done.status_code == 200, done.text
    return registered_v1


async def test_v06_set_revokes_v1_id_jag_not_the_claimed_anonymous(
    svc: Service, idp: IdentityProvider, backend: Backend, database_url: str
) -> None:
    """A person claims an anonymous v1 registration; their provider's subject registers at
    v1 with an ID-JAG (linked to the same user by the verified address) and exchanges an
    assertion at v0.6. A v0.6 SET for that subject ends the ID-JAG credential and the v0.6
    token, not the anonymous registration's key (no SET path for it, O-R). The user's audit
    timeline (`authledger audit timeline user`) holds both doors' events in log order, each
    with its door and dialect."""
    anonymous = await claimed_anonymous(svc, EMAIL)
    user_id = (await me(svc, anonymous["credential"])).json()["user_id"]
    id_jag = await registered(svc, jag(svc, idp, sub="ana"))
    assert (await me(svc, id_jag["credential"])).json()["user_id"] == user_id
    v06 = await served(svc, v06_jag(svc, idp, sub="ana"))  # the same subject at V1 (v0.6)
    assert v06["registration_id"] == id_jag["registration_id"]
    v06_token = await token_for(svc.client, v06["identity_assertion"])
    assert_accepted(await notify(svc, mint_set(svc, idp, sub="ana")))
    assert (await me(svc, id_jag["credential"])).status_code == 401
    assert (await me(svc, v06_token)).status_code == 401
    kept = await me(svc, anonymous["credential"])
    assert kept.status_code == 200
    assert kept.json()["user_id"] == user_id
    row = await svc.row("registrations", "user_id", user_id)
    assert row["status"] == "claimed"
    assert await svc.count("registration.revoked") == 0
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_PUBLIC_URL=PUBLIC_URL,
                         **SECRETS)  # fmt: skip
    status, out, err = await run_authledger(["audit", "timeline", "user", user_id], env)
    assert status == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["position"] for e in entries] == sorted(e["position"] for e in entries)
    doors = {(e["door"], e["dialect"]) for e in entries}
    assert doors == {("v1", "0.1.0"), ("v06", "0.6.0")}, doors
    by_door = [(e["type"], e["door"]) for e in entries]
    assert ("registration.claimed", "v1") in by_door
    assert ("delegation.created", "v1") in by_door
    assert ("delegation.revoked", "v06") in by_door
    v06_entries = [e for e in entries if e["door"] == "v06"]
    assert [e["type"] for e in v06_entries] == [
        "delegation.used", "credential.issued", "delegation.revoked", "credential.revoked",
        "credential.revoked",
    ]  # fmt: skip
    assert all(e["actor"] == f"provider:{idp.issuer}" for e in v06_entries[2:])
