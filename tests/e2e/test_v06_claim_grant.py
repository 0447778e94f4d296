"""The agent's half of the v0.6 claim ceremony over HTTP (contract cases 9-12, 20, 21;
docs/design/v06-dialect.md, slice S3a): V1 service_auth hands the agent a `user_code` and a
`verification_uri`, V2 opens a new attempt, and the claim grant at /oauth2/token (V7) is
polled with RFC 8628's answers until the claim delivers a token and an assertion. Where a
test needs the code typed or denied, the person signs in and uses the claim page over HTTP
(tests/support/v06_claim.py); the pages themselves are test_v06_pages.py's, deliveries in
detail test_v06_claim_delivery.py's. Real Postgres, NATS and SMTP; the test clock moves time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from service.crypto.tokens import (
    token_hash,
)
from service.http.bodies import timestamp
from service.signin.return_to import safe_return_to
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.v06_claim import (
    HINT,
    deny,
    enter_code,
    link_token,
    poll,
    refused_code,
    service_auth,
    start,
)
from tests.support.v06_door import (
    IDENTITY,
    assert_identity_error,
    assert_no_store,
    assert_oauth_error,
    identify,
    me,
    token_for,
    v06_service,
    written_by,
)


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


async def test_service_auth_hint(svc: Service) -> None:
    """Case 9: a hint that is no e-mail address → 400 `invalid_login_hint`, nothing written;
    an address (trimmed) → the claim handles and a `claim` block with a six-digit code,
    `expires_in` 600 and `interval` 5, no assertion; three events in one append: the
    registration (service_auth, v06, no pre-claim scope), its attempt (user_code) and code."""
    for hint in ("ana", "ana@", "@example.net", "ana@example", "ana example@x.net", "a@b..net"):
        response = await svc.client.post(
            IDENTITY, json={"type": "service_auth", "login_hint": hint}
        )
        assert_identity_error(response, 400, "invalid_login_hint")
    assert await svc.head() == 0
    now = svc.clock.now()
    response = await svc.client.post(
        IDENTITY, json={"type": "service_auth", "login_hint": f"  {HINT} "}
    )
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert list(body) == [
        "registration_id", "registration_type", "claim_url", "claim_token",
        "claim_token_expires", "post_claim_scopes", "claim",
    ]  # fmt: skip
    assert body["registration_type"] == "service_auth"
    assert body["claim_url"] == f"{PUBLIC_URL}/agent/identity/claim"
    assert body["claim_token"].startswith("clm_")
    assert body["claim_token_expires"] == timestamp(now + timedelta(days=1))
    assert body["post_claim_scopes"] == list(svc.tenant.post_claim_scopes)
    claim = body["claim"]
    assert list(claim) == ["user_code", "expires_in", "verification_uri", "interval"]
    assert len(claim["user_code"]) == 6
    assert claim["user_code"].isdigit()
    assert (claim["expires_in"], claim["interval"]) == (600, 5)
    events = await written_by(svc, response)
    assert [e["type"] for e in events] == [
        "registration.created", "claim.attempt_started", "claim.otp_issued",
    ]  # fmt: skip
    created, started, _ = (e["payload"] for e in events)
    assert (created["kind"], created["dialect"]) == ("service_auth", "v06")
    assert created["pre_claim_scopes"] == []
    assert started["ceremony"] == "user_code"
    assert HINT not in str(events)  # the hint only sealed
    assert {e["metadata"]["door"] for e in events} == {"v06"}
    row = await svc.row("registrations", "registration_id", body["registration_id"])
    assert (row["dialect"], row["status"]) == ("v06", "pending_claim")
    assert await svc.count("credential.issued") == 0


async def test_verification_uri_goes_through_login(svc: Service) -> None:
    """Case 10: `verification_uri` is our `/login`, returning to `/claim` with the attempt's
    `cvt_` link token, a place the sign-in accepts to return to."""
    body = await service_auth(svc.client)
    uri = body["claim"]["verification_uri"]
    parts = urlsplit(uri)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PUBLIC_URL}/login"
    [return_to] = parse_qs(parts.query)["return_to"]
    assert return_to.startswith("/claim?claim_attempt_token=cvt_")
    assert safe_return_to(return_to) == return_to
    assert "%2Fclaim%3Fclaim_attempt_token%3Dcvt_" in uri
    row = await svc.row("registrations", "registration_id", body["registration_id"])
    assert row["attempt_token_hash"] == token_hash(link_token(uri))


async def test_poll_pending(svc: Service) -> None:
    """Case 11: before the person acts, the claim grant answers `authorization_pending` in
    RFC 6749's shape, never cached, and writes no event; so does an anonymous registration's
    claim token before any claim started."""
    body = await service_auth(svc.client)
    anonymous = await identify(svc.client)
    head = await svc.head()
    for claim_token in (body["claim_token"], anonymous["claim_token"]):
        response = await poll(svc.client, claim_token)
        assert_oauth_error(response, 400, "authorization_pending")
    assert await svc.head() == head


async def test_fast_poll_slow_down(svc: Service) -> None:
    """Case 12 (O-G): a poll sooner than the interval → `slow_down`, and the interval grows
    by 5 s for each early poll; a poll after the grown interval is pending again."""
    claim_token = (await service_auth(svc.client))["claim_token"]
    assert_oauth_error(await poll(svc.client, claim_token), 400, "authorization_pending")
    early = await poll(svc.client, claim_token)
    assert_oauth_error(early, 400, "slow_down")
    assert "10 s" in early.json()["error_description"]
    svc.clock.advance(timedelta(seconds=5))  # the first interval: now too soon still
    assert_oauth_error(await poll(svc.client, claim_token), 400, "slow_down")
    row = await svc.row("claim_polls", "claim_token_hash", token_hash(claim_token))
    assert (row["interval_s"], row["too_fast"]) == (15, True)
    svc.clock.advance(timedelta(seconds=15))
    assert_oauth_error(await poll(svc.client, claim_token), 400, "authorization_pending")
    svc.clock.advance(timedelta(seconds=14.6))  # within the half second of tolerance
    assert_oauth_error(await poll(svc.client, claim_token), 400, "authorization_pending")


async def test_poll_refusals(svc: Service) -> None:
    """An unknown claim token → `expired_token` (open question 8) with no pacing row; a v1
    registration's → `invalid_grant` naming its door; an ended registration's →
    `expired_token`. None writes an event."""
    unknown = "clm_" + "x" * 26
    assert_oauth_error(await poll(svc.client, unknown), 400, "expired_token")
    assert await svc.resources.pool.fetchval("SELECT count(*) FROM claim_polls") == 0
    v1 = await svc.anonymous()
    refused = await poll(svc.client, v1["claim_token"])
    assert_oauth_error(refused, 400, "invalid_grant")
    assert "/agent/auth" in refused.json()["error_description"]
    revoked = await service_auth(svc.client)
    answer = await svc.client.post(
        "/admin/revocations",
        json={"registration_id": revoked["registration_id"]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text
    body = await service_auth(svc.client)
    head = await svc.head()
    assert_oauth_error(await poll(svc.client, revoked["claim_token"]), 400, "expired_token")
    svc.clock.advance(timedelta(days=1, seconds=1))
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "expired_token")
    assert await svc.head() == head


async def test_denied_attempt_access_denied(svc: Service) -> None:
    """O-G: after the person's Deny, the poll answers `access_denied`; a new attempt at V2
    makes it pending again."""
    body = await service_auth(svc.client)
    await deny(svc, body["claim_token"], link_token(body["claim"]["verification_uri"]), HINT)
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "access_denied")
    assert (await start(svc.client, body["claim_token"], email=HINT)).status_code == 200
    svc.clock.advance(timedelta(seconds=5))
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "authorization_pending")


async def test_code_expiry_and_remint(svc: Service) -> None:
    """Case 20: past its 600 s the code is `expired_token` at the poll; V2 mints a new
    attempt (its own link and code): the old link no longer names the registration, the old
    code does not claim at the new link, the new one does, and the poll delivers."""
    body = await service_auth(svc.client)
    old_link = link_token(body["claim"]["verification_uri"])
    old_code = body["claim"]["user_code"]
    svc.clock.advance(timedelta(seconds=600))
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "expired_token")
    response = await start(svc.client, body["claim_token"], email=HINT)
    assert response.status_code == 200, response.text
    assert_no_store(response)
    opened = response.json()
    assert list(opened) == [
        "registration_id", "claim_attempt_id", "status", "expires_at", "claim_attempt",
    ]  # fmt: skip
    assert (opened["registration_id"], opened["status"]) == (body["registration_id"], "initiated")
    assert opened["claim_attempt_id"].startswith("cla_")
    attempt = opened["claim_attempt"]
    assert (attempt["expires_in"], attempt["interval"]) == (600, 5)
    new_link = link_token(attempt["verification_uri"])
    assert new_link != old_link
    types = [e["type"] for e in await written_by(svc, response)]
    assert types == ["claim.attempt_superseded", "claim.attempt_started", "claim.otp_issued"]
    row = await svc.row("registrations", "registration_id", body["registration_id"])
    assert row["attempt_token_hash"] == token_hash(new_link) != token_hash(old_link)
    assert (await refused_code(svc, body["claim_token"], old_link, old_code, HINT)).code == (
        "not_found"
    )
    if old_code != attempt["user_code"]:  # one chance in a million they are the same
        refused = await refused_code(svc, body["claim_token"], new_link, old_code, HINT)
        assert refused.code == "user_code_invalid"
    svc.clock.advance(timedelta(seconds=5))  # the interval since the last poll
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "authorization_pending")
    await enter_code(svc, body["claim_token"], new_link, attempt["user_code"], HINT)
    svc.clock.advance(timedelta(seconds=5))
    assert (await poll(svc.client, body["claim_token"])).status_code == 200


async def test_claim_start_on_anonymous(svc: Service) -> None:
    """V2 on an anonymous v0.6 registration: `login_hint` instead of `email` (O-P), with a
    `type`; the attempt's hint is the given address; the poll is then pending."""
    anonymous = await identify(svc.client)
    response = await start(
        svc.client, anonymous["claim_token"], login_hint=HINT, type="service_auth"
    )
    assert response.status_code == 200, response.text
    row = await svc.row("registrations", "registration_id", anonymous["registration_id"])
    ctx = await svc.resources.command_context()
    assert (row["status"], row["email_index"]) == ("pending_claim", ctx.sealer.blind_index(HINT))
    assert_oauth_error(
        await poll(svc.client, anonymous["claim_token"]), 400, "authorization_pending"
    )


