"""The v0.6 door's AuthKit profile over HTTP (contract [PR28]; docs/design/v06-dialect.md
section 12), against real Postgres, NATS and SMTP: nested bodies, the person who signs in,
presses Authorize and reads the code off the page, the agent that completes the claim with it,
rotating refresh tokens (a rotated one used again ends its family), revocation. Refusals and
the per-tenant setting: test_v06_authkit_refusals.py; ID-JAGs: test_v06_authkit_id_jag.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from subscriber.wire import public_keys, verify
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, Service
from tests.support.authkit import (
    CLAIM,
    IDENTITY,
    authkit_service,
    authorize,
    browser_of,
    complete,
    refresh,
    register,
    sign_in_at,
)
from tests.support.backends import Backend
from tests.support.v06_door import (
    assert_identity_error,
    assert_no_store,
    exchange,
    me,
    revoke,
    token_for,
    written_by,
)

HINT = "ana@example.net"
DIALECT = "0.6.0+authkit"
ACME_URL = "https://auth.acme.example"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with authkit_service(backend, database_url) as service:
        yield service


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def return_to(verification_uri: str) -> str:
    return parse_qs(urlsplit(verification_uri).query)["return_to"][0]


async def test_anonymous_upgrade_confirm_complete_refresh_reuse(svc: Service) -> None:
    """The whole [PR28] sequence: anonymous (nested, an assertion for api.read), the upgrade
    at V2 (an attempt, no code for the agent), complete before the person acts (409), the
    person signs in and sees the code, a wrong code (401, counted), the right one (the claim,
    the pre-claim token ended, the first refresh token), once; a refresh rotates; the rotated
    token used again is refused and ends the live one; every event says dialect
    0.6.0+authkit; the revocation feed announces the refresh tokens' ends with their kind."""
    made = await svc.client.post(IDENTITY, json={"type": "anonymous"})
    assert made.status_code == 200, made.text
    assert_no_store(made)
    body = made.json()
    assert set(body) == {"id", "type", "identity", "scopes", "claim"}
    assert body["type"] == "anonymous"
    assert body["id"].startswith("reg_")
    assert set(body["identity"]) == {"assertion", "expires_at"}
    assert body["scopes"] == {"pre_claim": ["api.read"], "post_claim": ["api.read", "api.write"]}
    assert set(body["claim"]) == {"token", "expires_at", "url"}
    assert body["claim"]["url"] == f"{PUBLIC_URL}{CLAIM}"
    [created] = await written_by(svc, made)
    assert created["payload"]["dialect"] == "v06"
    assert created["metadata"]["dialect"] == DIALECT
    pre_claim = await token_for(svc.client, body["identity"]["assertion"])
    assert (await me(svc.client, pre_claim)).json()["scopes"] == ["api.read"]
    claim_token = body["claim"]["token"]

    upgrade = await svc.client.post(
        body["claim"]["url"].removeprefix(PUBLIC_URL),
        json={"type": "service_auth", "claim_token": claim_token, "login_hint": HINT},
    )
    assert upgrade.status_code == 200, upgrade.text
    opened = upgrade.json()
    assert set(opened) == {"id", "type", "attempt"}
    assert opened["id"] == body["id"]
    assert set(opened["attempt"]) == {"verification_uri", "expires_at"}
    uri = opened["attempt"]["verification_uri"]
    assert uri.startswith(f"{PUBLIC_URL}/login?return_to=")
    assert return_to(uri).startswith("/claim/confirm?claim_attempt_token=cvt_")
    started = await written_by(svc, upgrade)
    assert types(started) == ["claim.attempt_started"]  # no code until the person confirms
    assert started[0]["payload"]["ceremony"] == "confirm"

    early = await complete(svc.client, claim_token, "123456")
    assert_identity_error(early, 409, "claim_not_confirmed")
    assert await written_by(svc, early) == []

    async with browser_of(svc) as browser:
        page = await sign_in_at(svc, browser, uri, HINT)
        assert page.status_code == 200, page.text
        assert "Authorize" in page.text
        assert 'id="user_code"' not in page.text
        assert "<script" not in page.text
        code = await authorize(browser, page)
    confirmed = await svc.resources.pool.fetchrow(
        "SELECT payload->>'confirmed_by' AS by, metadata->>'actor' AS actor,"
        " metadata->>'dialect' AS dialect FROM events"
        " WHERE type = 'claim.otp_issued' ORDER BY position DESC LIMIT 1"
    )
    assert confirmed is not None
    assert tuple(confirmed) == ("email_link", "user", DIALECT)

    wrong = await complete(svc.client, claim_token, "000000" if code != "000000" else "111111")
    assert_identity_error(wrong, 401, "invalid_user_code")
    assert types(await written_by(svc, wrong)) == ["claim.otp_failed"]

    done = await complete(svc.client, claim_token, code)
    assert done.status_code == 200, done.text
    assert_no_store(done)
    claimed = done.json()
    assert set(claimed) == {"id", "status", "identity"}
    assert (claimed["id"], claimed["status"]) == (body["id"], "claimed")
    assert set(claimed["identity"]) == {"assertion", "expires_at", "refresh_token"}
    first = claimed["identity"]["refresh_token"]
    assert set(first) == {"value", "expires_at"}
    assert first["value"].startswith("rt_")
    events = await written_by(svc, done)
    assert sorted(types(events)) == sorted(
        ["registration.claimed", "user.created", "credential.revoked", "credential.issued"]
    )
    by_type = {e["type"]: e for e in events}
    assert by_type["credential.revoked"]["payload"]["reason"] == "claimed"
    issued = by_type["credential.issued"]["payload"]
    assert (issued["kind"], issued["issued_via"]) == ("refresh_token", "anonymous")
    claim_event = by_type["registration.claimed"]["payload"]
    assert claim_event["credential_id"] == issued["credential_id"]
    assert claim_event["auth_method"] == "email_link"
    assert {e["metadata"]["dialect"] for e in events} == {DIALECT}

    assert (await me(svc.client, pre_claim)).status_code == 401  # O-F
    again = await complete(svc.client, claim_token, code)
    assert_identity_error(again, 409, "already_claimed")
    assert await written_by(svc, again) == []
    post_claim = await token_for(svc.client, claimed["identity"]["assertion"])
    assert (await me(svc.client, post_claim)).json()["scopes"] == ["api.read", "api.write"]
    assert (await me(svc.client, first["value"])).status_code == 401  # never a bearer

    rotated = await refresh(svc.client, first["value"])
    assert rotated.status_code == 200, rotated.text
    answer = rotated.json()
    assert (answer["id"], answer["type"]) == (body["id"], "refresh")
    second = answer["identity"]["refresh_token"]["value"]
    assert second != first["value"]
    assert (await exchange(svc.client, answer["identity"]["assertion"])).status_code == 200
    rotation = await written_by(svc, rotated)
    assert types(rotation) == ["credential.revoked", "credential.issued"]
    assert rotation[0]["payload"]["reason"] == "rotated"

    reused = await refresh(svc.client, first["value"])
    assert_identity_error(reused, 400, "invalid_refresh_token")
    ended = await written_by(svc, reused)
    assert [(e["type"], e["payload"]["reason"]) for e in ended] == [
        ("credential.revoked", "refresh_reuse")
    ]
    dead = await refresh(svc.client, second)  # the family is over
    assert_identity_error(dead, 400, "invalid_refresh_token")
    assert await written_by(svc, dead) == []
    feed = await svc.client.get("/admin/revocations", headers=ADMIN)
    assert feed.status_code == 200, feed.text
    jwks = public_keys((await svc.client.get("/.well-known/jwks.json")).json())
    announced = [verify(entry["signed"], jwks) for entry in feed.json()["revocations"]]
    assert [(c.credential_kind, c.reason) for c in announced] == [
        ("access_token", "revoked:claimed"),
        ("refresh_token", "revoked:rotated"),
        ("refresh_token", "revoked:refresh_reuse"),
    ]


