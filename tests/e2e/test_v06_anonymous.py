"""The v0.6 door's anonymous path over HTTP (contract cases 4-8 and 28; docs/design/
v06-dialect.md, slice S2): V1 registers and hands out a service-signed identity assertion,
V6 exchanges it for access tokens, V8 ends a token; the operator's revocation also ends the
registration's assertions (O-R). Against real Postgres, NATS and SMTP; the default tenant
opens both doors."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.commands.context import Caller
from service.commands.tenants import create_tenant, set_tenant_active
from service.crypto.assertions import ASSERTION_TYPE, verify_assertion
from service.crypto.jws import sign_with
from service.crypto.signing import new_signing_key
from service.http.bodies import timestamp
from service.tenancy.config import CLAIM_GRANT, JWT_BEARER
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.v06_door import (
    IDENTITY,
    REVOKE,
    TOKEN,
    assert_identity_error,
    assert_no_store,
    assert_oauth_error,
    exchange,
    identify,
    me,
    revoke,
    token_for,
    v06_service,
    written_by,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OTHER_URL = "https://auth.other.example"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"  # RFC 8628


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


async def test_anonymous_answer(svc: Service) -> None:
    """Case 4: 200 with a service-signed assertion for the registration (gen 0), the `clm_`
    claim token, an absolute `claim_url` and both scope lists; one event, `registration.created`
    of dialect v06 without a credential, recorded as coming through door v06, dialect 0.6.0."""
    now = svc.clock.now()
    response = await svc.client.post(IDENTITY, json={"type": "anonymous"})
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert list(body) == [
        "registration_id", "registration_type", "identity_assertion", "assertion_expires",
        "pre_claim_scopes", "claim_url", "claim_token", "claim_token_expires",
        "post_claim_scopes",
    ]  # fmt: skip
    rid = body["registration_id"]
    assert rid.startswith("reg_")
    assert len(rid) == 26
    assert body["registration_type"] == "anonymous"
    assert body["pre_claim_scopes"] == ["api.read"]
    assert body["post_claim_scopes"] == list(svc.tenant.post_claim_scopes)
    assert body["claim_url"] == f"{PUBLIC_URL}/agent/identity/claim"
    assert body["claim_token"].startswith("clm_")
    assert body["claim_token_expires"] == timestamp(now + timedelta(days=1))
    assert body["assertion_expires"] == timestamp(now + timedelta(hours=1))
    ctx = await svc.resources.command_context()
    claims = verify_assertion(ctx.keyring, body["identity_assertion"], issuer=PUBLIC_URL, now=now)
    assert (claims.subject, claims.gen, claims.issuer) == (rid, 0, PUBLIC_URL)
    assert claims.jti.startswith("asr_")
    [event] = await written_by(svc, response)
    assert event["type"] == "registration.created"
    payload = event["payload"]
    assert (payload["kind"], payload["dialect"]) == ("anonymous", "v06")
    assert payload.get("credential_id") is None
    assert payload["requested_credential_type"] == "access_token"
    metadata = event["metadata"]
    assert (metadata["door"], metadata["dialect"], metadata["actor"]) == ("v06", "0.6.0", "agent")
    assert metadata["client_ip"] != "192.0.2.7"  # sealed, never in plain text
    row = await svc.row("registrations", "registration_id", rid)
    assert (row["dialect"], row["status"], row["credential_id"]) == ("v06", "unclaimed", None)
    assert await svc.count("credential.issued") == 0


async def test_jwt_bearer_gives_api_read_no_store(svc: Service) -> None:
    """Case 5: the assertion buys an `api.read` bearer token, `no-store` and `Pragma:
    no-cache` on the answer; the API takes it; it is a credential of the registration."""
    registered = await identify(svc.client)
    response = await exchange(svc.client, registered["identity_assertion"])
    assert response.status_code == 200, response.text
    assert_no_store(response)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == svc.tenant.access_token_ttl
    assert body["scope"] == "api.read"
    principal = await me(svc.client, body["access_token"])
    assert principal.status_code == 200, principal.text
    seen = principal.json()
    assert seen["scopes"] == ["api.read"]
    assert (seen["registration_id"], seen["user_id"]) == (registered["registration_id"], None)
    assert seen["claim_state"] == "unclaimed"
    [issued] = await written_by(svc, response)
    assert issued["type"] == "credential.issued"
    assert issued["payload"]["issued_via"] == "anonymous"
    assert issued["payload"]["kind"] == "access_token"
    assert issued["metadata"]["door"] == "v06"
    row = await svc.row("credentials", "credential_id", seen["credential_id"])
    assert row["registration_id"] == registered["registration_id"]


async def test_same_assertion_twice_two_tokens(svc: Service) -> None:
    """Case 6: the assertion is not spent by an exchange: two distinct tokens, both valid."""
    assertion = (await identify(svc.client))["identity_assertion"]
    first, second = [await token_for(svc.client, assertion) for _ in range(2)]
    assert first != second
    for token in (first, second):
        assert (await me(svc.client, token)).status_code == 200
    assert await svc.count("credential.issued") == 2


async def test_bad_assertions_invalid_grant(svc: Service) -> None:
    """Case 7: a tampered assertion, one past its expiry on the test clock, one signed by a
    stranger's key (under a kid of its own, or under ours), another tenant's, and an access
    token offered as one: 400 `invalid_grant` each, nothing written."""
    registered = await identify(svc.client)
    assertion = registered["identity_assertion"]
    access_token = await token_for(svc.client, assertion)
    header, payload, signature = assertion.split(".")
    claims = _claims(payload)
    tampered = ".".join([header, _segment(claims | {"gen": 1}), signature])
    stranger = new_signing_key(svc.clock.now())
    ours = (await svc.resources.command_context()).keyring.active
    assert ours is not None
    foreign = sign_with(stranger, claims, typ=ASSERTION_TYPE)
    forged = sign_with(dataclasses.replace(stranger, kid=ours.kid), claims, typ=ASSERTION_TYPE)
    async with _other_tenant(svc) as other:
        theirs = (await identify(other))["identity_assertion"]
    head = await svc.head()
    for bad in (tampered, foreign, forged, theirs, access_token, "not.a.jwt"):
        assert_oauth_error(await exchange(svc.client, bad), 400, "invalid_grant")
    svc.clock.advance(timedelta(hours=1, seconds=61))  # past exp and the 60 s of skew
    assert_oauth_error(await exchange(svc.client, assertion), 400, "invalid_grant")
    assert await svc.head() == head
    svc.clock.advance(timedelta(seconds=-2))  # inside the skew: still good
    assert (await exchange(svc.client, assertion)).status_code == 200


async def test_unknown_grant_type(svc: Service) -> None:
    """Case 8: another grant is `unsupported_grant_type` (the device grant the claim grant
    is modelled on too); none at all, or a JSON body, is `invalid_request`; nothing written."""
    assertion = (await identify(svc.client))["identity_assertion"]
    head = await svc.head()
    for grant in ("authorization_code", "client_credentials", "refresh_token", DEVICE_CODE,
                  JWT_BEARER.upper(), CLAIM_GRANT.upper()):  # fmt: skip
        response = await svc.client.post(TOKEN, data={"grant_type": grant, "assertion": assertion})
        assert_oauth_error(response, 400, "unsupported_grant_type")
    missing = await svc.client.post(TOKEN, data={"assertion": assertion})
    assert_oauth_error(missing, 400, "invalid_request")
    as_json = await svc.client.post(TOKEN, json={"grant_type": JWT_BEARER, "assertion": assertion})
    assert_oauth_error(as_json, 400, "invalid_request")
    assert await svc.head() == head


async def test_revoke_endpoint(svc: Service) -> None:
    """Case 28: V8 of a live token → 200 empty, and the API refuses it (`credential.revoked`,
    reason `agent`, by the agent at door v06); of that token again, of an unknown one, with
    any `token_type_hint`, or of another tenant's live token → 200 and nothing written. The
    assertion still exchanges."""
    registered = await identify(svc.client)
    assertion = registered["identity_assertion"]
    token, kept = [await token_for(svc.client, assertion) for _ in range(2)]
    response = await revoke(svc.client, token)
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert_no_store(response)
    assert (await me(svc.client, token)).status_code == 401
    assert (await me(svc.client, kept)).status_code == 200
    [revoked] = await written_by(svc, response)
    assert revoked["type"] == "credential.revoked"
    assert revoked["payload"]["reason"] == "agent"
    assert (revoked["metadata"]["actor"], revoked["metadata"]["door"]) == ("agent", "v06")
    async with _other_tenant(svc) as other:
        theirs = await token_for(other, (await identify(other))["identity_assertion"])
        head = await svc.head()
        hint = {"token_type_hint": "refresh_token"}
        tries = [(token, {}), ("at_unknown", {}), (kept[:-2], {}), (theirs, {}), (token, hint)]
        for presented, more in tries:
            again = await revoke(svc.client, presented, **more)
            assert again.status_code == 200, again.text
            assert again.content == b""
        assert await svc.head() == head
        assert (await me(other, theirs)).status_code == 200
        assert (await me(svc.client, kept)).status_code == 200
    hinted = await revoke(svc.client, kept, token_type_hint="whatever")  # O-N: ignored
    assert hinted.status_code == 200
    assert (await me(svc.client, kept)).status_code == 401
    fresh = await token_for(svc.client, assertion)
    assert (await me(svc.client, fresh)).status_code == 200


async def test_operator_revocation_ends_the_registration(svc: Service) -> None:
    """O-R: revoking a v0.6 registration ends its tokens and appends `registration.revoked`
    (operator, with the note), so its assertion no longer exchanges and its claim token is
    dead; a v1 registration revoked the same way gets no such event (open question 6)."""
    registered = await identify(svc.client)
    rid, assertion = registered["registration_id"], registered["identity_assertion"]
    token = await token_for(svc.client, assertion)
    response = await svc.client.post(
        "/admin/revocations", json={"registration_id": rid, "reason": "incident 7"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["revoked"] == 1
    assert answer["registration_ids"] == [rid]
    ended, credential = await written_by(svc, response)  # the registration first
    assert (ended["type"], credential["type"]) == ("registration.revoked", "credential.revoked")
    assert (ended["payload"]["reason"], ended["payload"]["note"]) == ("operator", "incident 7")
    assert ended["metadata"]["actor"] == "admin:bootstrap"
    assert (await me(svc.client, token)).status_code == 401
    assert_oauth_error(await exchange(svc.client, assertion), 400, "invalid_grant")
    row = await svc.row("registrations", "registration_id", rid)
    assert row["status"] == "revoked"
    again = await svc.client.post(
        "/admin/revocations", json={"registration_id": rid}, headers=ADMIN
    )
    assert again.json()["registration_ids"] == []
    assert await svc.count("registration.revoked") == 1
    v1 = await svc.anonymous()
    older = await svc.client.post(
        "/admin/revocations", json={"registration_id": v1["registration_id"]}, headers=ADMIN
    )
    assert older.json()["revoked"] == 1
    assert older.json()["registration_ids"] == []
    assert await svc.count("registration.revoked") == 1


async def test_a_shut_door_is_404_in_the_family_shape(svc: Service) -> None:
    """A tenant that keeps the v0.6 door shut answers its three routes 404 `not_found`, each
    in its family's shape, before anything is read or written."""
    await create_tenant(
        await svc.resources.command_context(), svc.resources.settings, "shut",
        hosts=["auth.shut.example"], settings={"public_url": "https://auth.shut.example",
                                               "doors": "v1"}, caller=Caller(actor="test"),
    )  # fmt: skip
    head = await svc.head()
    async with _client(svc, "https://auth.shut.example") as shut:
        assert_identity_error(await shut.post(IDENTITY, json={"type": "anonymous"}), 404,
                              "not_found")  # fmt: skip
        for path in (TOKEN, REVOKE):
            assert_oauth_error(await shut.post(path, data={"token": "x"}), 404, "not_found")
        assert (await shut.post("/agent/auth", json={"type": "anonymous",
                "requested_credential_type": "api_key"})).status_code == 200  # fmt: skip
    assert await svc.count("registration.created") == 1  # the v1 door's, on the same host
    assert await svc.head() == head + 2


