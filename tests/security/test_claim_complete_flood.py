"""Attack (issue 12, finding 1): a stranger holding one claim token floods
`POST /agent/auth/claim/complete` (and the code button) to grow the log without bound.

Before the fix every refusal was a `claim.otp_failed` event, including the ones that change
nothing (claimed, expired, no code, a voided or stale code), and E7/E8 had no rate limit:
301 calls wrote 301 events. Now a refusal that changes nothing writes nothing, misses against
a live code stop at the §6.4 lock, E5/E7 stop at the stream's growth limit, and E7/E8 have
per-address and per-registration limits."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from service.domain.claim import OtpLimits
from tests.support.app_client import Service, link_token_of, otp_of, running_service
from tests.support.backends import Backend

COMPLETE = "/agent/auth/claim/complete"
CHALLENGE = "/agent/auth/claim/attempt/challenge"
FLOOD = 10_000
LIMITS = OtpLimits()
# Every miss up to the lock, the lock and the registration's expiry, the pre-claim key's end.
BOUND = LIMITS.max_registration_misses + 3


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as running:  # rate limits off
        yield running


async def _claim_started(svc: Service) -> tuple[str, str]:
    """An anonymous registration with a claim started: (claim token, link token)."""
    registered = await svc.anonymous()
    started = await svc.client.post(
        "/agent/auth/claim", json={"claim_token": registered["claim_token"], "email": "a@b.test"}
    )
    assert started.status_code == 200, started.text
    return registered["claim_token"], link_token_of(await svc.mail(1))


async def _flood(client: httpx.AsyncClient, claim_token: str, count: int) -> dict[str, int]:
    """`count` completes with made-up codes, 32 at a time; answers by error code."""
    answers: dict[str, int] = {}
    slots = asyncio.Semaphore(32)

    async def one(n: int) -> None:
        async with slots:
            body = {"claim_token": claim_token, "otp": f"{n % 1_000_000:06d}"}
            response = await client.post(COMPLETE, json=body)
        code = response.json().get("error", "ok")
        answers[code] = answers.get(code, 0) + 1

    await asyncio.gather(*(one(n) for n in range(count)))
    return answers


async def test_ten_thousand_completes_without_a_code_write_nothing(svc: Service) -> None:
    """No code minted yet: 10,000 completes answer otp_not_generated and the log does not
    move (it moved by one event per call before)."""
    claim_token, _ = await _claim_started(svc)
    head = await svc.head()
    answers = await _flood(svc.client, claim_token, FLOOD)
    assert answers == {"otp_not_generated": FLOOD}
    assert await svc.head() == head


async def test_ten_thousand_wrong_codes_write_at_most_the_lock(svc: Service) -> None:
    """A live code and 10,000 made-up ones: the misses void the code, the later tries change
    nothing, and the log grows by at most the misses up to the lock (here 5: one code)."""
    claim_token, link_token = await _claim_started(svc)
    minted = await svc.client.post(CHALLENGE, data={"claim_attempt_token": link_token})
    real = otp_of(minted.text)
    head = await svc.head()
    answers = await _flood(svc.client, claim_token, FLOOD)
    written = await svc.head() - head
    assert written <= BOUND
    assert await svc.count("claim.otp_failed") == min(LIMITS.max_code_misses, written)
    guessed = answers.pop("ok", 0)  # one try in 10,000 may be the real code (1 in 10^6 each)
    assert guessed <= 1
    assert set(answers) <= {"otp_invalid", "otp_expired", "previously_claimed"}
    if not guessed:
        assert answers["otp_invalid"] == LIMITS.max_code_misses
        # the real code is voided with the rest: the flood cannot be used to claim later
        late = await svc.client.post(COMPLETE, json={"claim_token": claim_token, "otp": real})
        assert late.json()["error"] == "otp_expired"


async def test_codes_for_one_link_stop_at_the_mint_limit(svc: Service) -> None:
    """The code button pressed 200 times: 10 codes (§6.4), then 429 without an event."""
    _, link_token = await _claim_started(svc)
    head = await svc.head()
    statuses = []
    for _ in range(200):
        page = await svc.client.post(CHALLENGE, data={"claim_attempt_token": link_token})
        statuses.append(page.status_code)
    assert statuses.count(200) == LIMITS.max_mints
    assert statuses.count(429) == 200 - LIMITS.max_mints
    assert await svc.head() - head == LIMITS.max_mints


async def test_e7_and_e8_are_rate_limited_per_address_and_registration(
    backend: Backend, database_url: str
) -> None:
    """With the limits on: completes from one address stop at complete_per_registration
    (30/h) for a real token, made-up tokens stop at complete_per_ip (60/h), and the code
    button stops at code_per_registration (15/h, above the 10 codes the link may mint)."""
    async with running_service(backend, database_url, RATE_LIMITS="on") as svc:
        claim_token, link_token = await _claim_started(svc)
        real = await _flood(svc.client, claim_token, 40)
        assert real == {"otp_not_generated": 30, "rate_limited": 10}
        invented = await _flood(svc.client, "clm_madeupmadeupmadeupmadeup00", 40)
        assert invented == {"invalid_claim_token": 30, "rate_limited": 10}  # 60/h per address
        refused = await svc.client.post(
            COMPLETE, json={"claim_token": claim_token, "otp": "000000"}
        )
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        pages = [
            await svc.client.post(CHALLENGE, data={"claim_attempt_token": link_token})
            for _ in range(16)
        ]
        statuses = [p.status_code for p in pages]
        assert statuses.count(200) == LIMITS.max_mints
        assert statuses[-1] == 429
        assert re.search(r"Too many codes", pages[-1].text)
