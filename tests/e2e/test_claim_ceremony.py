"""The claim ceremony's pages, refusals and abuse limits (spec §6, §9, §10): E5 to E8 over
HTTP, codes read from the page a person sees after following the e-mailed link."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.support.app_client import (
    PUBLIC_URL,
    Service,
    form_of,
    link_of,
    link_token_of,
    otp_of,
    running_service,
)
from tests.support.backends import Backend

EMAIL = "ana.lopez@example.net"
OTHER = "bo@example.org"
VIEW = "/agent/auth/claim/view"
CHALLENGE = "/agent/auth/claim/attempt/challenge"
COMPLETE = "/agent/auth/claim/complete"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as service:
        yield service


async def start(svc: Service, claim_token: str, email: str = EMAIL) -> httpx.Response:
    return await svc.client.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": email}
    )


async def complete(svc: Service, claim_token: str, otp: str) -> httpx.Response:
    return await svc.client.post(COMPLETE, json={"claim_token": claim_token, "otp": otp})


async def mint(svc: Service, link_token: str) -> httpx.Response:
    """The page's button, as the browser posts it."""
    return await svc.client.post(CHALLENGE, data={"claim_attempt_token": link_token})


def refused(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    return response.status_code, body["error"]


def wrong(otp: str) -> str:
    return f"{(int(otp) + 1) % 1_000_000:06d}"


async def claimed_anonymous(svc: Service, email: str = EMAIL) -> tuple[dict[str, Any], str]:
    """An anonymous registration with a started claim; (E4 answer, link token from mail 1)."""
    registered = await svc.anonymous()
    assert (await start(svc, registered["claim_token"], email)).status_code == 200
    return registered, link_token_of(await svc.mail(1))


async def test_the_page_mints_nothing_and_is_locked_down(svc: Service) -> None:
    """GET the link: 200 HTML naming the (escaped) address and registration, a form posting
    to E7, no-store, strict CSP, no framing, no referrer; no code exists until the POST."""
    email = "o'brien&co@example.net"
    registered, link_token = await claimed_anonymous(svc, email)
    page = await svc.client.get(VIEW, params={"token": link_token})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script" not in csp
    assert "<script" not in page.text
    assert "o&#x27;brien&amp;co@example.net" in page.text
    assert email not in page.text
    assert registered["registration_id"] in page.text
    assert form_of(page.text) == (
        f"{PUBLIC_URL}{CHALLENGE}",
        "claim_attempt_token",
        link_token,
    )
    for _ in range(3):  # reloading (or a link scanner) still mints nothing
        assert (await svc.client.get(VIEW, params={"token": link_token})).status_code == 200
    assert await svc.count("claim.otp_issued") == 0


async def test_the_page_refuses_missing_unknown_and_expired_links(svc: Service) -> None:
    """E6: no token 400, unknown or replaced link 404 "not valid", window over 410 "ask the
    agent"; every refusal is an HTML page with the same protective headers."""
    registered, link_token = await claimed_anonymous(svc)
    missing = await svc.client.get(VIEW)
    assert missing.status_code == 400
    unknown = await svc.client.get(VIEW, params={"token": "cvt_" + "A" * 32})
    assert unknown.status_code == 404
    assert "This link is not valid" in unknown.text
    svc.clock.advance(timedelta(seconds=601))
    expired = await svc.client.get(VIEW, params={"token": link_token})
    assert expired.status_code == 410
    assert "Ask the agent for a new claim" in expired.text
    assert (await start(svc, registered["claim_token"], OTHER)).status_code == 200
    replaced = await svc.client.get(VIEW, params={"token": link_token})
    assert replaced.status_code == 404
    for page in (missing, unknown, expired, replaced):
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_the_used_link_says_already_claimed(svc: Service) -> None:
    """After the claim, E6 and E7 on the link that claimed answer 409 "Already claimed", not
    "not valid"; an older, replaced link of the same registration stays "not valid"."""
    registered, replaced = await claimed_anonymous(svc)
    assert (await start(svc, registered["claim_token"], OTHER)).status_code == 200
    link_token = link_token_of(await svc.mail(2))
    otp = otp_of((await mint(svc, link_token)).text)
    assert (await complete(svc, registered["claim_token"], otp)).status_code == 200
    for page in (
        await svc.client.get(VIEW, params={"token": link_token}),
        await mint(svc, link_token),
    ):
        assert page.status_code == 409
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "Already claimed" in page.text
        assert "This agent is already linked" in page.text
        assert "not valid" not in page.text
    as_json = await svc.client.post(CHALLENGE, json={"claim_attempt_token": link_token})
    assert refused(as_json) == (409, "claim_completed")
    old = await svc.client.get(VIEW, params={"token": replaced})
    assert old.status_code == 404
    assert "This link is not valid" in old.text
    assert await svc.count("claim.otp_issued") == 1


async def test_challenge_answers_json_and_each_code_replaces_the_last(svc: Service) -> None:
    """E7 with JSON: {type: otp, challenge: 6 digits, expires_at}, no-store; a new code makes
    the previous one wrong, and the newest one claims."""
    registered, link_token = await claimed_anonymous(svc)
    first = await svc.client.post(CHALLENGE, json={"claim_attempt_token": link_token})
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert set(body) == {"type", "challenge", "expires_at"}
    assert body["type"] == "otp"
    assert re.fullmatch(r"[0-9]{6}", body["challenge"])
    second = otp_of((await mint(svc, link_token)).text)
    if second != body["challenge"]:  # one chance in a million that both codes are equal
        assert refused(await complete(svc, registered["claim_token"], body["challenge"])) == (
            401,
            "otp_invalid",
        )
    assert (await complete(svc, registered["claim_token"], second)).status_code == 200


async def test_start_claim_refusals(svc: Service) -> None:
    """E5: unknown token 401, an email registration 409, a claimed one 409, a registration
    past its TTL 410; the same address inside the window echoes the attempt, no new mail."""
    assert refused(await start(svc, "clm_" + "x" * 26)) == (401, "invalid_claim_token")
    by_email = await svc.verified_email(EMAIL)
    assert refused(await start(svc, by_email["claim_token"])) == (409, "claimed_or_in_flight")

    registered = await svc.anonymous()
    first = (await start(svc, registered["claim_token"])).json()
    echo = (await start(svc, registered["claim_token"], EMAIL.upper())).json()
    assert echo["claim_attempt_id"] == first["claim_attempt_id"]
    assert len(await svc.sink.wait_for(2)) == 2  # the email registration's and E5's
    assert await svc.count("claim.attempt_started") == 2
    svc.clock.advance(timedelta(days=1, seconds=1))
    assert refused(await start(svc, registered["claim_token"])) == (410, "claim_expired")


async def test_challenge_refusals(svc: Service) -> None:
    """E7: a replaced link 410 claim_superseded, a link past its window 410 claim_expired,
    the 11th code of one link 429 rate_limited with Retry-After (JSON and page alike)."""
    registered, link_token = await claimed_anonymous(svc)
    for _ in range(10):
        assert (await mint(svc, link_token)).status_code == 200
    page = await mint(svc, link_token)
    assert page.status_code == 429
    assert page.headers["retry-after"].isdigit()
    assert "Too many codes" in page.text
    as_json = await svc.client.post(CHALLENGE, json={"claim_attempt_token": link_token})
    assert refused(as_json) == (429, "rate_limited")
    assert int(as_json.headers["retry-after"]) > 0

    svc.clock.advance(timedelta(seconds=601))
    as_json = await svc.client.post(CHALLENGE, json={"claim_attempt_token": link_token})
    assert refused(as_json) == (410, "claim_expired")
    assert (await mint(svc, link_token)).status_code == 410

    assert (await start(svc, registered["claim_token"], OTHER)).status_code == 200
    as_json = await svc.client.post(CHALLENGE, json={"claim_attempt_token": link_token})
    assert refused(as_json) == (410, "claim_superseded")
    page = await mint(svc, link_token)
    assert page.status_code == 410
    assert "This link is not valid" in page.text


async def test_complete_refusals(svc: Service) -> None:
    """E8: unknown token 401, no code yet 400, wrong code 401, stale code 410, registration
    past its TTL 410."""
    registered, link_token = await claimed_anonymous(svc)
    claim_token = registered["claim_token"]
    assert refused(await complete(svc, "clm_" + "y" * 26, "123456")) == (
        401,
        "invalid_claim_token",
    )
    assert refused(await complete(svc, claim_token, "123456")) == (400, "otp_not_generated")
    otp = otp_of((await mint(svc, link_token)).text)
    assert refused(await complete(svc, claim_token, wrong(otp))) == (401, "otp_invalid")
    svc.clock.advance(timedelta(seconds=601))
    assert refused(await complete(svc, claim_token, otp)) == (410, "otp_expired")
    svc.clock.advance(timedelta(days=1))
    assert refused(await complete(svc, claim_token, otp)) == (410, "claim_expired")


async def test_five_wrong_codes_void_the_code(svc: Service) -> None:
    """§6.4: after 5 misses the right code fails with 410 otp_expired; a new code works."""
    registered, link_token = await claimed_anonymous(svc)
    claim_token = registered["claim_token"]
    otp = otp_of((await mint(svc, link_token)).text)
    for _ in range(5):
        assert refused(await complete(svc, claim_token, wrong(otp))) == (401, "otp_invalid")
    voided = await complete(svc, claim_token, otp)
    assert refused(voided) == (410, "otp_expired")
    assert "too many attempts" in voided.json()["message"]
    fresh = otp_of((await mint(svc, link_token)).text)
    assert (await complete(svc, claim_token, fresh)).status_code == 200


async def test_twenty_misses_lock_the_registration(svc: Service) -> None:
    """§6.4: 20 misses across codes lock the attempt and expire the registration: the right
    code, the link and a new claim are all refused afterwards."""
    registered, link_token = await claimed_anonymous(svc)
    claim_token = registered["claim_token"]
    otp = ""
    for _ in range(4):
        otp = otp_of((await mint(svc, link_token)).text)
        for _ in range(5):
            assert refused(await complete(svc, claim_token, wrong(otp))) == (401, "otp_invalid")
    assert await svc.count("claim.attempt_locked") == 1
    assert await svc.count("registration.expired") == 1
    assert await svc.count("credential.revoked") == 1  # the pre-claim key ends with it
    key = await svc.client.get(
        "/api/me", headers={"Authorization": f"Bearer {registered['credential']}"}
    )
    assert key.status_code == 401
    assert refused(await complete(svc, claim_token, otp)) == (410, "claim_expired")
    assert (await svc.client.get(VIEW, params={"token": link_token})).status_code == 404
    assert refused(await start(svc, claim_token, OTHER)) == (410, "claim_expired")


async def test_a_superseded_attempts_code_fails(svc: Service) -> None:
    """R3 [OURS]: a new claim (another address) voids the old code and link (W5)."""
    registered, link_token = await claimed_anonymous(svc)
    claim_token = registered["claim_token"]
    old = otp_of((await mint(svc, link_token)).text)
    assert (await start(svc, claim_token, OTHER)).status_code == 200
    assert refused(await complete(svc, claim_token, old)) == (400, "otp_not_generated")
    new_mail = await svc.mail(2)
    assert new_mail.rcpt_tos == (OTHER,)
    new = otp_of((await svc.press_button(await svc.client.get(link_of(new_mail)))).text)
    if new != old:
        assert refused(await complete(svc, claim_token, old)) == (401, "otp_invalid")
    assert (await mint(svc, link_token)).status_code == 410
    assert (await complete(svc, claim_token, new)).status_code == 200


async def test_two_concurrent_completes_claim_once(svc: Service) -> None:
    """§6.6: two simultaneous E8s with the right code: one 200 with the credential, one 409
    previously_claimed; exactly one credential is issued."""
    registered = await svc.verified_email(EMAIL)
    page = await svc.client.get(link_of(await svc.mail(1)))
    otp = otp_of((await svc.press_button(page)).text)
    answers = await asyncio.gather(
        complete(svc, registered["claim_token"], otp),
        complete(svc, registered["claim_token"], otp),
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.json()["error"] == "previously_claimed"
    assert "credential" in next(a for a in answers if a.status_code == 200).json()
    assert await svc.count("credential.issued") == 1
    assert await svc.count("registration.claimed") == 1
