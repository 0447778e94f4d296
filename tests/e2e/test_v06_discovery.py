"""The v0.6 dialect's discovery over HTTP (contract cases 1, 2, 3 and 34; docs/design/
v06-dialect.md, slice S1): a tenant that opens the `v06` door publishes the union of both
doors' AS metadata (O-O) on its own host, while a v1 agent on that same host finds and uses
everything it did before. The default tenant keeps the v1 door alone (the default until the
v0.6 routes exist), so its document does not change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest

from service.commands.context import Caller
from service.commands.tenants import create_tenant
from service.tenancy.config import CLAIM_GRANT, ID_JAG, JWT_BEARER, REVOKED_EVENT, TenantConfig
from tests.support.app_client import PUBLIC_URL, Service, link_of, otp_of, running_service
from tests.support.backends import Backend

BOTH_URL = "https://auth.both.example"  # doors v1 and v06
V06_URL = "https://auth.v06.example"  # the v06 door alone
AS_METADATA = "/.well-known/oauth-authorization-server"
OPERATOR = Caller(actor="test")
EMAIL = "ana.lopez@example.net"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as s:
        ctx = await s.resources.command_context()
        for tenant_id, url, doors in (("both", BOTH_URL, "v1 v06"), ("solo", V06_URL, "v06")):
            host = url.removeprefix("https://")
            settings = {"public_url": url, "doors": doors, "assertion_ttl": "7200"}
            await create_tenant(ctx, s.resources.settings, tenant_id, hosts=[host],
                                settings=settings, caller=OPERATOR)  # fmt: skip
        yield s


def client_for(svc: Service, url: str) -> httpx.AsyncClient:
    transport = svc.client._transport  # the same app, reached by the tenant's own host name
    return httpx.AsyncClient(transport=transport, base_url=url)


@pytest.fixture
async def both(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(svc, BOTH_URL) as client:
        yield client


def tenant_config(svc: Service, tenant_id: str) -> TenantConfig:
    assert svc.resources.tenants is not None
    config = svc.resources.tenants.get(tenant_id)
    assert config is not None
    return config


async def metadata(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(AS_METADATA)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    document: dict[str, Any] = response.json()
    return document


async def test_as_metadata_fields(svc: Service, both: httpx.AsyncClient) -> None:
    """Case 1: `issuer`, `token_endpoint`, `revocation_endpoint` and both grant URNs, with no
    client authentication; the default tenant opens both doors by default, so it advertises
    them too, on its own host."""
    document = await metadata(both)
    assert document["issuer"] == BOTH_URL
    assert document["token_endpoint"] == f"{BOTH_URL}/oauth2/token"
    assert document["revocation_endpoint"] == f"{BOTH_URL}/oauth2/revoke"
    assert document["grant_types_supported"] == [JWT_BEARER, CLAIM_GRANT]
    assert document["token_endpoint_auth_methods_supported"] == ["none"]
    assert document["revocation_endpoint_auth_methods_supported"] == ["none"]
    assert document["jwks_uri"] == f"{BOTH_URL}/.well-known/jwks.json"
    default = await metadata(svc.client)
    assert default["issuer"] == PUBLIC_URL
    assert default["token_endpoint"] == f"{PUBLIC_URL}/oauth2/token"
    assert default["revocation_endpoint"] == f"{PUBLIC_URL}/oauth2/revoke"
    assert default["grant_types_supported"] == [JWT_BEARER, CLAIM_GRANT]
    assert default["agent_auth"]["identity_endpoint"] == f"{PUBLIC_URL}/agent/identity"


async def test_agent_auth_block(svc: Service, both: httpx.AsyncClient) -> None:
    """Case 2: the four URLs, the three types, `events_supported`; the assertion types are
    the ID-JAG URN alone where only v0.6 is open, and the union (URN first, then v1's
    verified_email) where both are."""
    async with client_for(svc, V06_URL) as solo:
        alone = (await metadata(solo))["agent_auth"]
    assert alone == {
        "skill": f"{V06_URL}/auth.md",
        "identity_endpoint": f"{V06_URL}/agent/identity",
        "claim_endpoint": f"{V06_URL}/agent/identity/claim",
        "events_endpoint": f"{V06_URL}/agent/event/notify",
        "identity_types_supported": ["anonymous", "identity_assertion", "service_auth"],
        "identity_assertion": {"assertion_types_supported": [ID_JAG]},
        "events_supported": [REVOKED_EVENT],
    }
    merged = (await metadata(both))["agent_auth"]
    for key in ("identity_endpoint", "claim_endpoint", "events_endpoint"):
        assert merged[key] == alone[key].replace(V06_URL, BOTH_URL)
    assert merged["identity_types_supported"] == alone["identity_types_supported"]
    assert merged["identity_assertion"]["assertion_types_supported"] == [ID_JAG, "verified_email"]
    assert merged["events_supported"] == [REVOKED_EVENT]


async def test_api_without_token_challenges(both: httpx.AsyncClient) -> None:
    """Case 3: the API without a token answers 401 with a challenge naming the tenant's
    path-inserted resource metadata, which names this API as its resource."""
    response = await both.get("/api/me")
    assert response.status_code == 401
    prm_url = f"{BOTH_URL}/.well-known/oauth-protected-resource/api/"
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{prm_url}"'
    prm = (await both.get(prm_url)).json()
    assert prm["resource"] == f"{BOTH_URL}/api/"
    assert prm["authorization_servers"] == [BOTH_URL]


async def test_metadata_keeps_every_v1_key(svc: Service, both: httpx.AsyncClient) -> None:
    """Case 34 (O-O): on the host that opens both doors every v1 key is what a v1-only
    tenant publishes, and a v1 agent that reads only those keys registers, has the person
    claim it through the mail and the claim page, and calls the API as before."""
    document = await metadata(both)
    config = tenant_config(svc, "both")
    v1_document = msgspec.structs.replace(config, doors=("v1",)).authorization_server_metadata()
    for key, value in v1_document.items():
        if key != "agent_auth":
            assert document[key] == value, key
    for key, value in v1_document["agent_auth"].items():
        if key == "identity_types_supported":
            assert set(value) <= set(document["agent_auth"][key])
        else:
            assert document["agent_auth"][key] == value, key

    agent_auth = document["agent_auth"]
    registered = await both.post(
        agent_auth["register_uri"],
        json={"type": "anonymous", "requested_credential_type": "api_key"},
    )
    assert registered.status_code == 200
    answer = registered.json()
    assert answer["claim_url"] == agent_auth["claim_uri"]
    started = await both.post(
        answer["claim_url"], json={"claim_token": answer["claim_token"], "email": EMAIL}
    )
    assert started.status_code == 200
    page = await both.get(link_of(await svc.mail(1)))
    assert page.status_code == 200
    code = otp_of((await svc.press_button(page)).text)
    completed = await both.post(
        f"{agent_auth['claim_uri']}/complete",
        json={"claim_token": answer["claim_token"], "otp": code},
    )
    assert completed.json()["status"] == "claimed"
    me = await both.get("/api/me", headers={"Authorization": f"Bearer {answer['credential']}"})
    assert me.status_code == 200
    assert me.json()["scopes"] == ["api.read", "api.write"]


async def test_retired_keys_stay_published_while_an_assertion_may_live(
    svc: Service, both: httpx.AsyncClient
) -> None:
    """The JWKS window is the longer of the access token's and the assertion's lifetimes,
    plus 60 s (design section 6): with assertions of 2 h and access tokens of 1 h, a key
    retired 90 min ago is still published; past 2 h and a minute it is gone."""
    config = tenant_config(svc, "both")
    assert (config.access_token_ttl, config.assertion_ttl) == (3_600, 7_200)
    ring = (await svc.resources.context_for(config)).keyring
    retired = ring.active
    assert retired is not None
    await ring.rotate(svc.resources.pool, svc.clock.now())

    async def kids() -> set[str]:
        keys = (await both.get("/.well-known/jwks.json")).json()["keys"]
        return {key["kid"] for key in keys}

    assert retired.kid in await kids()
    svc.clock.advance(timedelta(minutes=90))
    assert retired.kid in await kids()
    svc.clock.advance(timedelta(minutes=31))  # 2 h 1 min after the rotation
    assert retired.kid not in await kids()
    assert len(await kids()) == 1


async def test_a_shut_v1_door_answers_404_and_writes_nothing(svc: Service) -> None:
    """A tenant that keeps the v1 door shut answers its routes 404 `not_found` before
    reading anything (a valid-looking body, a claim link), and nothing is written; the
    default tenant's v1 door on the same process stays open."""
    head = await svc.head()
    async with client_for(svc, V06_URL) as solo:
        for path, body in (
            ("/agent/auth", {"type": "anonymous", "requested_credential_type": "api_key"}),
            ("/agent/auth/claim", {"claim_token": "clm_x", "email": EMAIL}),
            ("/agent/auth/claim/complete", {"claim_token": "clm_x", "otp": "123456"}),
            ("/agent/auth/claim/attempt/challenge", {"claim_attempt_token": "cvt_x"}),
        ):
            response = await solo.post(path, json=body)
            assert (response.status_code, response.json()["error"]) == (404, "not_found"), path
        page = await solo.get("/agent/auth/claim/view", params={"token": "cvt_x"})
        assert page.status_code == 404
    assert await svc.head() == head
    assert (await svc.anonymous())["registration_id"].startswith("reg_")
