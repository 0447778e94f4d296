"""The v0.6 dialect as an agent written from the contract drives it (tests/support/v06_agent.py,
docs/design/v06-dialect.md §10.2): discovery, V1, the service-signed assertion checked against
the JWKS, V2, the V7 poll honouring `interval`, `slow_down`, `access_denied` and
`expired_token`, V6, the API and V8, over HTTP against real Postgres, NATS and SMTP.

The agent waits on the test's clock: each wait moves the service's manual clock by the
interval, and the person acts during one of the waits (tests/support/v06_claim.py's
`enter_code`: sign in as the hint's address and type the code the agent passed on)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest

from tests.support.app_client import PUBLIC_URL, Service
from tests.support.backends import Backend
from tests.support.id_jag import trust
from tests.support.idp import IdentityProvider
from tests.support.v06_agent import AgentError, Attempt, Token, V06Agent
from tests.support.v06_claim import HINT, deny, enter_code, link_token
from tests.support.v06_door import v06_service

ME = f"{PUBLIC_URL}/api/me"
Person = Callable[[], Awaitable[None]]


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    """Both doors open; a provider's keys may be fetched over loopback http (the ID-JAG test)."""
    async with v06_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as service:
        yield service


class Waits:
    """The agent's `sleep`: each wait moves the service's clock by what the agent asked (by
    `early[n]` seconds instead for wait number n, 1-based: a timer that fired early), and the
    person acts during wait number `person_at`."""

    def __init__(self, svc: Service, person: Person | None = None, person_at: int = 2,
                 early: dict[int, float] | None = None) -> None:  # fmt: skip
        self.svc, self.person, self.person_at = svc, person, person_at
        self.early = early or {}
        self.count = 0

    async def __call__(self, seconds: float) -> None:
        self.count += 1
        if self.person is not None and self.count == self.person_at:
            await self.person()
        self.svc.clock.advance(timedelta(seconds=self.early.get(self.count, seconds)))


def agent_on(svc: Service, waits: Waits | None = None) -> V06Agent:
    return V06Agent(
        svc.client,
        PUBLIC_URL,
        sleep=waits or Waits(svc),
        now=lambda: svc.clock.now().timestamp(),
    )


def typing(svc: Service, claim_token: str, attempt: Attempt, email: str = HINT) -> Person:
    """The person, signed in as `email`, types the code the agent passed on."""

    async def act() -> None:
        link = link_token(attempt.verification_uri)
        await enter_code(svc, claim_token, link, attempt.user_code, email)

    return act


