"""Attack (design section 10.2): at the v0.6 door the agent holds the `user_code` and the link
(`verification_uri`); the person is meant to be the one who types the code. Can the agent
claim by itself?

- at v1's E8, which takes a claim token and a code from the agent: no, a claim token is
  honoured only at the door that made it (401 `invalid_claim_token`, nothing written);
- at the claim page without a session: it is sent to the sign-in;
- signed in as an address it controls that is not the hint: 403 on the page, at Approve and
  at Deny, nothing written.

Only a session for the hinted address (a mailbox or an OpenID account the agent does not
hold) approves, and the poll stays pending until then."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.app_client import Service
from tests.support.backends import Backend
from tests.support.person import claim_path, decline, open_claim_page, type_code
from tests.support.v06_claim import HINT, link_token, poll, service_auth
from tests.support.v06_door import assert_oauth_error, v06_service

AGENTS_OWN = "agent-mailbox@example.org"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


async def test_the_agent_cannot_claim_with_its_own_code(svc: Service) -> None:
    """E8 refuses the v0.6 claim token; the page wants a session, and a session for another
    address is 403 everywhere; nothing is written and the poll stays pending."""
    body = await service_auth(svc.client, HINT)
    link, code = link_token(body["claim"]["verification_uri"]), body["claim"]["user_code"]
    head = await svc.head()
    at_e8 = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": body["claim_token"], "otp": code}
    )
    assert at_e8.status_code == 401, at_e8.text
    assert at_e8.json()["error"] == "invalid_claim_token"
    no_session = await svc.client.get(claim_path(link))
    assert no_session.status_code == 302
    assert no_session.headers["location"] == body["claim"]["verification_uri"]
    assert (await open_claim_page(svc, link, AGENTS_OWN)).status_code == 403
    assert (await type_code(svc, link, code, AGENTS_OWN)).status_code == 403
    assert (await decline(svc, link, AGENTS_OWN)).status_code == 403
    assert await svc.count("registration.claimed") == 0
    assert await svc.head() == head
    assert_oauth_error(await poll(svc.client, body["claim_token"]), 400, "authorization_pending")