async def test_claim_start_refusals(svc: Service) -> None:
    """Case 21: an unknown token → 401 `invalid_claim_token`; a v1 registration's token →
    401 `invalid_claim_token` naming /agent/auth; a claimed registration → 409
    `claimed_or_in_flight`; past its 24 h → 410 `claim_expired`. None writes an event."""
    unknown = await start(svc.client, "clm_" + "y" * 26, email=HINT)
    assert_identity_error(unknown, 401, "invalid_claim_token")
    v1 = await svc.anonymous()
    refused = await start(svc.client, v1["claim_token"], email=HINT)
    assert_identity_error(refused, 401, "invalid_claim_token")
    assert "/agent/auth" in refused.json()["message"]
    claimed = await service_auth(svc.client)
    claim = claimed["claim"]
    await enter_code(
        svc, claimed["claim_token"], link_token(claim["verification_uri"]), claim["user_code"],
        HINT,
    )  # fmt: skip
    expiring = await identify(svc.client)
    head = await svc.head()
    assert_identity_error(
        await start(svc.client, claimed["claim_token"], email=HINT), 409, "claimed_or_in_flight"
    )
    svc.clock.advance(timedelta(days=1))
    assert_identity_error(
        await start(svc.client, expiring["claim_token"], email=HINT), 410, "claim_expired"
    )
    assert await svc.head() == head


async def test_pre_claim_assertion_stays_pre_claim(svc: Service) -> None:
    """An anonymous registration's pre-claim assertion still exchanges for the pre-claim
    scope while its V2 attempt is pending (the claim, not the attempt, changes the stage)."""
    anonymous = await identify(svc.client)
    assert (await start(svc.client, anonymous["claim_token"], email=HINT)).status_code == 200
    token = await token_for(svc.client, anonymous["identity_assertion"])
    assert (await me(svc.client, token)).json()["scopes"] == list(svc.tenant.pre_claim_scopes)
