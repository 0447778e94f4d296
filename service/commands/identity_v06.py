"""V1 with an ID-JAG at the v0.6 door (`/agent/identity`, type `identity_assertion`; design
section 5.2, contract V1 and cases 22-27).

The ID-JAG is checked as at the v1 door (service/commands/identity.py `verify_presented`),
with the v0.6 door's two differences: our own issuer is refused before any lookup (O-C) and
an `aud` naming the API's resource is accepted beside our issuer (O-D). Then its `auth_time`
must be fresh (`login_fresh`), else 401 `login_required`, having written nothing and kept the
jti unburned. Then `decide_identity` (service/domain/step_up.py) says how the subject is
served:

- Clean (its delegation exists) and Provision (a user made just in time, as at v1): the
  delegation's `delegation.used` (with the resource audience when the ID-JAG named it), and
  for Provision the user and the delegation created; the answer is a service-signed
  assertion for the subject's deterministic `reg_…` at the delegation's generation, which
  V6 exchanges through the delegation;
- StepUp (no delegation, and the verified address or phone found an account): a new
  registration of kind `id_jag` with its ceremony (the code for the agent, the matched
  user's address as the hint), replacing the subject's open step-up; V1 answers 401
  `interaction_required` with the ceremony's handles. At this door an address match always
  steps up, whatever the issuer's `link_by_verified_email` (the lead's answer to open
  question 2).

Whatever is written commits with the ID-JAG's jti burned, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from events.delegation import STREAM_TYPE as DELEGATION
from events.errors import ConcurrencyConflict
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import load_queries
from service.commands import registration_state
from service.commands.claim_start import mint_attempt, verification_uri
from service.commands.context import (
    Caller,
    Change,
    Context,
    InTransaction,
    in_turn,
    retrying,
)
from service.commands.delegation_head import HeadAhead
from service.commands.identity import find_user, provision_user, verify_presented
from service.commands.jti import remember_jti
from service.crypto.assertions import issue_assertion
from service.crypto.tokens import (
    new_claim_token,
    new_registration_id,
    registration_id_for_identity,
    token_hash,
)
from service.domain.confirm import as_confirm
from service.domain.errors import ProtocolError
from service.domain.registration import Registration
from service.domain.step_up import (
    MAX_AGE,
    Clean,
    NewStepUp,
    Presented,
    Provision,
    StepUp,
    StepUpTerms,
    UserMatch,
    decide_identity,
    login_fresh,
)
from service.domain.trust_list import DelegationState, delegation_id_for
from service.providers.trust import VerifiedAssertion

Q = load_queries("service.commands", "identity_v06.sql")


class LoginRequired(ProtocolError):
    """`auth_time` missing, stale or ahead: the agent must have the person sign in at the
    provider again, within `max_age` seconds."""

    max_age = MAX_AGE

    def __init__(self) -> None:
        super().__init__(
            "login_required",
            f"the ID-JAG's auth_time must be at most {MAX_AGE} s old; sign the user in again",
        )


@dataclass(frozen=True, slots=True)
class Served:
    """Clean or Provision: the subject's assertion (shown once) and the scopes it gets."""

    registration_id: str  # deterministic, of iss, sub and our issuer
    identity_assertion: str
    assertion_expires: datetime
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SteppedUp:
    """StepUp: the ceremony the account's owner must finish; the code is the agent's to pass on."""

    registration_id: str  # the step-up's own, random
    claim_token: str
    claim_token_expires: datetime
    post_claim_scopes: tuple[str, ...]
    user_code: str
    expires_in: int
    verification_uri: str
    interval: int
    link_expires_at: datetime


