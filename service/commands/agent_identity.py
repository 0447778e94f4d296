"""V1: registering an agent at the v0.6 door (`/agent/identity`; design section 5.2).

`anonymous` records one event, `registration.created` with dialect `v06` and no credential:
what the agent holds instead is a service-signed identity assertion (gen 0, `sub` = the
registration id), which it exchanges at the token endpoint (V6) for access tokens. Minting the
assertion writes nothing (design section 2.4), so a v0.6 onboarding costs the log what a v1 one
does: the registration now, the access token at the exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from events.registration import STREAM_TYPE, RegistrationCreated
from service.commands.context import Caller, Change, Context
from service.crypto.assertions import issue_assertion
from service.crypto.tokens import new_claim_token, new_registration_id, token_hash
from service.domain.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class AnonymousV06:
    """V1 anonymous's answer: the assertion and the claim token, each shown once."""

    registration_id: str
    identity_assertion: str
    assertion_expires: datetime
    pre_claim_scopes: tuple[str, ...]
    claim_token: str
    claim_token_expires: datetime
    post_claim_scopes: tuple[str, ...]


async def register_anonymous_v06(ctx: Context, caller: Caller) -> AnonymousV06:
    tenant = ctx.tenant
    if not tenant.offers("anonymous"):
        raise ProtocolError("anonymous_not_enabled", "anonymous registration is not enabled")
    now = ctx.clock.now()
    registration_id, claim_token = new_registration_id(), new_claim_token()
    expires_at = now + timedelta(seconds=tenant.registration_ttl)
    created = RegistrationCreated(
        registration_id=registration_id,
        kind="anonymous",
        requested_credential_type="access_token",  # what V6 mints
        claim_token_hash=token_hash(claim_token),
        expires_at=expires_at,
        pre_claim_scopes=tenant.pre_claim_scopes,
        post_claim_scopes=tenant.post_claim_scopes,
        dialect="v06",
    )
    # Signed before the append: a ring without an active key fails here, having written nothing.
    assertion, assertion_expires = issue_assertion(
        ctx.keyring,
        issuer=tenant.issuer,
        sub=registration_id,
        gen=0,
        now=now,
        ttl=timedelta(seconds=tenant.assertion_ttl),
    )
    subject = ctx.sealer.fresh(registration_id)
    await ctx.record(
        [Change(ctx.stream(STREAM_TYPE, registration_id), 0, [created])],
        metadata=ctx.fresh_metadata(caller, subject),
        now=now,
        fresh=[subject],
    )
    return AnonymousV06(
        registration_id=registration_id,
        identity_assertion=assertion,
        assertion_expires=assertion_expires,
        pre_claim_scopes=tenant.pre_claim_scopes,
        claim_token=claim_token,
        claim_token_expires=expires_at,
        post_claim_scopes=tenant.post_claim_scopes,
    )
