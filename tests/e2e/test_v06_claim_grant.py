"""The agent's half of the v0.6 claim ceremony over HTTP (contract cases 9-12, 16, 19-21;
docs/design/v06-dialect.md, slice S3a): V1 service_auth hands the agent a `user_code` and a
`verification_uri`, V2 opens a new attempt, and the claim grant at /oauth2/token (V7) is
polled with RFC 8628's answers until the claim delivers a token and an assertion. The
person's half (sign-in, the claim page) is not served yet: where a test needs the code typed,
tests/support/v06_claim.py does what POST /claim will. Real Postgres, NATS and SMTP; the
test clock moves time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from events.registration import STREAM_TYPE as REGISTRATION
from service.commands.context import Caller, Change
from service.crypto.assertions import verify_assertion
from service.crypto.tokens import (
    new_attempt_id,
    new_attempt_token,
    new_claim_token,
    new_registration_id,
    otp_hash,
    token_hash,
)
from service.domain.step_up import NewStepUp, Presented, StepUp, StepUpTerms, UserMatch
from service.domain.user_code import NewCode
from service.http.bodies import timestamp
from service.signin.return_to import safe_return_to
from service.tenancy.config import CLAIM_GRANT
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, SECRET_KEY, Service
from tests.support.backends import Backend
from tests.support.v06_claim import deny, enter_code, refused_code
from tests.support.v06_door import (
    IDENTITY,
    assert_identity_error,
    assert_no_store,
    assert_oauth_error,
    exchange,
    identify,
    me,
    token_for,
    v06_service,
    written_by,
)

CLAIM = "/agent/identity/claim"
TOKEN = "/oauth2/token"
HINT = "ana@example.net"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


async def service_auth(client: httpx.AsyncClient, hint: str = HINT) -> dict[str, Any]:
    response = await client.post(IDENTITY, json={"type": "service_auth", "login_hint": hint})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def start(client: httpx.AsyncClient, claim_token: str, **body: str) -> httpx.Response:
    return await client.post(CLAIM, json={"claim_token": claim_token, **body})


async def poll(client: httpx.AsyncClient, claim_token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": CLAIM_GRANT, "claim_token": claim_token})


def link_token(verification_uri: str) -> str:
    return_to = parse_qs(urlsplit(verification_uri).query)["return_to"][0]
    return parse_qs(urlsplit(return_to).query)["claim_attempt_token"][0]


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


async def test_step_up_delivery_goes_through_the_delegation(svc: Service) -> None:
    """A step-up (an ID-JAG subject matched to an existing account, slice S4's, opened here
    through its domain rule) delivers like any claim, but for the subject: every supported
    scope, `issued_via = id_jag` with the provider and the delegation on the credential, and
    an assertion naming the subject's deterministic id at its delegation's generation, which
    V6 then exchanges through the delegation."""
    known = await service_auth(svc.client)  # the account the step-up matches
    claim = known["claim"]
    user_id = await enter_code(
        svc, known["claim_token"], link_token(claim["verification_uri"]), claim["user_code"],
        HINT,
    )  # fmt: skip
    ctx = await svc.resources.command_context()
    now = svc.clock.now()
    hex22 = "0123456789abcdef012345"
    index = ctx.sealer.blind_index(HINT)
    link, code, claim_token = new_attempt_token(), "123456", new_claim_token()
    attempt_id, registration_id = new_attempt_id(), new_registration_id()
    attempt_key = ctx.sealer.fresh(attempt_id)
    presented = Presented(
        delegation_id="dlg_" + hex22, issuer="https://idp.example", jti="j1", client_id="c1"
    )
    opened = StepUp(UserMatch(user_id, "email", index)).open(
        presented,
        NewStepUp(
            registration_id=registration_id,
            claim_token_hash=token_hash(claim_token),
            subject_sealed=await ctx.sealer.seal(ctx.pool, user_id, "provider-sub-1"),
            code=NewCode(
                attempt_id=attempt_id,
                link_hash=token_hash(link),
                hint_index=index,
                hint_sealed=attempt_key.seal(HINT),
                code_hash=otp_hash(SECRET_KEY, attempt_id, code),
            ),
        ),
        now=now,
        terms=StepUpTerms(
            registration_ttl=timedelta(days=1),
            link_ttl=timedelta(minutes=10),
            code_ttl=timedelta(minutes=10),
            post_claim_scopes=svc.tenant.scopes_supported,
        ),
    )
    await ctx.record(
        [Change(ctx.stream(REGISTRATION, registration_id), 0, opened.events)],
        metadata=Caller(door="v06", dialect="0.6.0").envelope(),
        now=now,
        fresh=[ctx.sealer.fresh(registration_id), attempt_key],
    )
    assert_oauth_error(await poll(svc.client, claim_token), 400, "authorization_pending")
    assert await enter_code(svc, claim_token, link, code, HINT) == user_id
    svc.clock.advance(timedelta(seconds=5))
    response = await poll(svc.client, claim_token)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["scope"] == " ".join(svc.tenant.scopes_supported)
    claims = verify_assertion(
        ctx.keyring, answer["identity_assertion"], issuer=PUBLIC_URL, now=svc.clock.now()
    )
    assert (claims.subject, claims.gen, claims.email) == ("reg_" + hex22, 0, HINT)
    _, issued = await written_by(svc, response)
    payload = issued["payload"]
    assert (payload["issued_via"], payload["user_id"]) == ("id_jag", user_id)
    assert (payload["issuer"], payload["delegation_id"]) == ("https://idp.example", "dlg_" + hex22)
    assert payload["registration_id"] == registration_id
    exchanged = await exchange(svc.client, answer["identity_assertion"])
    assert exchanged.status_code == 200, exchanged.text
    seen = await me(svc.client, exchanged.json()["access_token"])
    assert seen.json()["user_id"] == user_id
