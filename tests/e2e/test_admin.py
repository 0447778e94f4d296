"""The operator's API: the trust list and revocations behind the admin token, and bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.app_client import Service, running_service
from tests.support.backends import Backend
from tests.support.id_jag import ADMIN, jag, me, registered, trust
from tests.support.idp import IdentityProvider

ISSUERS = "/admin/trusted-issuers"
REVOCATIONS = "/admin/revocations"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as s:
        yield s


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Basic eA=="}],
)
async def test_admin_routes_need_the_admin_token(svc: Service, headers: dict[str, str]) -> None:
    head = await svc.head()
    for method, path, body in (
        ("GET", ISSUERS, None),
        ("POST", ISSUERS, {"issuer": "https://idp.example"}),
        ("POST", REVOCATIONS, {"user_id": "usr_x"}),
    ):
        response = await svc.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    refused = await svc.client.delete(ISSUERS, params={"issuer": "https://x.example"})
    assert refused.status_code == 401
    assert await svc.head() == head


async def test_trust_list_round_trip(svc: Service) -> None:
    entry = {"issuer": "https://idp.example", "algorithms": ["EdDSA"], "display_name": "IdP",
             "link_by_verified_email": False, "required_amr": ["mfa"]}  # fmt: skip
    added = await svc.client.post(ISSUERS, json=entry, headers=ADMIN)
    assert added.status_code == 201
    assert added.json()["outcome"] == "trusted"
    same = await svc.client.post(ISSUERS, json=entry, headers=ADMIN)
    assert (same.status_code, same.json()["outcome"]) == (200, "unchanged")
    listed = (await svc.client.get(ISSUERS, headers=ADMIN)).json()["trusted_issuers"]
    assert len(listed) == 1
    assert {k: listed[0][k] for k in entry} == entry
    assert listed[0]["jwks_uri"] is None
    gone = await svc.client.delete(
        ISSUERS, params={"issuer": "https://idp.example", "reason": "offboarded"}, headers=ADMIN
    )
    assert gone.status_code == 200
    assert (await svc.client.get(ISSUERS, headers=ADMIN)).json() == {"trusted_issuers": []}
    again = await svc.client.delete(
        ISSUERS, params={"issuer": "https://idp.example"}, headers=ADMIN
    )
    assert again.status_code == 404
    assert again.json()["error"] == "not_found"
    assert await svc.count("issuer.trusted") == 1
    assert await svc.count("issuer.removed") == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"issuer": "http://idp.example"},
        {"issuer": "https://idp.example", "algorithms": ["HS256"]},
        {"issuer": "https://idp.example", "algorithms": []},
        {"issuer": "https://idp.example", "surprise": 1},
        {"issuer": "https://idp.example", "link_by_verified_email": "yes"},
        {"issuer": "https://idp.example", "jwks_uri": "https://idp.example/k#frag"},
        {"issuer": "https://" + "a" * 3000 + ".example"},
    ],
)
async def test_bad_trust_entries_get_400_and_write_nothing(
    svc: Service, body: dict[str, Any]
) -> None:
    head = await svc.head()
    response = await svc.client.post(ISSUERS, json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head


@pytest.mark.parametrize(
    "body",
    [{}, {"user_id": "usr_1", "issuer": "https://idp.example"}, {"credential_id": ""},
     {"user_id": "usr_1", "reason": 5}],
)  # fmt: skip
async def test_a_revocation_names_exactly_one_target(svc: Service, body: dict[str, Any]) -> None:
    head = await svc.head()
    response = await svc.client.post(REVOCATIONS, json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head


async def test_incident_response_revokes_everything_a_provider_issued(svc: Service) -> None:
    async with IdentityProvider() as idp, IdentityProvider() as other:
        await trust(svc, idp)
        await trust(svc, other)
        theirs = [(await registered(svc, jag(svc, idp, sub=f"s{n}")))["credential"]
                  for n in range(3)]  # fmt: skip
        kept = (await registered(svc, jag(svc, other)))["credential"]
        anonymous = (await svc.anonymous())["credential"]
        response = await svc.client.post(
            REVOCATIONS, json={"issuer": idp.issuer, "reason": "key leak"}, headers=ADMIN
        )
        assert response.status_code == 200
        assert response.json()["revoked"] == 3
        for credential in theirs:
            assert (await me(svc, credential)).status_code == 401
        assert (await me(svc, kept)).status_code == 200
        assert (await me(svc, anonymous)).status_code == 200
        by_user = (await me(svc, kept)).json()["user_id"]
        user = await svc.client.post(REVOCATIONS, json={"user_id": by_user}, headers=ADMIN)
        assert user.json()["revoked"] == 1
        assert (await me(svc, kept)).status_code == 401
