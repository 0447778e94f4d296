"""The resource-server side over HTTP: /api/me with its challenges (spec §3.1, O11),
introspection (RFC 7662) and the JWKS (O12), the way agents and resource servers use them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import jwt
import pytest

from events.credential import CredentialRevoked
from events.envelope import Metadata
from service.commands.context import Change
from service.commands.credentials import mint
from service.crypto.tokens import new_api_key
from tests.support.app_client import (
    ADMIN_TOKEN,
    PUBLIC_URL,
    Service,
    link_of,
    otp_of,
    running_service,
)
from tests.support.backends import Backend
from tests.support.waiting import wait_until

ME = "/api/me"
INTROSPECT = "/oauth2/introspect"
JWKS = "/.well-known/jwks.json"
FEED = 1.0  # seconds: the event feed applies other processes' appends within milliseconds
CHALLENGE = f'Bearer resource_metadata="{PUBLIC_URL}/.well-known/oauth-protected-resource/api/"'


@pytest.fixture
async def service(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as running:
        await running.resources.credentials.start()  # type: ignore[union-attr]
        yield running


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def introspect(service: Service, token: str, admin: str = ADMIN_TOKEN) -> Any:
    return await service.client.post(INTROSPECT, data={"token": token}, headers=bearer(admin))


async def revoke(service: Service, credential_id: str) -> None:
    ctx = await service.resources.command_context()
    change = Change(ctx.stream("credential", credential_id), 1, [CredentialRevoked(reason="test")])
    await ctx.record([change], metadata=Metadata(actor="test"), now=service.clock.now())


async def test_no_credential_gets_the_discovery_challenge(service: Service) -> None:
    """No Authorization header: 401 `unauthorized` pointing at the PRM, without an error code."""
    response = await service.client.get(ME)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json()["error"] == "unauthorized"
    assert set(response.json()) == {"error", "message"}
    basic = await service.client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.headers["www-authenticate"] == CHALLENGE


async def test_unknown_credential_gets_invalid_token(service: Service) -> None:
    """A token nobody issued: 401 with the PRM challenge and `error="invalid_token"`."""
    for headers in (bearer(new_api_key()), {"Authorization": "Bearer"}):
        response = await service.client.get(ME, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == f'{CHALLENGE}, error="invalid_token"'
        assert response.json()["error"] == "unauthorized"


async def test_anonymous_key_reads_its_principal(service: Service) -> None:
    """A freshly registered anonymous key answers 200 with its principal, any scheme case."""
    registered = await service.anonymous()
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = await service.client.get(ME, headers=bearer(registered["credential"], scheme))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body == {
            "credential_id": body["credential_id"],
            "credential_type": "api_key",
            "scopes": ["api.read"],
            "registration_id": registered["registration_id"],
            "user_id": None,
            "claim_state": "unclaimed",
            "expires_at": registered["claim_token_expires"],
        }
        assert body["credential_id"].startswith("cred_")
    stats = service.resources.credentials.stats  # type: ignore[union-attr]
    assert (stats.loads, stats.hits) == (1, 2)


async def test_claim_rescopes_the_key_seen_by_api_me(service: Service) -> None:
    """After the claim ceremony the same key shows the post-claim scopes, user and state."""
    registered = await service.anonymous()
    key, claim_token = registered["credential"], registered["claim_token"]
    assert (await service.client.get(ME, headers=bearer(key))).status_code == 200
    started = await service.client.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": "ana@example.net"}
    )
    assert started.status_code == 200, started.text
    page = await service.client.get(link_of(await service.mail(1)))
    otp = otp_of((await service.press_button(page)).text)
    done = await service.client.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp}
    )
    assert done.status_code == 200, done.text

    async def claimed() -> bool:
        body = (await service.client.get(ME, headers=bearer(key))).json()
        return bool(body["claim_state"] == "claimed")

    await wait_until(claimed, within=FEED, what="/api/me seeing the claim")
    body = (await service.client.get(ME, headers=bearer(key))).json()
    assert body["scopes"] == ["api.read", "api.write"]
    assert body["user_id"].startswith("usr_")
    assert body["expires_at"] is None


async def test_revoked_credential_is_refused(service: Service) -> None:
    """A revoked key gets the same 401 as an unknown one, with `error="invalid_token"`."""
    registered = await service.anonymous()
    key = registered["credential"]
    me = (await service.client.get(ME, headers=bearer(key))).json()
    await revoke(service, me["credential_id"])

    async def refused() -> bool:
        return (await service.client.get(ME, headers=bearer(key))).status_code == 401

    await wait_until(refused, within=FEED, what="/api/me refusing the revoked key")
    response = await service.client.get(ME, headers=bearer(key))
    assert response.headers["www-authenticate"] == f'{CHALLENGE}, error="invalid_token"'
    assert response.json() == {
        "error": "unauthorized",
        "message": "the credential has been revoked",
    }


async def test_missing_scope_is_403_insufficient_scope(backend: Backend, database_url: str) -> None:
    """A key without api.read gets 403 `insufficient_scope` naming the scope (O11)."""
    async with running_service(backend, database_url, PRE_CLAIM_SCOPES="api.write") as service:
        registered = await service.anonymous()
        response = await service.client.get(ME, headers=bearer(registered["credential"]))
    assert response.status_code == 403
    assert (
        response.headers["www-authenticate"]
        == 'Bearer error="insufficient_scope", scope="api.read"'
    )
    assert response.json()["error"] == "insufficient_scope"


async def test_access_token_is_checked_by_hash_and_expires_by_time(service: Service) -> None:
    """An at+jwt issued through the log works at /api/me and is refused once its hour ends."""
    ctx = await service.resources.command_context()
    now = service.clock.now()
    minted = mint(
        ctx, "access_token", now=now, scopes=("api.read",), issued_via="id_jag",
        registration_id=None, user_id="usr_e2e",
    )  # fmt: skip
    await ctx.record([minted.change], metadata=Metadata(actor="test"), now=now)
    response = await service.client.get(ME, headers=bearer(minted.plain))
    assert response.status_code == 200, response.text
    assert response.json()["credential_type"] == "access_token"
    assert response.json()["claim_state"] is None
    service.clock.advance(timedelta(seconds=ctx.tenant.access_token_ttl))
    late = await service.client.get(ME, headers=bearer(minted.plain))
    assert late.status_code == 401
    assert late.json()["message"] == "the credential has expired"


async def test_introspection_answers_active_and_inactive(service: Service) -> None:
    """RFC 7662: the live key's claims; `{"active": false}` for unknown and revoked ones."""
    registered = await service.anonymous()
    key = registered["credential"]
    response = await introspect(service, key)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    me = (await service.client.get(ME, headers=bearer(key))).json()
    assert body == {
        "active": True,
        "scope": "api.read",
        "client_id": registered["registration_id"],
        "sub": registered["registration_id"],
        "token_type": "api_key",
        "exp": body["exp"],
        "iat": int(service.clock.now().timestamp()),
        "iss": PUBLIC_URL,
        "aud": f"{PUBLIC_URL}/api/",
    }
    assert body["exp"] == body["iat"] + 86_400
    unknown = await introspect(service, new_api_key())
    assert (unknown.status_code, unknown.json()) == (200, {"active": False})
    await revoke(service, me["credential_id"])

    async def inactive() -> bool:
        return bool((await introspect(service, key)).json() == {"active": False})

    await wait_until(inactive, within=FEED, what="introspection seeing the revocation")


