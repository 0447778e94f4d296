"""The v0.6 claim as the agent drives it over HTTP (V1 service_auth, V2, the claim grant),
and the person's half, driven through the domain and the event store rather than the claim
pages (V4/V5), which a later slice builds: what POST /claim will do for a
person signed in as the hint's address who types `user_code`. It lets the agent's half (V2,
V7) be tested through to a delivery. Imports the service on purpose: it stands in for
service code that does not exist yet, and goes once the pages do."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from events.delegation import STREAM_TYPE as DELEGATION
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import load_queries
from events.user import STREAM_TYPE as USER
from events.user import UserCreated
from service.commands import registration_state
from service.commands.claim_start import load_by_claim_token
from service.commands.context import Caller, Change
from service.crypto.tokens import new_user_id, otp_matches, token_hash
from service.domain.claim import OtpLimits
from service.domain.errors import ProtocolError
from service.domain.user_code import Claimant, DeliveryTerms, decide_deny, decide_enter_code
from service.tenancy.config import CLAIM_GRANT
from tests.support.app_client import SECRET_KEY, Service
from tests.support.v06_door import IDENTITY, TOKEN

USER_Q = load_queries("projections", "users.sql")
CLAIM = "/agent/identity/claim"
HINT = "ana@example.net"


async def service_auth(client: httpx.AsyncClient, hint: str = HINT) -> dict[str, Any]:
    """V1 service_auth, which must succeed."""
    response = await client.post(IDENTITY, json={"type": "service_auth", "login_hint": hint})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def start(client: httpx.AsyncClient, claim_token: str, **body: str) -> httpx.Response:
    """V2."""
    return await client.post(CLAIM, json={"claim_token": claim_token, **body})


async def poll(client: httpx.AsyncClient, claim_token: str) -> httpx.Response:
    """V7, the claim grant."""
    return await client.post(TOKEN, data={"grant_type": CLAIM_GRANT, "claim_token": claim_token})


def link_token(verification_uri: str) -> str:
    """The `cvt_` link token inside `verification_uri`'s `return_to`."""
    return_to = parse_qs(urlsplit(verification_uri).query)["return_to"][0]
    return parse_qs(urlsplit(return_to).query)["claim_attempt_token"][0]


async def enter_code(svc: Service, claim_token: str, link_token: str, code: str, email: str) -> str:
    """V5 for a person signed in as `email` (their user, or a new one): the claim's user
    id, or the ProtocolError V5 would answer (a wrong code's `claim.otp_failed` recorded first)."""
    ctx = await svc.resources.command_context()
    state = await load_by_claim_token(ctx, claim_token)
    assert state is not None
    now = ctx.clock.now()
    tenant = ctx.tenant
    index = ctx.sealer.blind_index(email)
    known = await ctx.pool.fetchval(USER_Q["by_email"], tenant.tenant_id, index)
    user_id = str(known) if known is not None else new_user_id()
    decision = decide_enter_code(
        state,
        link_hash=token_hash(link_token),
        signed_in_index=index,
        code_matches=lambda aid, stored: otp_matches(stored, SECRET_KEY, aid, code),
        now=now,
        limits=OtpLimits(),
        claimant=Claimant(user_id, "email_link", tenant.issuer),
        terms=DeliveryTerms(
            tenant.claim_deliveries, timedelta(seconds=tenant.claim_delivery_window)
        ),
        active=(),
    )
    assert decision.revoke == ()  # no pre-claim credential in the tests that use this
    changes = [Change(ctx.stream(REGISTRATION, state.registration_id), state.version,
                      decision.events)]  # fmt: skip
    if decision.delegation and state.step_up is not None:  # a step-up links its subject
        stream = ctx.stream(DELEGATION, state.step_up.delegation_id)
        changes.append(Change(stream, 0, decision.delegation))
    if decision.claimed is not None and known is None:
        created = UserCreated(
            user_id=user_id,
            email_sealed=await ctx.sealer.seal(ctx.pool, user_id, email),
            email_index=index,
            email_verified=True,
        )
        changes.append(Change(ctx.stream(USER, user_id), 0, [created]))
    person = Caller(request_id=None, actor="user", door="v06", dialect="0.6.0")
    await ctx.record(changes, metadata=person.envelope(), now=now)
    await registration_state.remember(ctx, state, decision.events)
    if decision.error is not None:
        raise decision.error
    return user_id


async def refused_code(
    svc: Service, claim_token: str, link_token: str, code: str, email: str
) -> ProtocolError:
    try:
        await enter_code(svc, claim_token, link_token, code, email)
    except ProtocolError as exc:
        return exc
    raise AssertionError("the code claimed")


async def deny(svc: Service, claim_token: str, link_token: str, email: str) -> None:
    """Deny on the claim page by a person signed in as `email` (`claim.attempt_denied`)."""
    ctx = await svc.resources.command_context()
    state = await load_by_claim_token(ctx, claim_token)
    assert state is not None
    now = ctx.clock.now()
    decision = decide_deny(
        state, link_hash=token_hash(link_token), signed_in_index=ctx.sealer.blind_index(email),
        now=now,
    )  # fmt: skip
    stream = ctx.stream(REGISTRATION, state.registration_id)
    person = Caller(request_id=None, actor="user", door="v06", dialect="0.6.0")
    await ctx.record([Change(stream, state.version, decision.events)],
                     metadata=person.envelope(), now=now)  # fmt: skip
    await registration_state.remember(ctx, state, decision.events)