async def register_identity_v06(ctx: Context, assertion: str, caller: Caller) -> Served | SteppedUp:
    """V1 `identity_assertion`: this module's docstring."""
    tenant = ctx.tenant
    if not tenant.offers("id_jag"):
        raise ProtocolError("identity_assertion_not_enabled", "ID-JAG registration is not enabled")
    checked = await verify_presented(ctx, assertion, v06=True)
    verified = checked.verified
    if not login_fresh(verified.auth_time, ctx.clock.now()):
        raise LoginRequired()
    presented = Presented(
        delegation_id=delegation_id_for(verified.issuer, verified.subject, tenant.issuer),
        issuer=verified.issuer,
        jti=verified.jti,
        client_id=verified.client_id,
        audience=None if verified.audience == tenant.issuer else verified.audience,
        agent_platform=verified.agent_platform,
        agent_context_id=verified.agent_context_id,
    )

    async def attempt() -> Served | SteppedUp:
        return await _serve(ctx, verified, presented, checked.ahead, caller)

    return await retrying(attempt)


async def _serve(
    ctx: Context,
    verified: VerifiedAssertion,
    presented: Presented,
    ahead: HeadAhead,
    caller: Caller,
) -> Served | SteppedUp:
    tenant, now = ctx.tenant, ctx.clock.now()
    burn = remember_jti(tenant.tenant_id, verified.issuer, verified.jti,
                        verified.remember_until, now)  # fmt: skip
    head = await ahead.read(ctx, presented.delegation_id)
    delegation = (
        None
        if head is None
        else DelegationState(
            presented.delegation_id, head.user_id, head.version, revocations=head.generation
        )
    )
    match, address = (None, None) if head is not None else await _match(ctx, verified)
    open_step_up, seen = (
        await _open_step_up(ctx, presented.delegation_id, now)
        if head is None and match is not None
        else (None, frozenset[str]())
    )
    decided = decide_identity(delegation, match, open_step_up)
    if isinstance(decided, StepUp):
        if address is None:  # decide_identity steps up only to a user with an address
            raise RuntimeError("a step-up without the matched user's address")
        return await _step_up(
            ctx,
            decided,
            presented=presented,
            verified=verified,
            address=address,
            caller=caller,
            burn=burn,
            seen=seen,
        )
    stream = ctx.stream(DELEGATION, presented.delegation_id)
    changes: list[Change] = []
    if isinstance(decided, Clean):
        user_id, generation = decided.delegation.user_id, decided.delegation.revocations
        changes.append(Change(stream, decided.delegation.version, decided.events(presented)))
    else:
        user_id, new_user = await provision_user(ctx, verified)
        subject_sealed = await ctx.sealer.seal(ctx.pool, user_id, verified.subject)
        events = Provision().events(
            presented, user_id=user_id, subject_sealed=subject_sealed, issuer=tenant.issuer
        )
        generation = 0
        changes += [new_user, Change(stream, 0, events)]
    subject_id = registration_id_for_identity(verified.issuer, verified.subject, tenant.issuer)
    # Signed before the append: a ring without an active key fails here, having written nothing.
    token, expires = issue_assertion(
        ctx.keyring,
        issuer=tenant.issuer,
        sub=subject_id,
        gen=generation,
        now=now,
        ttl=timedelta(seconds=tenant.assertion_ttl),
        email=verified.email,
        email_verified=True if verified.email is not None else None,
        amr=verified.amr,
    )
    await ctx.record(changes, metadata=await ctx.metadata(caller, user_id), now=now, also=burn)
    return Served(subject_id, token, expires, tenant.scopes_supported)


async def _match(ctx: Context, verified: VerifiedAssertion) -> tuple[UserMatch | None, str | None]:
    """The existing user the ID-JAG's verified address (else phone) finds, with the address
    that user signs in with (None when they have none, or it was erased)."""
    found = await find_user(ctx, verified, by_email=True)  # never gated at this door
    if found is None:
        return None, None
    user_id, matched_by = found
    row = await ctx.pool.fetchrow(Q["user_address"], ctx.tenant.tenant_id, user_id)
    if row is None or row["email_sealed"] is None or row["email_index"] is None:
        return UserMatch(user_id, matched_by, None), None
    address = await ctx.sealer.open(ctx.pool, row["email_sealed"])
    if address is None:
        return UserMatch(user_id, matched_by, None), None
    return UserMatch(user_id, matched_by, str(row["email_index"])), address