async def test_a_disabled_tenant_refuses_in_the_family_shape(svc: Service) -> None:
    """The tenant middleware's refusal, before routing, keeps the family's shape too."""
    ctx = await svc.resources.command_context()
    async with _other_tenant(svc) as other:
        assert await set_tenant_active(ctx, "other", False, Caller(actor="test"), "unpaid")
        assert_identity_error(await other.post(IDENTITY, json={"type": "anonymous"}), 404,
                              "tenant_disabled")  # fmt: skip
        assert_oauth_error(await other.post(TOKEN, data={"grant_type": JWT_BEARER}), 404,
                           "tenant_disabled")  # fmt: skip
        assert (await other.get("/api/me")).json().keys() == {"error", "message"}


async def test_limits_one_anonymous_budget_and_a_token_budget_per_subject(
    backend: Backend, database_url: str, tmp_path: Path
) -> None:
    """V1 anonymous spends E4 anonymous's buckets (one budget whatever the door); V6 counts
    per subject after verification and V8 per address: 429 `rate_limited` with Retry-After
    in each family's shape, nothing written."""
    limits = tmp_path / "limits.toml"
    limits.write_text(
        '[default]\nanonymous_per_ip = "3/h"\ntoken_per_subject = "2/h"\n'
        'revoke_token_per_ip = "1/h"\n'
    )
    async with v06_service(backend, database_url, RATE_LIMITS=str(limits)) as limited:
        await limited.anonymous()  # the v1 door
        first = await identify(limited.client)
        await identify(limited.client)
        head = await limited.head()
        refused = await limited.client.post(IDENTITY, json={"type": "anonymous"})
        assert_identity_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        assertion = first["identity_assertion"]
        tokens = [await token_for(limited.client, assertion) for _ in range(2)]
        head = await limited.head()
        over = await exchange(limited.client, assertion)
        assert_oauth_error(over, 429, "rate_limited")
        assert int(over.headers["retry-after"]) > 0
        forged = await exchange(limited.client, assertion[:-4] + "AAAA")  # no subject: 400
        assert_oauth_error(forged, 400, "invalid_grant")
        assert await limited.head() == head
        assert (await revoke(limited.client, tokens[0])).status_code == 200
        assert_oauth_error(await revoke(limited.client, tokens[1]), 429, "rate_limited")
        assert (await me(limited.client, tokens[1])).status_code == 200


def _claims(segment: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(segment + "=="))
    return decoded


def _segment(claims: dict[str, object]) -> str:
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _client(svc: Service, url: str) -> httpx.AsyncClient:
    transport = svc.client._transport  # the same app, reached by another tenant's host name
    return httpx.AsyncClient(transport=transport, base_url=url)


@asynccontextmanager
async def _other_tenant(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A second tenant with both doors open (made on first use), and a client on its host."""
    resources = svc.resources
    assert resources.tenants is not None
    if resources.tenants.get("other") is None:
        await create_tenant(
            await resources.command_context(), resources.settings, "other",
            hosts=["auth.other.example"],
            settings={"public_url": OTHER_URL, "doors": "v1 v06"}, caller=Caller(actor="test"),
        )  # fmt: skip
    async with _client(svc, OTHER_URL) as client:
        yield client
