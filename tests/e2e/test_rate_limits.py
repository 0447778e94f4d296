"""Spec §10 rate limits over HTTP, the way agents and providers meet them: 429 `rate_limited`
with Retry-After and nothing written, per IP then per tenant on E4 by flow, per registration
and per target email on E5, per verified issuer on E9, shared with a second real process, and
the fail policy when the limiter's table is really gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.http.app import create_app
from service.tenancy.config import ID_JAG
from tests.support.app_client import (
    PUBLIC_URL,
    Service,
    running_service,
    settings_for,
)
from tests.support.backends import Backend
from tests.support.id_jag import LOGOUT, jag, trust
from tests.support.idp import IdentityProvider
from tests.support.serve_process import SECRETS, authledger_env, serving

ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
OTHER_IP = "203.0.113.9"


def verified_email(address: str) -> dict[str, str]:
    return {"type": "identity_assertion", "assertion_type": "verified_email",
            "assertion": address, "requested_credential_type": "access_token"}  # fmt: skip


def limits_file(tmp_path: Path, **limits: str) -> str:
    path = tmp_path / "limits.toml"
    lines = "".join(f'{name} = "{rate}"\n' for name, rate in limits.items())
    path.write_text("[default]\n" + lines)
    return str(path)


def assert_rate_limited(response: httpx.Response) -> int:
    """429 `rate_limited`, not cached, with a whole-seconds Retry-After; returns it."""
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited"
    assert response.headers["cache-control"] == "no-store"
    wait = int(response.headers["retry-after"])
    assert wait >= 1
    return wait


def client_at(svc: Service, backend: Backend, database_url: str, ip: str) -> httpx.AsyncClient:
    """Another client address on the same service (same resources, so the same limiter)."""
    app = create_app(settings_for(backend, database_url), resources=svc.resources)
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)


async def register(client: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    return await client.post("/agent/auth", json=body)


async def claim(svc: Service, claim_token: str, email: str) -> httpx.Response:
    return await svc.client.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": email}
    )


async def mails_out(svc: Service, sent: int) -> int:
    """Wait until `sent` mails reached the sink; the outbox rows ever queued."""
    await svc.mail(sent)
    return int(await svc.resources.pool.fetchval("SELECT count(*) FROM mail_outbox"))


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


async def test_the_sixth_anonymous_registration_in_an_hour_is_refused(
    backend: Backend, database_url: str
) -> None:
    """5/h per IP: the 6th writes nothing and says when to come back; another address still
    registers; once Retry-After has passed, the first address registers again."""
    async with running_service(backend, database_url, RATE_LIMITS="on") as svc:
        for _ in range(5):
            await svc.anonymous()
        head = await svc.head()
        wait = assert_rate_limited(await register(svc.client, ANONYMOUS))
        assert wait <= 2 * 3_600
        assert await svc.head() == head
        assert await svc.count("registration.created") == 5
        async with client_at(svc, backend, database_url, OTHER_IP) as other:
            assert (await register(other, ANONYMOUS)).status_code == 200
        svc.clock.advance(timedelta(seconds=wait - 1))
        assert_rate_limited(await register(svc.client, ANONYMOUS))
        svc.clock.advance(timedelta(seconds=1))
        assert (await register(svc.client, ANONYMOUS)).status_code == 200


async def test_the_tenant_limit_binds_every_address(
    backend: Backend, database_url: str, tmp_path: Path
) -> None:
    """Per IP first, then per tenant: new addresses get through only until the tenant's
    budget is spent; a refusal spends nothing."""
    limits = limits_file(tmp_path, anonymous_per_ip="2/h", anonymous_per_tenant="3/h")
    async with running_service(backend, database_url, RATE_LIMITS=limits) as svc:
        await svc.anonymous()
        await svc.anonymous()
        refused = await register(svc.client, ANONYMOUS)
        assert_rate_limited(refused)
        assert "from this address" in refused.json()["message"]
        async with client_at(svc, backend, database_url, OTHER_IP) as other:
            assert (await register(other, ANONYMOUS)).status_code == 200
            at_tenant = await register(other, ANONYMOUS)
        assert_rate_limited(at_tenant)
        assert "at this service" in at_tenant.json()["message"]
        assert await svc.count("registration.created") == 3
        assert svc.resources.limiter.counts["refused.anonymous_per_tenant"] == 1
        assert await scraped(svc, "refused.anonymous_per_ip") == 1
        assert await scraped(svc, "admitted") == 3


async def test_both_identity_assertion_kinds_share_one_budget(
    backend: Backend, database_url: str, tmp_path: Path, idp: IdentityProvider
) -> None:
    """verified_email and ID-JAG share identity_assertion's per-IP budget (§10's numbers),
    apart from anonymous (their tenant budgets are their own: tests/security/
    test_mail_bombing.py); a refused ID-JAG writes nothing."""
    limits = limits_file(tmp_path, identity_per_ip="3/h")
    async with running_service(
        backend, database_url, RATE_LIMITS=limits, JWKS_ALLOW_LOOPBACK_HTTP="true"
    ) as svc:
        await trust(svc, idp)
        assert (await register(svc.client, verified_email("ana@example.net"))).status_code == 200
        assert (await register(svc.client, verified_email("bob@example.net"))).status_code == 200
        id_jag = {"type": "identity_assertion", "assertion_type": ID_JAG,
                  "requested_credential_type": "api_key"}  # fmt: skip
        assertion = {**id_jag, "assertion": jag(svc, idp)}
        assert (await register(svc.client, assertion)).status_code == 200, "the third"
        head = await svc.head()
        assert_rate_limited(await register(svc.client, {**id_jag, "assertion": jag(svc, idp)}))
        assert_rate_limited(await register(svc.client, verified_email("cy@example.net")))
        assert await svc.head() == head
        assert (await register(svc.client, ANONYMOUS)).status_code == 200


async def test_claims_are_limited_per_registration(backend: Backend, database_url: str) -> None:
    """E5 3/h per registration: a 4th claim (a new address each time) writes and mails
    nothing; another registration still claims."""
    async with running_service(backend, database_url, RATE_LIMITS="on") as svc:
        token = (await svc.anonymous())["claim_token"]
        for n in range(3):
            assert (await claim(svc, token, f"person{n}@example.net")).status_code == 200
        head = await svc.head()
        assert_rate_limited(await claim(svc, token, "person3@example.net"))
        assert await svc.head() == head
        assert await svc.count("claim.attempt_started") == 3
        other = (await svc.anonymous())["claim_token"]
        assert (await claim(svc, other, "person3@example.net")).status_code == 200
        assert await mails_out(svc, 4) == 4


async def test_claims_are_limited_per_target_email(backend: Backend, database_url: str) -> None:
    """E5 3/h per address, whatever its letter case, across registrations; a made-up claim
    token spends nothing of the address's budget (401, not 429)."""
    async with running_service(backend, database_url, RATE_LIMITS="on") as svc:
        tokens = [(await svc.anonymous())["claim_token"] for _ in range(4)]
        for _ in range(5):
            made_up = await claim(svc, "clm_" + "x" * 26, "ana@example.net")
            assert made_up.json()["error"] == "invalid_claim_token"
        for n, address in enumerate(["ana@example.net", "Ana@Example.net", "ANA@example.net"]):
            assert (await claim(svc, tokens[n], address)).status_code == 200
        head = await svc.head()
        assert_rate_limited(await claim(svc, tokens[3], "ana@EXAMPLE.net"))
        assert await svc.head() == head
        assert (await claim(svc, tokens[3], "bob@example.net")).status_code == 200
        assert await mails_out(svc, 4) == 4