async def _open_step_up(
    ctx: Context, delegation_id: str, now: datetime
) -> tuple[Registration | None, frozenset[str]]:
    """The subject's step-up still running at `now`, if any, and the ids of every one seen."""
    rows = await ctx.pool.fetch(Q["open_step_ups"], ctx.tenant.tenant_id, delegation_id, now)
    seen = frozenset(str(row["registration_id"]) for row in rows)
    state = await registration_state.load(ctx, str(rows[0]["registration_id"])) if rows else None
    if state is None or state.step_up is None or state.status == "claimed" or state.ended(now):
        return None, seen
    return state, seen


def _alone(ctx: Context, delegation_id: str, mine: str, known: frozenset[str]) -> InTransaction:
    """Under the append lock, after the step-up's append: ConcurrencyConflict if a step-up of
    the subject unknown when deciding is open (one presented at the same instant), so that
    `retrying` replaces it too: of racing step-ups the last to commit replaces the others."""
    tenant_id, now = ctx.tenant.tenant_id, ctx.clock.now()

    async def check(conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(Q["open_step_ups"], tenant_id, delegation_id, now)
        if unseen := {str(row["registration_id"]) for row in rows} - known - {mine}:
            raise ConcurrencyConflict(tenant_id, min(unseen), 0, 1)  # expected none: one is

    return check


async def _step_up(
    ctx: Context,
    decided: StepUp,
    *,
    presented: Presented,
    verified: VerifiedAssertion,
    address: str,
    caller: Caller,
    burn: InTransaction,
    seen: frozenset[str],
) -> SteppedUp:
    """The step-up's registration and ceremony (replacing the subject's open one, `seen`
    with the others when deciding), the jti burned in the same transaction."""
    tenant, now = ctx.tenant, ctx.clock.now()
    registration_id, claim_token = new_registration_id(), new_claim_token()
    if decided.user.email_index is None:
        raise RuntimeError("a step-up needs the matched user's address")
    # The hint (and this call's client address) under the attempt's own key, as at E5.
    minted = mint_attempt(ctx, address, hint_index=decided.user.email_index)
    attempt_subject, link_token, user_code = minted.subject, minted.link_token, minted.user_code
    new = NewStepUp(
        registration_id=registration_id,
        claim_token_hash=token_hash(claim_token),
        subject_sealed=await ctx.sealer.seal(ctx.pool, decided.user.user_id, verified.subject),
        code=minted.new,
    )
    terms = StepUpTerms(
        registration_ttl=timedelta(seconds=tenant.registration_ttl),
        link_ttl=timedelta(seconds=tenant.claim_link_ttl),
        code_ttl=timedelta(seconds=tenant.otp_ttl),
        post_claim_scopes=tenant.scopes_supported,  # a step-up claims every scope (as Clean)
    )
    opened = decided.open(presented, new, now=now, terms=terms)
    events = as_confirm(opened.events) if tenant.v06_profile == "authkit" else opened.events
    changes = [Change(ctx.stream(REGISTRATION, registration_id), 0, events)]
    if opened.superseded_id is not None and decided.supersede is not None:
        old = ctx.stream(REGISTRATION, opened.superseded_id)
        changes.append(Change(old, decided.supersede.version, opened.superseded))
    await ctx.record(
        changes,
        metadata=ctx.fresh_metadata(caller, attempt_subject),
        now=now,
        also=in_turn(burn, _alone(ctx, presented.delegation_id, registration_id, seen)),
        fresh=[attempt_subject],
    )
    if decided.supersede is not None and opened.superseded:
        await registration_state.remember(ctx, decided.supersede, opened.superseded)
    return SteppedUp(
        registration_id=registration_id,
        claim_token=claim_token,
        claim_token_expires=now + terms.registration_ttl,
        post_claim_scopes=terms.post_claim_scopes,
        user_code=user_code,
        expires_in=tenant.otp_ttl,
        verification_uri=verification_uri(tenant, link_token),
        link_expires_at=now + terms.link_ttl,
        interval=tenant.claim_poll_interval,
    )
