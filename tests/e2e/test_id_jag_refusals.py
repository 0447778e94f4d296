"""Every way an ID-JAG or a logout token is refused: the spec's code and status, and no event
written (spec §7.3, §8, §9). Plus the replay store shared by two service processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from service.tenancy.config import ID_JAG
from tests.support.app_client import ADMIN_TOKEN, PUBLIC_URL, SECRET_KEY, Service
from tests.support.backends import Backend
from tests.support.id_jag import (
    ADMIN,
    LOGOUT,
    jag,
    me,
    present,
    registered,
    trusting_service,
)
from tests.support.idp import IdentityProvider
from tests.support.serve_process import authledger_env, serving
from tests.support.waiting import wait_until

Mint = Callable[[Service, IdentityProvider], str]


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with trusting_service(backend, database_url, idp) as running:
        yield running


def _claims(svc: Service, idp: IdentityProvider, **kwargs: Any) -> dict[str, Any]:
    return idp.id_jag_claims(aud=PUBLIC_URL, now=svc.clock.now(), **kwargs)


ID_JAG_CASES: dict[str, tuple[Mint, str]] = {
    "wrong typ": (lambda s, i: jag(s, i, header={"typ": "JWT"}), "invalid_request"),
    "alg none": (lambda s, i: i.unsigned(_claims(s, i)), "invalid_signature"),
    "HS256 keyed with the public key": (
        lambda s, i: i.hmac_with_public_key(_claims(s, i)),
        "invalid_signature",
    ),
    "wrong aud": (lambda s, i: jag(s, i, aud="https://other.example"), "invalid_audience"),
    "the resource URL as aud": (lambda s, i: jag(s, i, aud=s.tenant.resource), "invalid_audience"),
    "expired": (
        lambda s, i: i.mint_id_jag(aud=PUBLIC_URL, now=s.clock.now() - timedelta(minutes=7)),
        "expired",
    ),
    "iat in the future beyond skew": (
        lambda s, i: i.mint_id_jag(aud=PUBLIC_URL, now=s.clock.now() + timedelta(seconds=120)),
        "invalid_request",
    ),
    "missing jti": (lambda s, i: jag(s, i, remove=("jti",)), "invalid_request"),
    "unverified email and no phone": (
        lambda s, i: jag(s, i, overrides={"email_verified": False}),
        "missing_verified_email",
    ),
    "email_verified as a string": (
        lambda s, i: jag(s, i, overrides={"email_verified": "true"}),
        "missing_verified_email",
    ),
    "unknown kid after refetch": (
        lambda s, i: i.signed_by_stranger(_claims(s, i)),
        "invalid_signature",
    ),
    "tampered payload": (
        lambda s, i: i.tampered(_claims(s, i, sub="mallory"), signed=_claims(s, i)),
        "invalid_signature",
    ),
    "client_id of someone else": (
        lambda s, i: jag(s, i, overrides={"client_id": "https://evil.example/agent.json"}),
        "invalid_client_id",
    ),
}


@pytest.mark.parametrize("case", list(ID_JAG_CASES))
async def test_id_jag_refused(case: str, svc: Service, idp: IdentityProvider) -> None:
    mint, code = ID_JAG_CASES[case]
    assertion = mint(svc, idp)
    head = await svc.head()
    response = await present(svc, assertion)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == code
    assert await svc.head() == head


async def test_unknown_issuer_is_refused_before_any_key_fetch(svc: Service) -> None:
    async with IdentityProvider() as stranger:
        head = await svc.head()
        response = await present(svc, jag(svc, stranger))
        assert response.json()["error"] == "invalid_issuer"
        assert stranger.jwks_requests == 0
        assert await svc.head() == head


async def test_issuer_removed_after_its_keys_were_cached(
    svc: Service, idp: IdentityProvider
) -> None:
    await registered(svc, jag(svc, idp))
    removed = await svc.client.delete(
        "/admin/trusted-issuers", params={"issuer": idp.issuer}, headers=ADMIN
    )
    assert removed.status_code == 200
    head = await svc.head()
    response = await present(svc, jag(svc, idp))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_issuer"
    assert await svc.head() == head


async def test_a_forgery_naming_a_registered_subject_gets_nothing_of_its_delegation(
    svc: Service, idp: IdentityProvider
) -> None:
    """The delegation an ID-JAG names is read with its issuer's entry, before the signature
    is checked (one round trip); a forgery for a registered subject (the trusted `iss`, other
    keys) is still refused on its signature, and the delegation is neither used nor moved."""
    first = await registered(svc, jag(svc, idp, sub="agent-7"))
    user_id = (await me(svc, first["credential"])).json()["user_id"]
    async with IdentityProvider(issuer=idp.issuer) as impostor:  # same iss, other keys
        forged = impostor.mint_id_jag(aud=PUBLIC_URL, now=svc.clock.now(), sub="agent-7")
    head = await svc.head()
    response = await present(svc, forged, "api_key")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    assert await svc.head() == head
    delegation = await svc.row("delegations", "user_id", user_id)
    assert (delegation["uses"], delegation["version"]) == (1, 2)
    again = await registered(svc, jag(svc, idp, sub="agent-7"), "api_key")  # the real one still
    assert (await me(svc, again["credential"])).json()["user_id"] == user_id


async def test_assertion_over_the_size_cap(svc: Service, idp: IdentityProvider) -> None:
    big = jag(svc, idp, overrides={"name": "x" * 9000})
    head = await svc.head()
    response = await present(svc, big)
    assert response.status_code in (400, 413)
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head


LOGOUT_CASES: dict[str, Callable[[Service, IdentityProvider], str]] = {
    "with a nonce": lambda s, i: i.mint_logout_token(
        aud=PUBLIC_URL, now=s.clock.now(), overrides={"nonce": "n-1"}
    ),
    "without events": lambda s, i: i.mint_logout_token(
        aud=PUBLIC_URL, now=s.clock.now(), remove=("events",)
    ),
    "with another event": lambda s, i: i.mint_logout_token(
        aud=PUBLIC_URL,
        now=s.clock.now(),
        overrides={"events": {"http://schemas.openid.net/event/backchannel-logout": {}}},
    ),
}


@pytest.mark.parametrize("case", list(LOGOUT_CASES))
async def test_logout_token_refused(case: str, svc: Service, idp: IdentityProvider) -> None:
    credential = (await registered(svc, jag(svc, idp)))["credential"]
    token = LOGOUT_CASES[case](svc, idp)
    head = await svc.head()
    response = await svc.client.post("/agent/auth/revoke", content=token, headers=LOGOUT)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head
    me = await svc.client.get("/api/me", headers={"Authorization": f"Bearer {credential}"})
    assert me.status_code == 200


async def test_logout_token_from_an_untrusted_issuer(svc: Service, idp: IdentityProvider) -> None:
    await registered(svc, jag(svc, idp))
    async with IdentityProvider(issuer=idp.issuer) as impostor:  # same iss, other keys
        impostor.port = idp.port
        token = impostor.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now())
    async with IdentityProvider() as stranger:
        untrusted = stranger.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now())
    head = await svc.head()
    forged = await svc.client.post("/agent/auth/revoke", content=token, headers=LOGOUT)
    assert forged.json()["error"] == "invalid_signature"
    unknown = await svc.client.post("/agent/auth/revoke", content=untrusted, headers=LOGOUT)
    assert unknown.json()["error"] == "invalid_issuer"
    assert await svc.head() == head


def _env(backend: Backend, database_url: str) -> dict[str, str]:
    """A second `serve` process on the same database, with the in-test service's secrets."""
    return authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url,
        AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_ADMIN_TOKEN=ADMIN_TOKEN,
        AUTHLEDGER_SECRET_KEY=SECRET_KEY,
        AUTHLEDGER_PUBLIC_URL=PUBLIC_URL,
        AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP="true",
    )


