"""The claim grant's deliveries over HTTP (contract cases 16 and 19; O-E, O-G): once the
person typed the code on the claim page (tests/support/v06_claim.py, over HTTP), polls
deliver an access token and an assertion within the allowance, racing polls
included; the slice's rate limits; and the pacing table's
pruning. Real Postgres, NATS and SMTP; the test clock moves time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.crypto.assertions import verify_assertion
from service.crypto.tokens import token_hash
from service.http.bodies import timestamp
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.v06_claim import (
    HINT,
    enter_code,
    link_token,
    poll,
    service_auth,
    start,
)
from tests.support.v06_door import (
    IDENTITY,
    assert_identity_error,
    assert_no_store,
    assert_oauth_error,
    exchange,
    me,
    v06_service,
    written_by,
)


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


async def test_idle_pacing_rows_are_pruned(svc: Service) -> None:
    """`claim_polls` keeps timing only: a poll removes rows idle for more than a day, and
    keeps its own and the recent ones."""
    now = svc.clock.now()
    insert = (
        "INSERT INTO claim_polls (claim_token_hash, tenant_id, last_poll_at, interval_s,"
        " too_fast) VALUES ($1, 'default', $2, 5, false)"
    )
    pool = svc.resources.pool
    await pool.execute(insert, "old", now - timedelta(days=1, seconds=1))
    await pool.execute(insert, "recent", now - timedelta(hours=23))
    claim_token = (await service_auth(svc.client))["claim_token"]
    assert_oauth_error(await poll(svc.client, claim_token), 400, "authorization_pending")
    kept = await pool.fetch("SELECT claim_token_hash FROM claim_polls ORDER BY 1")
    assert sorted(r["claim_token_hash"] for r in kept) == sorted(
        ["recent", token_hash(claim_token)]
    )


async def test_right_code_then_poll_delivers(svc: Service) -> None:
    """Case 16: once the person typed the code, the next poll gives the post-claim scopes and
    an assertion (gen 1, the claimed address) with an ISO `assertion_expires`; it appends
    `claim.delivered` with that token's `credential.issued`; the token works at the API and
    the assertion exchanges for post-claim scopes."""
    body = await service_auth(svc.client)
    claim = body["claim"]
    user_id = await enter_code(
        svc, body["claim_token"], link_token(claim["verification_uri"]), claim["user_code"], HINT
    )
    now = svc.clock.now()
    response = await poll(svc.client, body["claim_token"])
    assert response.status_code == 200, response.text
    assert_no_store(response)
    answer = response.json()
    assert list(answer) == [
        "access_token", "token_type", "expires_in", "scope", "identity_assertion",
        "assertion_expires",
    ]  # fmt: skip
    assert answer["scope"] == " ".join(svc.tenant.post_claim_scopes)
    assert answer["assertion_expires"] == timestamp(now + timedelta(hours=1))
    ctx = await svc.resources.command_context()
    claims = verify_assertion(ctx.keyring, answer["identity_assertion"], issuer=PUBLIC_URL, now=now)
    assert (claims.subject, claims.gen) == (body["registration_id"], 1)
    assert (claims.email, claims.email_verified) == (HINT, True)
    delivered, issued = await written_by(svc, response)
    assert delivered["type"] == "claim.delivered"
    assert issued["type"] == "credential.issued"
    assert delivered["payload"]["credential_id"] == issued["payload"]["credential_id"]
    assert issued["payload"]["issued_via"] == "service_auth"
    assert issued["payload"]["user_id"] == user_id
    seen = await me(svc.client, answer["access_token"])
    assert seen.status_code == 200, seen.text
    assert (seen.json()["user_id"], seen.json()["registration_id"]) == (
        user_id, body["registration_id"],
    )  # fmt: skip
    exchanged = await exchange(svc.client, answer["identity_assertion"])
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["scope"] == " ".join(svc.tenant.post_claim_scopes)


async def test_deliveries_cap(svc: Service) -> None:
    """Case 19 (O-E): a claimed claim token delivers three times, then `invalid_grant`; and
    nothing past the window after the claim, however few it delivered."""
    tokens = []
    for _ in range(2):
        body = await service_auth(svc.client)
        claim = body["claim"]
        uri, code = claim["verification_uri"], claim["user_code"]
        await enter_code(svc, body["claim_token"], link_token(uri), code, HINT)
        tokens.append(body["claim_token"])
    capped, late = tokens
    for _ in range(3):
        assert (await poll(svc.client, capped)).status_code == 200
    assert_oauth_error(await poll(svc.client, capped), 400, "invalid_grant")
    assert await svc.count("claim.delivered") == 3
    svc.clock.advance(timedelta(seconds=svc.tenant.claim_delivery_window))
    assert_oauth_error(await poll(svc.client, late), 400, "invalid_grant")
    assert await svc.count("claim.delivered") == 3


async def test_racing_polls_deliver_within_the_allowance(
    backend: Backend, database_url: str
) -> None:
    """O-E under concurrency: with an allowance of one delivery, polls sent at once deliver
    exactly once (each appends `claim.delivered` at the version it decided on; the losers
    decide again and find the allowance spent)."""
    async with v06_service(backend, database_url, CLAIM_DELIVERIES="1") as one:
        body = await service_auth(one.client)
        claim = body["claim"]
        uri, code = claim["verification_uri"], claim["user_code"]
        await enter_code(one, body["claim_token"], link_token(uri), code, HINT)
        answers = await asyncio.gather(*(poll(one.client, body["claim_token"]) for _ in range(4)))
        assert sorted(a.status_code for a in answers) == [200, 400, 400, 400]
        for refused in (a for a in answers if a.status_code == 400):
            assert_oauth_error(refused, 400, "invalid_grant")
        assert await one.count("claim.delivered") == 1
        assert await one.count("credential.issued") == 1
        row = await one.row("claim_polls", "claim_token_hash", token_hash(body["claim_token"]))
        assert row["interval_s"] == 5 + 3 * 5  # three early polls; a retry paces nothing again


async def test_limits_service_auth_tenant_budget_and_polls_per_address(
    backend: Backend, database_url: str, tmp_path: Path
) -> None:
    """V1 service_auth spends its own tenant budget (and identity_per_ip); V7 counts polls per
    client address, unknown tokens included; V2 spends E5's per-registration bucket, only for
    a known token. 429 `rate_limited` with Retry-After in each family's shape, nothing
    written."""
    limits = tmp_path / "limits.toml"
    limits.write_text(
        '[default]\nservice_auth_per_tenant = "1/h"\npoll_per_ip = "2/h"\n'
        'claim_per_registration = "1/h"\n'
    )
    async with v06_service(backend, database_url, RATE_LIMITS=str(limits)) as limited:
        body = await service_auth(limited.client)
        head = await limited.head()
        refused = await limited.client.post(
            IDENTITY, json={"type": "service_auth", "login_hint": "bo@example.net"}
        )
        assert_identity_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        unknown = "clm_" + "z" * 26
        assert_oauth_error(await poll(limited.client, unknown), 400, "expired_token")
        assert_oauth_error(await poll(limited.client, unknown), 400, "expired_token")
        over = await poll(limited.client, body["claim_token"])
        assert_oauth_error(over, 429, "rate_limited")
        assert int(over.headers["retry-after"]) > 0
        assert await limited.head() == head
        for _ in range(2):  # a made-up token spends nothing of a registration's budget
            assert_identity_error(
                await start(limited.client, unknown, email=HINT), 401, "invalid_claim_token"
            )
        assert (await start(limited.client, body["claim_token"], email=HINT)).status_code == 200
        head = await limited.head()
        again = await start(limited.client, body["claim_token"], email=HINT)
        assert_identity_error(again, 429, "rate_limited")
        assert await limited.head() == head
