"""V7: the claim grant at `POST /oauth2/token` (`urn:workos:agent-auth:grant-type:claim`),
polled by the agent like RFC 8628's device grant (docs/design/v06-dialect.md, section 5.2).

The answer is service.domain.user_code's `decide_poll`: `authorization_pending` while the
person has not typed the code, `slow_down` when polls come faster than the interval (O-G),
`access_denied` after Deny, `expired_token` for an unknown token, an ended registration or a
dead code (case 20), `invalid_grant` for a registration made at the v1 door or a claim token
past its delivery allowance (O-E); or a delivery.

Pacing lives in the UNLOGGED `claim_polls` table (one upsert per poll, claim_grant.sql),
shared by every replica, a cache of timing only: a crash empties it and costs one poll's
pacing. Only a token that resolves to a registration writes a row; rows idle for a day are
pruned a batch at a time by the polls themselves.

A delivery mints a post-claim access token (`credential.issued`) and appends
`claim.delivered` at the registration's version in the same transaction, so two racing polls
never deliver past the allowance; the answer adds a service-signed assertion (gen 1, with the
claimed address), or for an ID-JAG step-up one for the subject's delegation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from events.credential import IssuedVia
from events.registration import STREAM_TYPE, ClaimDelivered, CredentialKind
from events.sql import load_queries
from service.commands.claim_start import load_by_claim_token
from service.commands.context import Caller, Change, Context, retrying
from service.commands.credentials import Minted, mint
from service.crypto.assertions import issue_assertion
from service.crypto.tokens import token_hash
from service.domain.errors import ProtocolError
from service.domain.registration import Registration
from service.domain.user_code import Deliver, Refused, decide_poll

Q = load_queries("service.commands", "claim_grant.sql")
TOKENS_Q = load_queries("service.commands", "tokens.sql")
PRUNE_AFTER = timedelta(days=1)
PRUNE_BATCH = 100


@dataclass(frozen=True, slots=True)
class Delivered:
    """V7's 200: the access token and an assertion for later exchanges."""

    token: Minted
    identity_assertion: str
    assertion_expires: datetime


async def poll(ctx: Context, claim_token: str, caller: Caller) -> Delivered:
    """One poll: a delivery, or ProtocolError with the RFC 8628 / RFC 6749 code."""

    paced: tuple[bool, int] | None = None  # once per poll, not again when a delivery retries

    async def attempt() -> Delivered:
        nonlocal paced
        state = await load_by_claim_token(ctx, claim_token)
        now = ctx.clock.now()
        if paced is None:
            paced = (False, 0) if state is None else await _pace(ctx, claim_token, now)
        too_fast, interval = paced
        decided = decide_poll(state, now=now, too_fast=too_fast)
        if isinstance(decided, Refused):
            error = decided.error
            if error.code == "slow_down":
                error = ProtocolError("slow_down", f"poll no faster than every {interval} s")
            raise error
        if state is None:  # decide_poll delivers only for a registration
            raise ProtocolError("expired_token", "unknown claim token")
        return await _deliver(ctx, state, decided, caller, now)

    return await retrying(attempt)


async def _pace(ctx: Context, claim_token: str, now: datetime) -> tuple[bool, int]:
    """(too fast, the interval now asked for), and the idle rows pruned."""
    tenant = ctx.tenant
    async with ctx.pool.acquire() as conn:
        row = await conn.fetchrow(
            Q["pace"], token_hash(claim_token), tenant.tenant_id, now, tenant.claim_poll_interval
        )
        await conn.execute(Q["prune_polls"], now - PRUNE_AFTER, PRUNE_BATCH)
    if row is None:  # an upsert's RETURNING always has its row
        raise RuntimeError("the pacing upsert returned no row")
    return bool(row["too_fast"]), int(row["interval_s"])


async def _deliver(
    ctx: Context, state: Registration, deliver: Deliver, caller: Caller, now: datetime
) -> Delivered:
    token = mint_for_claim(ctx, state, "access_token", now=now, user_id=deliver.user_id)
    assertion, expires = await claimed_assertion(ctx, state, now)
    delivered = ClaimDelivered(credential_id=token.credential_id)
    owner = deliver.user_id if state.step_up is not None else deliver.registration_id
    await ctx.record(
        [
            Change(ctx.stream(STREAM_TYPE, state.registration_id), state.version, [delivered]),
            token.change,
        ],
        metadata=await ctx.metadata(caller, owner),
        now=now,
    )
    return Delivered(token, assertion, expires)


def mint_for_claim(
    ctx: Context,
    state: Registration,
    kind: CredentialKind,
    *,
    now: datetime,
    user_id: str,
    expires_at: datetime | None = None,
    credential_id: str | None = None,
) -> Minted:
    """A credential a claim delivers (V7's access tokens, AuthKit's refresh tokens): the
    post-claim scopes for `user_id`; for a step-up every supported scope, as an `id_jag`
    credential of the subject's delegation."""
    step_up = state.step_up
    return mint(
        ctx,
        kind,
        now=now,
        scopes=ctx.tenant.scopes_supported if step_up is not None else state.post_claim_scopes,
        issued_via="id_jag" if step_up is not None else _issued_via(state),
        registration_id=state.registration_id,
        user_id=user_id,
        expires_at=expires_at,
        issuer=step_up.issuer if step_up is not None else None,
        delegation_id=step_up.delegation_id if step_up is not None else None,
        credential_id=credential_id,
        not_after=state.ends_by,  # None: a delivery follows the claim (R8)
    )


async def claimed_assertion(
    ctx: Context, state: Registration, now: datetime
) -> tuple[str, datetime]:
    """A claimed registration's assertion (and its end): gen 1 and the claimed address, or
    for a step-up the subject's (`assertion_subject`)."""
    tenant = ctx.tenant
    sub, gen = await assertion_subject(ctx, state)
    email = None
    if state.attempt is not None:  # the claimed attempt: its hint is the signed-in address
        email = await ctx.sealer.open(ctx.pool, state.attempt.email_sealed)
    return issue_assertion(
        ctx.keyring,
        issuer=tenant.issuer,
        sub=sub,
        gen=gen,
        now=now,
        ttl=timedelta(seconds=tenant.assertion_ttl),
        email=email,
        email_verified=True if email is not None else None,
    )


def _issued_via(state: Registration) -> IssuedVia:
    if state.kind == "anonymous":
        return "anonymous"
    if state.kind == "service_auth":
        return "service_auth"
    raise ProtocolError("invalid_grant", "this registration delivers nothing here")


async def assertion_subject(ctx: Context, state: Registration) -> tuple[str, int]:
    """(sub, gen): the registration at stage 1; for a step-up, the subject's deterministic
    id and its delegation's revocation count, so later exchanges go through the delegation."""
    if state.step_up is None:
        return state.registration_id, state.stage
    delegation_id = state.step_up.delegation_id
    row = await ctx.pool.fetchrow(
        TOKENS_Q["subject_for_exchange"], ctx.tenant.tenant_id, delegation_id
    )
    generation = int(row["generation"]) if row is not None else 0
    return "reg_" + delegation_id.removeprefix("dlg_"), generation