async def test_logout_tokens_are_limited_per_verified_issuer(
    backend: Backend, database_url: str, tmp_path: Path, idp: IdentityProvider
) -> None:
    """E9: forged tokens naming a trusted issuer spend none of its budget; past the limit a
    genuine token is refused without taking effect, and the same token works after
    Retry-After (its jti was not burned)."""
    limits = limits_file(tmp_path, revoke_per_issuer="2/min")
    async with running_service(
        backend, database_url, RATE_LIMITS=limits, JWKS_ALLOW_LOOPBACK_HTTP="true"
    ) as svc:
        await trust(svc, idp)

        async def revoke(token: str) -> httpx.Response:
            return await svc.client.post("/agent/auth/revoke", content=token, headers=LOGOUT)

        def logout(sub: str) -> str:
            return idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now(), sub=sub)

        claims = idp.logout_claims(aud=PUBLIC_URL, now=svc.clock.now(), sub="ana")
        for _ in range(4):
            forged = await revoke(idp.signed_by_stranger(claims, typ="logout+jwt"))
            assert forged.json()["error"] == "invalid_signature"
        assert (await revoke(logout("ana"))).json() == {"revoked": 0}
        assert (await revoke(logout("bob"))).json() == {"revoked": 0}
        third = logout("cy")
        head = await svc.head()
        wait = assert_rate_limited(await revoke(third))
        assert wait <= 120
        assert await svc.head() == head
        svc.clock.advance(timedelta(seconds=wait))
        assert (await revoke(third)).json() == {"revoked": 0}