async def test_service_auth_nested_wrong_account_and_revocation(svc: Service) -> None:
    """service_auth: nested, the attempt in `claim`, no code, no assertion; a bad hint is 400
    `invalid_login_hint`; signed in as another address the page and its form are 403; the
    right person's claim gives a refresh token, which /oauth2/revoke ends (then refresh is
    refused, writing nothing)."""
    bad = await svc.client.post(IDENTITY, json={"type": "service_auth", "login_hint": "ana"})
    assert_identity_error(bad, 400, "invalid_login_hint")
    assert await written_by(svc, bad) == []
    body = await register(svc.client, type="service_auth", login_hint=HINT)
    assert set(body) == {"id", "type", "scopes", "claim"}
    assert body["scopes"] == {"pre_claim": [], "post_claim": ["api.read", "api.write"]}
    assert set(body["claim"]) == {"token", "expires_at", "url", "attempt"}
    assert "user_code" not in str(body)
    uri = body["claim"]["attempt"]["verification_uri"]

    async with browser_of(svc) as stranger:
        page = await sign_in_at(svc, stranger, uri, "eve@example.net")
        assert page.status_code == 403, page.text
    async with browser_of(svc) as person:
        page = await sign_in_at(svc, person, uri, HINT.upper())  # the address, any case
        code = await authorize(person, page)
        shown_again = await person.get(path_of_uri(page))
        assert shown_again.status_code == 200
    done = await complete(svc.client, body["claim"]["token"], code)
    assert done.status_code == 200, done.text
    token = done.json()["identity"]["refresh_token"]["value"]
    revoked = await revoke(svc.client, token)
    assert revoked.status_code == 200
    assert [e["payload"]["reason"] for e in await written_by(svc, revoked)] == ["agent"]
    refused = await refresh(svc.client, token)
    assert_identity_error(refused, 400, "invalid_refresh_token")
    assert await written_by(svc, refused) == []


def path_of_uri(response: Any) -> str:
    url = response.url
    return f"{url.path}?{url.query.decode()}"


async def claimed_refresh_token(svc: Service) -> str:
    """A service_auth registration claimed through the page: its first refresh token."""
    body = await register(svc.client, type="service_auth", login_hint=HINT)
    async with browser_of(svc) as person:
        page = await sign_in_at(svc, person, body["claim"]["attempt"]["verification_uri"], HINT)
        code = await authorize(person, page)
    done = await complete(svc.client, body["claim"]["token"], code)
    assert done.status_code == 200, done.text
    token: str = done.json()["identity"]["refresh_token"]["value"]
    return token


async def test_two_refreshes_with_one_token_end_the_family(svc: Service) -> None:
    """The same refresh token presented twice at once (a copy racing the agent): one rotates,
    the other finds it rotated, so the family's live token (the winner's) ends too; neither
    token refreshes afterwards."""
    token = await claimed_refresh_token(svc)
    answers = await asyncio.gather(refresh(svc.client, token), refresh(svc.client, token))
    assert sorted(a.status_code for a in answers) == [200, 400]
    [won] = [a for a in answers if a.status_code == 200]
    [lost] = [a for a in answers if a.status_code == 400]
    assert_identity_error(lost, 400, "invalid_refresh_token")
    reasons = [e["payload"]["reason"] for e in await written_by(svc, lost)]
    assert reasons == ["refresh_reuse"]
    winner = won.json()["identity"]["refresh_token"]["value"]
    assert_identity_error(await refresh(svc.client, winner), 400, "invalid_refresh_token")
