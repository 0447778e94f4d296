"""ID-JAG registration and logout-token revocation end to end (spec §5.3, §7, §8): a real test
provider serving its JWKS over HTTP, the trust list set through the admin API, the agent and
the provider over HTTP, the checks against the real Postgres log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import (
    LOGOUT,
    jag,
    me,
    present,
    registered,
    trust,
    trusting_service,
)
from tests.support.idp import IdentityProvider


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with trusting_service(backend, database_url, idp) as running:
        yield running


async def test_id_jag_registers_and_the_access_token_works(
    svc: Service, idp: IdentityProvider
) -> None:
    body = await registered(svc, jag(svc, idp, sub="agent-7"))
    assert list(body) == [
        "registration_id", "registration_type", "credential_type", "credential",
        "credential_expires", "scopes",
    ]  # fmt: skip
    assert body["registration_type"] == "agent-provider"
    assert body["registration_id"].startswith("reg_")
    assert len(body["registration_id"]) == 26
    assert body["scopes"] == ["api.read", "api.write"]
    assert body["credential_expires"] is not None
    assert "refresh_token" not in body
    principal = await me(svc, body["credential"])
    assert principal.status_code == 200, principal.text
    assert principal.json()["scopes"] == ["api.read", "api.write"]
    user_id = principal.json()["user_id"]
    assert user_id.startswith("usr_")
    delegation = await svc.row("delegations", "user_id", user_id)
    assert (delegation["issuer"], delegation["matched_by"], delegation["uses"]) == (
        idp.issuer,
        "provisioned",
        1,
    )
    again = await registered(svc, jag(svc, idp, sub="agent-7"), "api_key")
    assert again["registration_id"] == body["registration_id"]
    assert again["credential"].startswith("sk_")
    assert again["credential_expires"] is None
    assert (await me(svc, again["credential"])).json()["user_id"] == user_id
    assert await svc.count("user.created") == 1
    assert await svc.count("delegation.created") == 1
    assert await svc.count("delegation.used") == 2


async def test_one_subject_from_several_agents_at_once_gets_every_credential(
    svc: Service, idp: IdentityProvider
) -> None:
    """A returning subject's registrations decide on the delegation row's version (not a fold
    of its growing stream): four at once all answer 200 with credentials of their own, the
    losers of each race retried, and the stream and the row agree afterwards."""
    first = await registered(svc, jag(svc, idp, sub="agent-busy"))
    answers = await asyncio.gather(
        *(present(svc, jag(svc, idp, sub="agent-busy"), "api_key") for _ in range(4))
    )
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.json()["credential"] for a in answers}) == 4
    user_id = (await me(svc, first["credential"])).json()["user_id"]
    delegation = await svc.row("delegations", "user_id", user_id)
    assert (delegation["uses"], delegation["version"]) == (5, 6)
    versions = await svc.resources.pool.fetch(
        "SELECT type, stream_version FROM events WHERE stream_type = 'delegation' ORDER BY position"
    )
    assert [(r["type"], r["stream_version"]) for r in versions] == [
        ("delegation.created", 1),
        *(("delegation.used", v) for v in range(2, 7)),
    ]


async def test_same_jti_twice_is_replay_detected_and_writes_nothing(
    svc: Service, idp: IdentityProvider
) -> None:
    assertion = jag(svc, idp)
    await registered(svc, assertion)
    head = await svc.head()
    replay = await present(svc, assertion)
    assert replay.status_code == 400
    assert replay.json()["error"] == "replay_detected"
    assert await svc.head() == head


async def test_one_assertion_presented_at_once_registers_once(
    svc: Service, idp: IdentityProvider
) -> None:
    """The replay guard of a batch is one statement (events.writer groups it): the same
    assertion sent four times at once, beside three others of their own, gives one credential
    for it and `replay_detected` for its copies; the others are not held back by them."""
    await registered(svc, jag(svc, idp, sub="agent-warm"))  # the trust list and keys are warm
    same = jag(svc, idp, sub="agent-twice")
    others = [jag(svc, idp, sub=f"agent-other-{n}") for n in range(3)]
    answers = await asyncio.gather(*(present(svc, a, "api_key") for a in [same] * 4 + others))
    copies, rest = answers[:4], answers[4:]
    assert sorted(a.status_code for a in copies) == [200, 400, 400, 400], [a.text for a in copies]
    assert all(a.json()["error"] == "replay_detected" for a in copies if a.status_code == 400)
    assert [a.status_code for a in rest] == [200] * 3, [a.text for a in rest]
    assert await svc.count("delegation.used") == 1 + 1 + 3
    seen = await svc.resources.pool.fetchval("SELECT count(*) FROM seen_jtis")
    assert seen == 1 + 1 + 3


async def test_rejected_assertion_does_not_burn_its_jti(
    svc: Service, idp: IdentityProvider
) -> None:
    """W9: a token refused for another reason keeps its jti usable (nothing took effect)."""
    jti = "jti-kept"
    wrong = jag(svc, idp, aud="https://elsewhere.example", overrides={"jti": jti})
    assert (await present(svc, wrong)).json()["error"] == "invalid_audience"
    await registered(svc, jag(svc, idp, overrides={"jti": jti}))


async def test_key_rotation_works_after_exactly_one_refetch(
    svc: Service, idp: IdentityProvider
) -> None:
    await registered(svc, jag(svc, idp))
    await registered(svc, jag(svc, idp))
    assert idp.jwks_requests == 1
    svc.clock.advance(timedelta(seconds=31))  # past the unknown-kid refetch interval
    idp.rotate()
    await registered(svc, jag(svc, idp))
    assert idp.jwks_requests == 2
    await registered(svc, jag(svc, idp))
    assert idp.jwks_requests == 2


async def test_email_links_an_existing_user_unless_the_issuer_may_not(
    svc: Service, idp: IdentityProvider
) -> None:
    await trust(svc, idp, link_by_verified_email=True)  # opt-in since security finding 2
    first = await registered(svc, jag(svc, idp, sub="s1", overrides={"email": "Ana@Example.net"}))
    user = (await me(svc, first["credential"])).json()["user_id"]
    linked = await registered(svc, jag(svc, idp, sub="s2", overrides={"email": "ana@example.net"}))
    assert (await me(svc, linked["credential"])).json()["user_id"] == user
    await trust(svc, idp, link_by_verified_email=False)
    alone = await registered(svc, jag(svc, idp, sub="s3", overrides={"email": "ana@example.net"}))
    assert (await me(svc, alone["credential"])).json()["user_id"] != user
    again = await registered(svc, jag(svc, idp, sub="s1", overrides={"email": "new@example.net"}))
    assert (await me(svc, again["credential"])).json()["user_id"] == user  # first link wins


async def test_logout_revokes_that_subjects_credentials_only(
    svc: Service, idp: IdentityProvider
) -> None:
    mine = [(await registered(svc, jag(svc, idp, sub="ana"), k))["credential"]
            for k in ("access_token", "api_key")]  # fmt: skip
    other = (await registered(svc, jag(svc, idp, sub="bob")))["credential"]
    logout = idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now(), sub="ana")
    response = await svc.client.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 2}
    for credential in mine:
        refused = await me(svc, credential)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer ")
        assert "resource_metadata=" in refused.headers["www-authenticate"]
    assert (await me(svc, other)).status_code == 200
    assert await svc.count("credential.revoked") == 2
    assert await svc.count("delegation.revoked") == 1
    head = await svc.head()
    replayed = await svc.client.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "replay_detected"
    assert await svc.head() == head
    fresh = await registered(svc, jag(svc, idp, sub="ana"))  # O9: later ID-JAGs still work
    assert (await me(svc, fresh["credential"])).status_code == 200


async def test_logout_form_body_is_accepted_and_unknown_subject_revokes_none(
    svc: Service, idp: IdentityProvider
) -> None:
    logout = idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now(), sub="nobody")
    response = await svc.client.post("/agent/auth/revoke", data={"logout_token": logout})
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 0}
    again = await svc.client.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
    assert again.json()["error"] == "replay_detected"


async def test_revoke_needs_the_logout_media_type(svc: Service, idp: IdentityProvider) -> None:
    logout = idp.mint_logout_token(aud=PUBLIC_URL, now=svc.clock.now())
    response = await svc.client.post(
        "/agent/auth/revoke", content=logout, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
