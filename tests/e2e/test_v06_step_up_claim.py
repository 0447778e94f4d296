"""An ID-JAG step-up completed by its person over HTTP (contract case 24; docs/design/
v06-dialect.md, R2'' then R6'): V1 with an ID-JAG whose verified address is an existing
user's answers 401 `interaction_required` with a ceremony; the user signs in on the pages as
that address and types the code; the claim links the subject (`delegation.created`, matched
by step-up), the agent's poll delivers for the subject, and a fresh ID-JAG is then a clean
match. Real Postgres, NATS, SMTP, and a test provider serving its JWKS over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.crypto.assertions import verify_assertion
from service.crypto.tokens import registration_id_for_identity
from tests.e2e.test_v06_id_jag import ALL_SCOPES, jag, present, user_with_address
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import trust
from tests.support.idp import IdentityProvider
from tests.support.person import claimed_by, open_claim_page, type_code
from tests.support.v06_claim import link_token, poll
from tests.support.v06_door import exchange, me, v06_service, written_by

ADDRESS = "ana@example.net"


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as service:
        await trust(service, idp)
        yield service


async def test_after_step_up_clean(svc: Service, idp: IdentityProvider) -> None:
    """Case 24: the step-up's person, signed in as the matched address, sees which provider
    asks and approves with the code: `registration.claimed` and `delegation.created`
    (matched_by step_up) for the matched user; the poll delivers every scope (a credential
    of the provider and the delegation) with an assertion for the subject, which exchanges
    through the delegation; a fresh ID-JAG of the subject → 200, its deterministic id,
    exchanging for that user."""
    user_id = await user_with_address(svc, idp, ADDRESS)
    stepped = await present(svc, jag(svc, idp, sub="agent-24", overrides={"email": ADDRESS}))
    assert stepped.status_code == 401, stepped.text
    body = stepped.json()
    link, code = link_token(body["claim"]["verification_uri"]), body["claim"]["user_code"]
    page = await open_claim_page(svc, link, ADDRESS)
    assert page.status_code == 200, page.text
    assert f"your account at <strong>{idp.issuer}</strong>" in page.text
    assert "No account has this address yet" not in page.text
    approved = await type_code(svc, link, code, ADDRESS)
    assert approved.status_code == 200, approved.text
    written = await written_by(svc, approved)
    assert [e["type"] for e in written] == ["registration.claimed", "delegation.created"]
    claimed, linked = (e["payload"] for e in written)
    assert claimed["user_id"] == linked["user_id"] == user_id == await claimed_by(svc, link)
    assert (linked["matched_by"], linked["issuer"]) == ("step_up", idp.issuer)
    subject_id = registration_id_for_identity(idp.issuer, "agent-24", PUBLIC_URL)
    assert linked["delegation_id"] == "dlg_" + subject_id[4:]

    delivered = await poll(svc.client, body["claim_token"])
    assert delivered.status_code == 200, delivered.text
    answer = delivered.json()
    assert answer["scope"] == " ".join(ALL_SCOPES)
    ctx = await svc.resources.command_context()
    claims = verify_assertion(
        ctx.keyring, answer["identity_assertion"], issuer=PUBLIC_URL, now=svc.clock.now()
    )
    assert (claims.subject, claims.gen, claims.email) == (subject_id, 0, ADDRESS)
    _, issued = await written_by(svc, delivered)
    payload = issued["payload"]
    assert (payload["issued_via"], payload["user_id"]) == ("id_jag", user_id)
    assert (payload["issuer"], payload["delegation_id"]) == (idp.issuer, linked["delegation_id"])
    assert payload["registration_id"] == body["registration_id"]
    via_subject = await exchange(svc.client, answer["identity_assertion"])
    assert via_subject.status_code == 200, via_subject.text

    fresh = await present(svc, jag(svc, idp, sub="agent-24", overrides={"email": ADDRESS}))
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["registration_id"] == subject_id
    assert [e["type"] for e in await written_by(svc, fresh)] == ["delegation.used"]
    token = await exchange(svc.client, fresh.json()["identity_assertion"])
    assert token.status_code == 200, token.text
    seen = await me(svc.client, token.json()["access_token"])
    assert seen.json()["user_id"] == user_id
