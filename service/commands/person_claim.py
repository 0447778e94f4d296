"""The person's half of the v0.6 claim ceremony (docs/design/v06-dialect.md, sections 3.2 and
5.2): V4 the claim page, V5 the code typed on it, and Deny, for a person signed in on the
pages (service/signin/). The rules are service.domain.user_code's; this module loads the
registration by the link token's hash, asks them, and records.

- V4 (`view`) writes nothing, whatever it answers.
- V5 (`enter_code`): a wrong code that could match is `claim.otp_failed` (O-H, v1's limits);
  the twentieth locks the registration. The right one is `registration.claimed` with how the
  person signed in, the user made on a first claim by that address, a step-up's
  `delegation.created`, and `credential.revoked` for every active credential of the
  registration (reason `claimed`, O-F: an anonymous registration's pre-claim access tokens);
  a lock ends them too (reason `registration_expired`, as v1's lock ends its key).
- Deny (`deny`): `claim.attempt_denied`; the agent's next poll answers `access_denied`.

A token minted by V6 between the read of the active credentials and the append would escape
the claim: the append carries an `also` step that looks again, under the append lock, for an
active credential of the registration left after it, and raises ConcurrencyConflict if one
is (`retrying` then decides again and ends it too). V6 itself re-reads the registration's
version under the same lock, so the two cannot both miss each other (design section 10.2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg

from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.delegation import STREAM_TYPE as DELEGATION
from events.errors import ConcurrencyConflict
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import load_queries
from service.commands import registration_state
from service.commands.claim import new_user, user_id_for
from service.commands.context import Caller, Change, Context, InTransaction, retrying
from service.crypto.pii import subject_of
from service.crypto.tokens import otp_matches, token_hash
from service.domain.claim import Decision, OtpLimits
from service.domain.credentials import REVOKED_BY_CLAIM, REVOKED_WITH_REGISTRATION
from service.domain.errors import ProtocolError
from service.domain.registration import Attempt, Registration
from service.domain.user_code import (
    Claimant,
    DeliveryTerms,
    decide_deny,
    decide_enter_code,
    decide_view,
)

REG_Q = load_queries("projections", "registrations.sql")
CRED_Q = load_queries("projections", "credentials.sql")
USER_Q = load_queries("projections", "users.sql")
Q = load_queries("service.commands", "person_claim.sql")
MOST_ACTIVE = 10_000  # far above what token_per_subject lets a registration mint in its life


@dataclass(frozen=True, slots=True)
class Person:
    """Who is signed in on the pages: their address, and how they proved it (`email_link`,
    or `oidc:<issuer>`), as the claim records it."""

    email: str
    auth_method: str


@dataclass(frozen=True, slots=True)
class ClaimView:
    """What V4 shows: who asks, for which address, until when; whether the address has no
    account yet (the claim will make one)."""

    registration_id: str
    kind: str
    step_up_issuer: str | None
    link_expires_at: datetime
    new_account: bool


@dataclass(frozen=True, slots=True)
class Claimed:
    registration_id: str
    kind: str
    revoked: int  # the pre-claim credentials the claim ended


async def _load(ctx: Context, link_token: str) -> Registration:
    """The registration whose current (or claiming) attempt this link is; else 404."""
    row = await ctx.pool.fetchrow(REG_Q["by_attempt_token"], token_hash(link_token))
    state = None
    if row is not None and row["tenant_id"] == ctx.tenant.tenant_id:
        state = await registration_state.load(ctx, row["registration_id"])
    if state is None:
        raise ProtocolError("not_found", "this link is not valid")
    return state


async def view(ctx: Context, link_token: str, person: Person) -> ClaimView:
    """V4: the page's facts, or the ProtocolError it answers (nothing is written)."""
    state = await _load(ctx, link_token)
    index = ctx.sealer.blind_index(person.email)
    attempt = decide_view(
        state, link_hash=token_hash(link_token), signed_in_index=index, now=ctx.clock.now()
    )
    known = await ctx.pool.fetchval(USER_Q["by_email"], ctx.tenant.tenant_id, index)
    step_up = state.step_up
    return ClaimView(
        registration_id=state.registration_id,
        kind=state.kind,
        step_up_issuer=step_up.issuer if step_up is not None else None,
        link_expires_at=attempt.link_expires_at,
        new_account=known is None,
    )