async def seen(agent: V06Agent, token: Token) -> dict[str, Any]:
    response = await agent.call(ME, token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_anonymous_claim_token_api_revoke(svc: Service) -> None:
    """The whole sequence: discovery (merged metadata, the JWKS at `jwks_uri`) → anonymous →
    its assertion verified and exchanged for `api.read` → the API → V2 for the person's
    address → polling (pending once, then the claim while the agent waits) → the delivered
    token with the post-claim scopes and an assertion naming the person → the API as the
    person's user → V8 → 401, after which the agent's fetch exchanges the delivered assertion
    again and gets through; the pre-claim token is refused and the pre-claim assertion no
    longer exchanges (O-F). The agent
    waited `interval` before each poll."""
    agent = agent_on(svc)
    found = await agent.discover()
    assert (found.issuer, found.jwks_uri) == (PUBLIC_URL, f"{PUBLIC_URL}/.well-known/jwks.json")
    assert found.identity_endpoint == f"{PUBLIC_URL}/agent/identity"
    assert {"anonymous", "service_auth", "identity_assertion"} <= set(found.identity_types)
    identity = await agent.register_anonymous()
    assert identity.registration_type == "anonymous"
    assert identity.assertion is not None
    assert identity.claim_token is not None
    assert identity.claim_url == found.claim_endpoint
    claims = agent.verify_assertion(identity.assertion, sub=identity.registration_id)
    assert "email" not in claims
    forged = identity.assertion[:-4] + ("AAAA" if identity.assertion[-4:] != "AAAA" else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        agent.verify_assertion(forged)

    first = await agent.exchange(identity.assertion)
    assert first.scope == svc.tenant.pre_claim_scopes
    assert (await seen(agent, first))["registration_id"] == identity.registration_id

    attempt = await agent.start_claim(identity.claim_token, HINT)
    assert (attempt.interval, attempt.expires_in) == (5, 600)
    agent.sleep = Waits(svc, typing(svc, identity.claim_token, attempt))
    delivered = await agent.poll(identity.claim_token, attempt.interval)
    assert agent.waited == [5, 5]  # pending after the first wait, claimed during the second
    assert delivered.scope == svc.tenant.post_claim_scopes
    assert delivered.assertion is not None
    after = agent.verify_assertion(delivered.assertion, sub=identity.registration_id)
    assert (after["email"], after["email_verified"]) == (HINT, True)
    me = await seen(agent, delivered)
    assert (me["registration_id"], me["claim_state"]) == (identity.registration_id, "claimed")
    assert me["user_id"] is not None
    assert me["scopes"] == list(svc.tenant.post_claim_scopes)

    assert (await agent.call(ME, first)).status_code == 401  # the claim ended it (case 17)
    with pytest.raises(AgentError) as stale:
        await agent.exchange(identity.assertion)
    assert (stale.value.status, stale.value.error) == (400, "invalid_grant")

    await agent.revoke(delivered)
    assert (await agent.call(ME, delivered)).status_code == 401
    await agent.revoke(delivered)  # RFC 7009: revoked or unknown, still 200
    response, again = await agent.fetch(ME, delivered, delivered.assertion)  # re-exchanges
    assert response.status_code == 200, response.text
    assert again.access_token != delivered.access_token
    assert response.json()["user_id"] == me["user_id"]
    assert await svc.count("credential.revoked") >= 1


async def test_service_auth_honours_slow_down(svc: Service) -> None:
    """service_auth hands over a ceremony and no assertion; an agent whose second wait ends
    early gets `slow_down` and waits 5 s longer from then on (RFC 8628), stays pending until
    the person types the code, then gets its token and an assertion."""
    agent = agent_on(svc)
    await agent.discover()
    identity = await agent.register_service_auth(HINT)
    assert (identity.registration_type, identity.assertion) == ("service_auth", None)
    assert identity.attempt is not None
    assert identity.claim_token is not None
    attempt = identity.attempt
    person = typing(svc, identity.claim_token, attempt)
    agent.sleep = Waits(svc, person, person_at=4, early={2: 1})
    token = await agent.poll(identity.claim_token, attempt.interval)
    assert agent.waited == [5, 5, 10, 10]  # pending; early → slow_down; pending; the claim
    assert token.scope == svc.tenant.post_claim_scopes
    assert token.assertion is not None
    assert agent.verify_assertion(token.assertion)["email"] == HINT
    assert (await seen(agent, token))["claim_state"] == "claimed"


async def test_poll_ends_on_access_denied_and_expired_token(svc: Service) -> None:
    """The poll ends, with the service's code, when the person denies (`access_denied`) or
    when the code's 600 s pass with nobody typing it (`expired_token`)."""
    agent = agent_on(svc)
    await agent.discover()
    denied = await agent.register_service_auth(HINT)
    assert denied.attempt is not None
    assert denied.claim_token is not None
    link = link_token(denied.attempt.verification_uri)
    token = denied.claim_token

    async def denying() -> None:
        await deny(svc, token, link, HINT)

    agent.sleep = Waits(svc, denying, person_at=1)
    with pytest.raises(AgentError) as refused:
        await agent.poll(token, denied.attempt.interval)
    assert (refused.value.status, refused.value.error) == (400, "access_denied")

    idle = await agent.register_service_auth("bo@example.net")
    assert idle.attempt is not None
    assert idle.claim_token is not None
    agent.sleep = Waits(svc)
    agent.waited.clear()
    with pytest.raises(AgentError) as expired:
        await agent.poll(idle.claim_token, 120)  # an agent that waits two minutes a poll
    assert (expired.value.status, expired.value.error) == (400, "expired_token")
    assert agent.waited == [120] * 5  # pending at 120 s … 480 s, expired at 600 s


async def test_id_jag_clean_subject(svc: Service) -> None:
    """An ID-JAG of a subject nobody knows yet, from a trusted provider: an assertion for its
    deterministic id at once, exchanged for every scope; the API sees the provider's user."""
    agent = agent_on(svc)
    await agent.discover()
    auth_time = int(svc.clock.now().timestamp()) - 30
    async with IdentityProvider() as idp:
        await trust(svc, idp)
        id_jag = idp.mint_id_jag(
            aud=PUBLIC_URL, now=svc.clock.now(), sub="agent-client-1",
            overrides={"auth_time": auth_time},
        )  # fmt: skip
        identity = await agent.register_id_jag(id_jag)
        assert identity.registration_type == "identity_assertion"
        assert identity.registration_id.startswith("reg_")
        assert identity.claim_token is None
        assert identity.assertion is not None
        token = await agent.exchange(identity.assertion)
        assert token.scope == svc.tenant.scopes_supported
        assert (await seen(agent, token))["user_id"] is not None


async def test_id_jag_step_up_then_clean(svc: Service) -> None:
    """An ID-JAG whose verified address is an account's the provider has not linked yet: the
    agent gets 401 `interaction_required` with the ceremony at the top level, passes the code
    on, polls while the account's owner types it, and gets a token with every scope; a fresh
    ID-JAG of the same subject is then clean (case 24)."""
    agent = agent_on(svc)
    await agent.discover()
    owner = await agent.register_service_auth(HINT)  # the account: HINT, claimed once
    assert owner.attempt is not None
    assert owner.claim_token is not None
    agent.sleep = Waits(svc, typing(svc, owner.claim_token, owner.attempt), person_at=1)
    await agent.poll(owner.claim_token, owner.attempt.interval)
    async with IdentityProvider() as idp:
        await trust(svc, idp)

        def id_jag() -> str:
            auth_time = int(svc.clock.now().timestamp()) - 30
            return idp.mint_id_jag(
                aud=PUBLIC_URL, now=svc.clock.now(), sub="agent-client-2",
                overrides={"auth_time": auth_time, "email": HINT},
            )  # fmt: skip

        with pytest.raises(AgentError) as step_up:
            await agent.register_id_jag(id_jag())
        assert (step_up.value.status, step_up.value.error) == (401, "interaction_required")
        pending = agent.identity_of(step_up.value.body)
        assert pending.assertion is None
        assert pending.attempt is not None
        assert pending.claim_token is not None
        agent.sleep = Waits(svc, typing(svc, pending.claim_token, pending.attempt), person_at=1)
        token = await agent.poll(pending.claim_token, pending.attempt.interval)
        assert token.scope == svc.tenant.scopes_supported
        clean = await agent.register_id_jag(id_jag())
        assert clean.assertion is not None
        assert clean.registration_id != pending.registration_id  # the subject's own id
        again = await agent.exchange(clean.assertion)
        assert (await seen(agent, again))["user_id"] == (await seen(agent, token))["user_id"]
