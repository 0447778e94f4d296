"""Ending credentials before their time: by a provider's logout token (spec §8, E9) and by an
operator (O10) — one credential, a registration's, a user's, or everything a provider issued.

An operator's revocation by registration, user or provider also ends the v0.6 registrations
in that scope (O-R: `registration.revoked`, reason `operator`), so their service-signed
assertions stop exchanging for new tokens and their claim tokens stop working. That pass runs
first: a token exchanged meanwhile is either refused (its exchange re-reads the registration
under the append lock) or already recorded when the credentials are listed, so it ends too.
v1 registrations get no such event (the design's open question 6).

Each credential ends with its own `credential.revoked`, appended at the version the read model
showed; if another command moved it meanwhile (a claim re-scoping it, a racing revocation), the
batch is read again, so nothing active is skipped and nothing is revoked twice. The credential
cache of every replica refuses a revoked credential as soon as it reads the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Literal, cast

import asyncpg

from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.delegation import STREAM_TYPE as DELEGATION
from events.delegation import DelegationRevoked
from events.envelope import Metadata
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import load_queries
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, retrying
from service.commands.delegation_head import delegation_head
from service.commands.identity import provider_keys
from service.commands.jti import remember_jti
from service.commands.operator_delegations import end_delegations
from service.commands.trust_list import lookup
from service.domain.registration import decide_revoke
from service.domain.trust_list import delegation_id_for
from service.providers.assertions import verify_logout_token
from service.tenancy.config import REVOKED_EVENT

Q = load_queries("projections", "credentials.sql")
REG_Q = load_queries("service.commands", "revocation.sql")
BATCH = 500  # credentials per transaction when revoking in bulk
Scope = Literal["credential", "registration", "user", "issuer"]
_QUERY: dict[Scope, str] = {
    "credential": "active_one",
    "registration": "active_of_registration",
    "user": "active_of_user",
    "issuer": "active_of_issuer",
}


_V06_QUERY: dict[Scope, str] = {
    "registration": "v06_of_registration",
    "user": "v06_of_user",
    "issuer": "v06_of_issuer",
}


@dataclass(frozen=True, slots=True)
class Revoked:
    credential_ids: tuple[str, ...]
    registration_ids: tuple[str, ...] = ()  # v0.6 registrations ended with them (O-R)

    @property
    def count(self) -> int:
        return len(self.credential_ids)


def _revocations(
    ctx: Context, rows: Sequence[asyncpg.Record], reason: str, note: str | None
) -> list[Change]:
    event = CredentialRevoked(reason=reason, note=note)
    return [
        Change(ctx.stream(CREDENTIAL, row["credential_id"]), row["version"], [event])
        for row in rows
    ]


async def revoke(
    ctx: Context, scope: Scope, target: str, caller: Caller, note: str | None = None
) -> Revoked:
    """An operator's revocation of every active credential in `scope` = `target`, recorded
    with reason `operator` and the operator's note, in batches of BATCH; first, the v0.6
    registrations in that scope end (O-R)."""
    query = Q[_QUERY[scope]]
    args: tuple[object, ...] = (ctx.tenant.tenant_id, target)
    metadata = Metadata(correlation_id=caller.request_id, actor=caller.actor)
    ended = await _end_v06_registrations(ctx, scope, target, metadata, note)
    await end_delegations(ctx, scope, target, metadata)  # O-R: their subjects' assertions
    done: list[str] = []
    while True:

        async def batch() -> list[str]:
            rows = await ctx.pool.fetch(query, *args, BATCH)
            if rows:
                await ctx.record(
                    _revocations(ctx, rows, "operator", note),
                    metadata=metadata,
                    now=ctx.clock.now(),
                )
            return [row["credential_id"] for row in rows]

        revoked = await retrying(batch)
        done += revoked
        if len(revoked) < BATCH:
            return Revoked(tuple(done), ended)


async def _end_v06_registrations(
    ctx: Context, scope: Scope, target: str, metadata: Metadata, note: str | None
) -> tuple[str, ...]:
    """`registration.revoked` (operator) for each v0.6 registration of the scope that has not
    ended, each at the version it was decided on; the ids of those it ended."""
    if scope not in _V06_QUERY:
        return ()  # one credential: its registration lives on
    query, tenant_id = REG_Q[_V06_QUERY[scope]], ctx.tenant.tenant_id
    ended: list[str] = []
    after = ""
    while True:
        rows = await ctx.pool.fetch(query, tenant_id, target, after, BATCH)
        for row in rows:
            rid: str = row["registration_id"]
            if await retrying(partial(_end_one, ctx, rid, metadata, note)):
                ended.append(rid)
        if len(rows) < BATCH:
            return tuple(ended)
        after = rows[-1]["registration_id"]


async def _end_one(ctx: Context, rid: str, metadata: Metadata, note: str | None) -> bool:
    state = await registration_state.load(ctx, rid)
    if state is None:
        return False
    now = ctx.clock.now()
    events = decide_revoke(state, reason="operator", note=note, now=now)
    if not events:
        return False
    stream = ctx.stream(REGISTRATION, rid)
    await ctx.record([Change(stream, state.version, events)], metadata=metadata, now=now)
    await registration_state.remember(ctx, state, events)
    return True


def issued_before(iat: datetime) -> datetime:
    """The cutoff a logout signed at `iat` revokes below: the end of `iat`'s second, since
    `iat` is usually whole seconds; a credential of that same second counts as earlier
    (when in doubt, revoke: the agent mints a fresh ID-JAG)."""
    return iat.replace(microsecond=0) + timedelta(seconds=1)


async def logout(
    ctx: Context,
    token: str,
    caller: Caller,
    admit: Callable[[str], Awaitable[None]] | None = None,
) -> Revoked:
    """E9: verify the provider's logout token, then revoke every active credential issued
    for its `(iss, sub, aud)` before the token's `iat` and mark the delegation revoked — in
    one transaction with the burned `jti`, so a replayed token revokes nothing, and a
    credential issued after the provider signed the logout survives it (W10, security
    finding 8). `admit` (the rate limit per issuer) is given the verified issuer before
    anything happens; if it raises, nothing is written and the `jti` stays unburned."""
    now = ctx.clock.now()
    verified = await verify_logout_token(
        token,
        trust=lambda issuer: lookup(ctx, issuer),
        keys=provider_keys(ctx),
        audience=ctx.tenant.issuer,
        events_supported=(REVOKED_EVENT,),
        now=now,
    )
    if admit is not None:
        await admit(verified.issuer)
    delegation_id = delegation_id_for(verified.issuer, verified.subject, ctx.tenant.issuer)
    remember = remember_jti(
        ctx.tenant.tenant_id, verified.issuer, verified.jti, verified.remember_until, now
    )
    metadata = caller.envelope(actor=f"provider:{verified.issuer}")
    signed_before = issued_before(verified.issued_at)

    async def attempt() -> Revoked:
        stream = ctx.stream(DELEGATION, delegation_id)
        state = await delegation_head(ctx, delegation_id)
        if state is None:  # nothing was ever issued for that subject: only burn the jti
            async with ctx.pool.acquire() as conn, conn.transaction():
                await remember(cast(asyncpg.Connection, conn))
            return Revoked(())
        rows = await ctx.pool.fetch(
            Q["active_of_delegation"], ctx.tenant.tenant_id, delegation_id, signed_before
        )
        ended = tuple(row["credential_id"] for row in rows)
        revoked = DelegationRevoked(reason="logout", jti=verified.jti, credential_ids=ended)
        await ctx.record(
            [Change(stream, state.version, [revoked]), *_revocations(ctx, rows, "logout", None)],
            metadata=metadata,
            now=now,
            also=remember,
        )
        return Revoked(ended)

    return await retrying(attempt)