async def test_introspection_needs_the_resource_server_token(service: Service) -> None:
    """Without the admin bearer token: 401; a form without `token`: 400 invalid_request."""
    registered = await service.anonymous()
    none = await service.client.post(INTROSPECT, data={"token": registered["credential"]})
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    wrong = await introspect(service, registered["credential"], admin="x" * 32)
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert wrong.json()["error"] == "unauthorized"
    empty = await service.client.post(INTROSPECT, data={}, headers=bearer(ADMIN_TOKEN))
    assert (empty.status_code, empty.json()["error"]) == (400, "invalid_request")


async def test_jwks_publishes_the_key_that_signs_access_tokens(service: Service) -> None:
    """The JWK Set is cacheable for 5 min and verifies an at+jwt from the KeyRing offline."""
    response = await service.client.get(JWKS)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-type"] == "application/json"
    keys = response.json()["keys"]
    assert [set(k) for k in keys] == [{"kty", "crv", "x", "kid", "alg", "use"}]
    assert (keys[0]["kty"], keys[0]["crv"], keys[0]["alg"]) == ("OKP", "Ed25519", "EdDSA")
    ctx = await service.resources.command_context()
    token = ctx.keyring.issue_access_token(
        issuer=ctx.tenant.issuer, audience=ctx.tenant.resource, subject="usr_1",
        client_id="reg_1", scopes=("api.read",), jti="cred_1", now=service.clock.now(),
        ttl=timedelta(hours=1),
    )  # fmt: skip
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        audience=f"{PUBLIC_URL}/api/",
        issuer=PUBLIC_URL,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == "usr_1"
    assert claims["scope"] == "api.read"
