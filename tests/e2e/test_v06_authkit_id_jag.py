"""V1 with an ID-JAG in the v0.6 door's AuthKit profile over HTTP (contract [PR28]): a clean
subject's answer nests (`identity{…}`, a flat `scopes`); a step-up's 401 carries `id`, `type`,
`scopes{post_claim}` and `claim{…attempt}` without a code, the account's owner signs in,
authorizes and reads the code to the agent, which completes the claim: the subject is linked
and a later ID-JAG is a clean match. A real test provider serves its JWKS over HTTP; Postgres,
NATS and SMTP are real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.crypto.tokens import registration_id_for_identity
from tests.e2e.test_v06_id_jag import idp, jag, present, user_with_address
from tests.support.app_client import PUBLIC_URL, Service
from tests.support.authkit import (
    authkit_service,
    authorize,
    browser_of,
    complete,
    refresh,
    sign_in_at,
)
from tests.support.backends import Backend
from tests.support.id_jag import trust
from tests.support.idp import IdentityProvider
from tests.support.v06_door import assert_no_store, me, token_for, written_by

__all__ = ["idp"]  # the test provider fixture, shared with test_v06_id_jag.py
ALL = ["api.read", "api.write"]
OWNER = {"email": "ana@example.net"}  # the existing user's address


@pytest.fixture
async def svc(backend: Backend, database_url: str, idp: IdentityProvider) -> AsyncIterator[Service]:
    async with authkit_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as s:
        await trust(s, idp)
        yield s


async def test_clean_subject_nested(svc: Service, idp: IdentityProvider) -> None:
    """A new subject whose address finds no one: 200 `{id, type, identity, scopes}` with the
    deterministic id and every scope (a flat list); the assertion exchanges."""
    response = await present(svc, jag(svc, idp, sub="agent-ak"))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert set(body) == {"id", "type", "identity", "scopes"}
    assert body["id"] == registration_id_for_identity(idp.issuer, "agent-ak", PUBLIC_URL)
    assert (body["type"], body["scopes"]) == ("identity_assertion", ALL)
    assert set(body["identity"]) == {"assertion", "expires_at"}
    token = await token_for(svc.client, body["identity"]["assertion"])
    assert (await me(svc.client, token)).json()["scopes"] == ALL


async def test_step_up_confirmed_by_the_owner(svc: Service, idp: IdentityProvider) -> None:
    """An address that is an existing user's: 401 `interaction_required` in the nested shape,
    no code for the agent, a `confirm` attempt; the owner (signed in as that address) sees
    the code, the agent completes: the delegation is made (step_up), the refresh token is an
    `id_jag` credential of it, refresh rotates; a fresh ID-JAG of the subject is then clean."""
    await user_with_address(svc, idp, "ana@example.net")
    response = await present(svc, jag(svc, idp, sub="agent-su", overrides=OWNER))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('AgentAuth error="interaction_required"')
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message", "error_description", "id", "type", "scopes", "claim"}
    assert body["scopes"] == {"post_claim": ALL}
    assert set(body["claim"]) == {"token", "expires_at", "url", "attempt"}
    assert "user_code" not in str(body)
    written = await written_by(svc, response)
    started = [e for e in written if e["type"] == "claim.attempt_started"]
    assert [e["payload"]["ceremony"] for e in started] == ["confirm"]
    assert "claim.otp_issued" not in [e["type"] for e in written]

    async with browser_of(svc) as owner:
        page = await sign_in_at(svc, owner, body["claim"]["attempt"]["verification_uri"],
                                "ana@example.net")  # fmt: skip
        code = await authorize(owner, page)
    done = await complete(svc.client, body["claim"]["token"], code)
    assert done.status_code == 200, done.text
    events = {e["type"]: e["payload"] for e in await written_by(svc, done)}
    assert events["delegation.created"]["matched_by"] == "step_up"
    issued = events["credential.issued"]
    assert (issued["kind"], issued["issued_via"]) == ("refresh_token", "id_jag")
    assert issued["delegation_id"] == events["delegation.created"]["delegation_id"]
    identity = done.json()["identity"]
    token = await token_for(svc.client, identity["assertion"])
    assert (await me(svc.client, token)).json()["scopes"] == ALL
    rotated = await refresh(svc.client, identity["refresh_token"]["value"])
    assert rotated.status_code == 200, rotated.text
    assert await token_for(svc.client, rotated.json()["identity"]["assertion"])

    again = await present(svc, jag(svc, idp, sub="agent-su", overrides=OWNER))
    assert again.status_code == 200, again.text
    assert again.json()["id"] == registration_id_for_identity(idp.issuer, "agent-su", PUBLIC_URL)