async def test_limits_are_shared_with_another_process(backend: Backend, database_url: str) -> None:
    """This process and a real `authledger serve` on the same database count together:
    3 here and 2 there from one address, and the 6th is refused by both."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_PUBLIC_URL=PUBLIC_URL, AUTHLEDGER_RATE_LIMITS="on", **SECRETS,
    )  # fmt: skip
    async with (
        running_service(backend, database_url, RATE_LIMITS="on") as svc,
        client_at(svc, backend, database_url, "127.0.0.1") as here,
        serving([], env) as there,
    ):
        for _ in range(3):
            assert (await register(here, ANONYMOUS)).status_code == 200
        for _ in range(2):
            assert (await register(there.http, ANONYMOUS)).status_code == 200
        assert_rate_limited(await register(there.http, ANONYMOUS))
        assert_rate_limited(await register(here, ANONYMOUS))
        assert await svc.count("registration.created") == 5


@pytest.mark.parametrize("failure", ["open", "closed"])
async def test_a_failed_limiter_store_follows_the_configured_policy(
    backend: Backend, database_url: str, owner_database_url: str, failure: str
) -> None:
    """With the limiter's table dropped: `open` registers past the limit, `closed` answers
    429 with Retry-After and writes nothing; either way each failure is counted."""
    async with running_service(
        backend, database_url, RATE_LIMITS="on", RATE_LIMIT_FAILURE=failure
    ) as svc:
        owner = await asyncpg.connect(owner_database_url)  # the runtime may not drop it
        try:
            await owner.execute("DROP TABLE rate_limit_windows")
        finally:
            await owner.close()
        answers: list[Any] = [await register(svc.client, ANONYMOUS) for _ in range(6)]
        if failure == "open":
            assert [a.status_code for a in answers] == [200] * 6
        else:
            assert [assert_rate_limited(a) for a in answers] == [30] * 6
            assert await svc.count("registration.created") == 0
        assert svc.resources.limiter.counts["store_failed"] == 6
        assert await scraped(svc, "store_failed") == 6


async def scraped(svc: Service, result: str) -> float:
    """`authledger_rate_limit_checks_total{result=…}` as /metrics shows it."""
    assert svc.resources.metrics is not None
    text = (await svc.resources.metrics.scrape()).decode()
    prefix = f'authledger_rate_limit_checks_total{{result="{result}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, text
    return float(lines[0].removeprefix(prefix))