def _limits(ctx: Context) -> OtpLimits:
    t = ctx.tenant
    return OtpLimits(t.otp_max_misses, t.otp_max_mints, t.claim_max_misses)


async def enter_code(
    ctx: Context, link_token: str, code: str, person: Person, caller: Caller
) -> Claimed:
    """V5: the claim, or the ProtocolError to answer (a wrong code's events recorded first)."""
    tenant = ctx.tenant
    index = ctx.sealer.blind_index(person.email)

    async def attempt() -> Claimed:
        state = await _load(ctx, link_token)
        now = ctx.clock.now()
        rid = state.registration_id
        user_id, first = await user_id_for(ctx, state)
        rows = await ctx.pool.fetch(
            CRED_Q["active_of_registration"], tenant.tenant_id, rid, MOST_ACTIVE
        )
        versions = {r["credential_id"]: r["version"] for r in rows}
        decision = decide_enter_code(
            state,
            link_hash=token_hash(link_token),
            signed_in_index=index,
            code_matches=lambda aid, stored: otp_matches(stored, ctx.secret_key, aid, code),
            now=now,
            limits=_limits(ctx),
            claimant=Claimant(user_id, person.auth_method, tenant.issuer),
            terms=DeliveryTerms(
                tenant.claim_deliveries, timedelta(seconds=tenant.claim_delivery_window)
            ),
            active=tuple(versions),
        )
        changes = [Change(ctx.stream(REGISTRATION, rid), state.version, decision.events)]
        changes += ended_by(ctx, decision, versions)
        if decision.claimed is not None:
            if decision.delegation and state.step_up is not None:
                stream = ctx.stream(DELEGATION, state.step_up.delegation_id)
                changes.append(Change(stream, 0, decision.delegation))
            if first:
                changes.append(await new_user(ctx, state, user_id))
        ends = decision.claimed is not None or bool(decision.revoke)
        await ctx.record(
            changes,
            metadata=await ctx.metadata(_as_person(caller), _subject(state)),
            now=now,
            also=none_left(tenant.tenant_id, rid) if ends else None,
        )
        await registration_state.remember(ctx, state, decision.events)
        if decision.error is not None:
            raise decision.error
        return Claimed(rid, state.kind, len(decision.revoke))

    # As E8: each conflict is another try that changed the registration, and only a bounded
    # number can; retry as often as that bound.
    return await retrying(attempt, tries=_limits(ctx).max_registration_misses + 2)


async def deny(ctx: Context, link_token: str, person: Person, caller: Caller) -> str:
    """Deny: the attempt declined (`claim.attempt_denied`); the registration's id."""
    index = ctx.sealer.blind_index(person.email)

    async def attempt() -> str:
        state = await _load(ctx, link_token)
        now = ctx.clock.now()
        decision = decide_deny(
            state, link_hash=token_hash(link_token), signed_in_index=index, now=now
        )
        rid = state.registration_id
        await ctx.record(
            [Change(ctx.stream(REGISTRATION, rid), state.version, decision.events)],
            metadata=await ctx.metadata(_as_person(caller), _subject(state)),
            now=now,
        )
        await registration_state.remember(ctx, state, decision.events)
        return rid

    return await retrying(attempt)


def ended_by(ctx: Context, decision: Decision, versions: dict[str, int]) -> list[Change]:
    """`credential.revoked` for each credential the decision ends, at the version read."""
    reason = REVOKED_BY_CLAIM if decision.claimed is not None else REVOKED_WITH_REGISTRATION
    return [
        Change(ctx.stream(CREDENTIAL, cid), versions[cid], [CredentialRevoked(reason=reason)])
        for cid in decision.revoke
    ]


def none_left(tenant_id: str, registration_id: str) -> InTransaction:
    """Under the append lock, after this append's projections: ConcurrencyConflict if an
    active credential of the registration is still there (minted since the read)."""

    async def check(conn: asyncpg.Connection) -> None:
        left = await conn.fetchval(Q["active_left"], tenant_id, registration_id)
        if left is not None:
            raise ConcurrencyConflict(tenant_id, str(left), 0, 1)

    return check


def _as_person(caller: Caller) -> Caller:
    return replace(caller, actor="user")


def _subject(state: Registration) -> str:
    """The client address is sealed under the key of the attempt's address (as E7 does)."""
    attempt: Attempt | None = state.attempt
    return subject_of(attempt.email_sealed) if attempt is not None else state.registration_id
