"""Ending credentials before their time: by a provider's logout token (spec §8, E9) or its
Security Event Token (contract V9), through one core (`revoke_subject`), and by an operator
(O10) — one credential, a registration's, a user's, or everything a provider issued.

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
from typing import Literal, Protocol, cast

import asyncpg

from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.delegation import STREAM_TYPE as DELEGATION
from events.delegation import DelegationRevoked
from events.envelope import Metadata
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import load_queries
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, InTransaction, retrying
from service.commands.delegation_head import delegation_head
from service.commands.identity import provider_keys
from service.commands.jti import remember_jti
from service.commands.operator_delegations import end_delegations
from service.commands.trust_list import lookup
from service.domain.errors import ProtocolError
from service.domain.registration import Registration, decide_revoke
from service.domain.trust_list import delegation_id_for
from service.providers.assertions import verify_logout_token, verify_set
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


class ProviderStatement(Protocol):
    """What E9's logout token and V9's SET both say, once verified: who, about whom, when."""

    @property
    def issuer(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def jti(self) -> str: ...
    @property
    def issued_at(self) -> datetime: ...
    @property
    def remember_until(self) -> datetime: ...


async def logout(
    ctx: Context,
    token: str,
    caller: Caller,
    admit: Callable[[str], Awaitable[None]] | None = None,
) -> Revoked:
    """E9: verify the provider's logout token, then `revoke_subject`. `admit` (the rate limit
    per issuer) is given the verified issuer before anything happens; if it raises, nothing is
    written and the `jti` stays unburned."""
    verified = await verify_logout_token(
        token,
        trust=lambda issuer: lookup(ctx, issuer),
        keys=provider_keys(ctx),
        audience=ctx.tenant.issuer,
        events_supported=(REVOKED_EVENT,),
        now=ctx.clock.now(),
    )
    if admit is not None:
        await admit(verified.issuer)
    return await revoke_subject(ctx, verified, caller)


async def receive_set(
    ctx: Context,
    token: str,
    caller: Caller,
    admit: Callable[[str], Awaitable[None]] | None = None,
) -> Revoked:
    """V9: verify the SET (service/providers/assertions.py `verify_set`); `admit` as at E9,
    the same budget per issuer. A SET carrying the revoked event URI revokes its subject
    (`revoke_subject`); one carrying no event URI we support only burns its jti (contract case
    31). A replayed `(iss, jti)` is `invalid_request` (O-K), nothing written."""
    verified = await verify_set(
        token,
        trust=lambda issuer: lookup(ctx, issuer),
        keys=provider_keys(ctx),
        audience=ctx.tenant.issuer,
        now=ctx.clock.now(),
    )
    if admit is not None:
        await admit(verified.issuer)
    try:
        if not verified.carries(REVOKED_EVENT):
            await _burn(ctx, verified)
            return Revoked(())
        return await revoke_subject(ctx, verified, caller)
    except ProtocolError as exc:
        if exc.code != "replay_detected":
            raise
        raise ProtocolError("invalid_request", "this SET's jti was already used") from None


def _remember(ctx: Context, verified: ProviderStatement) -> InTransaction:
    return remember_jti(
        ctx.tenant.tenant_id,
        verified.issuer,
        verified.jti,
        verified.remember_until,
        ctx.clock.now(),
    )


async def _burn(ctx: Context, verified: ProviderStatement) -> None:
    """Only the jti: a statement that changes nothing cannot be sent twice either."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _remember(ctx, verified)(cast(asyncpg.Connection, conn))


async def revoke_subject(ctx: Context, verified: ProviderStatement, caller: Caller) -> Revoked:
    """The one revocation core of E9 and V9 (design section 8): for the subject `(iss, sub,
    our issuer)`, in one transaction with the burned `jti` (a replay revokes nothing):

    - every active credential of its delegation issued before the end of the statement's
      `iat` second, v1 (E4) and v0.6 (V6/V7) alike: `credential.revoked` reason `logout` (a
      credential issued after the provider signed it survives: W10, security finding 8);
    - `delegation.revoked` (its generation + 1, so every assertion for the subject dies);
    - `registration.revoked` reason `logout` for each of the subject's step-up registrations
      that has not ended, also when no delegation exists yet (a pending step-up).
    """
    now = ctx.clock.now()
    delegation_id = delegation_id_for(verified.issuer, verified.subject, ctx.tenant.issuer)
    metadata = caller.envelope(actor=f"provider:{verified.issuer}")
    signed_before = issued_before(verified.issued_at)

    async def attempt() -> Revoked:
        step_ups = await _step_ups(ctx, delegation_id, now)
        changes = [change for _, change, _ in step_ups]
        ended: tuple[str, ...] = ()
        state = await delegation_head(ctx, delegation_id)
        if state is not None:
            rows = await ctx.pool.fetch(
                Q["active_of_delegation"], ctx.tenant.tenant_id, delegation_id, signed_before
            )
            ended = tuple(row["credential_id"] for row in rows)
            revoked = DelegationRevoked(reason="logout", jti=verified.jti, credential_ids=ended)
            stream = ctx.stream(DELEGATION, delegation_id)
            changes = [
                Change(stream, state.version, [revoked]),
                *_revocations(ctx, rows, "logout", None),
                *changes,
            ]
        if not changes:  # nothing was ever issued for that subject: only burn the jti
            await _burn(ctx, verified)
            return Revoked(())
        await ctx.record(changes, metadata=metadata, now=now, also=_remember(ctx, verified))
        for registration, change, _ in step_ups:
            await registration_state.remember(ctx, registration, change.events)
        return Revoked(ended, tuple(rid for _, _, rid in step_ups))

    return await retrying(attempt)


async def _step_ups(
    ctx: Context, delegation_id: str, now: datetime
) -> list[tuple[Registration, Change, str]]:
    """The subject's step-up registrations still open, each with its `registration.revoked`
    at the version it was decided on."""
    rows = await ctx.pool.fetch(
        REG_Q["step_ups_of_delegation"], ctx.tenant.tenant_id, delegation_id
    )
    found: list[tuple[Registration, Change, str]] = []
    for row in rows:
        rid: str = row["registration_id"]
        state = await registration_state.load(ctx, rid)
        if state is None:
            continue
        events = decide_revoke(state, reason="logout", note=None, now=now)
        if events:
            found.append((state, Change(ctx.stream(REGISTRATION, rid), state.version, events), rid))
    return found