async def test_a_second_process_refuses_a_jti_the_first_accepted(
    backend: Backend, database_url: str, svc: Service, idp: IdentityProvider
) -> None:
    env = _env(backend, database_url)
    body = {"type": "identity_assertion", "assertion_type": ID_JAG,
            "requested_credential_type": "api_key"}  # fmt: skip
    async with serving([], env) as other:
        first = jag(svc, idp)
        await registered(svc, first, "api_key")
        replay = await other.http.post("/agent/auth", json={**body, "assertion": first})
        assert replay.status_code == 400
        assert replay.json()["error"] == "replay_detected"
        second = jag(svc, idp)
        accepted = await other.http.post("/agent/auth", json={**body, "assertion": second})
        assert accepted.status_code == 200, accepted.text
        assert (await present(svc, second, "api_key")).json()["error"] == "replay_detected"


async def test_a_logout_taken_by_another_process_is_refused_here(
    backend: Backend, database_url: str, svc: Service, idp: IdentityProvider
) -> None:
    """The credential checked (and cached) here is refused here once another process took
    the provider's logout token: the log feed carries the revocation across."""
    credential = (await registered(svc, jag(svc, idp, sub="ana"), "api_key"))["credential"]
    assert (await me(svc, credential)).status_code == 200
    async with serving([], _env(backend, database_url)) as other:
        logout = idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now(), sub="ana")
        taken = await other.http.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
        assert taken.json() == {"revoked": 1}

    async def refused() -> bool:
        return (await me(svc, credential)).status_code == 401

    await wait_until(refused, within=5.0, what="/api/me refusing the key")
