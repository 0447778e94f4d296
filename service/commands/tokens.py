"""The v0.6 door's token endpoints: V6 exchanges an identity assertion for an access token
(RFC 7523 jwt-bearer), V8 ends a token its holder presents (RFC 7009).

V6 verifies the assertion (service/crypto/assertions.py), reads the subject it names — the
registration, or for an ID-JAG subject its delegation — and lets `decide_exchange` say whether
it still exchanges and for which scopes (service/domain/exchange.py). The access token is
today's `at+jwt`, a credential like any other (`credential.issued`, issued via the
registration's kind or `id_jag`), so introspection, the revocation feed, expiry and erasure
treat it as they treat one from E4. The append carries an `also` step that reads the subject's
stream version again under the append lock: if a claim (which ends the pre-claim tokens) or a
revocation was recorded since the decision, the exchange runs again on the new state, so no
token minted on a stale read outlives the event that should have ended it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.errors import ConcurrencyConflict
from events.sql import load_queries
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, InTransaction, retrying
from service.commands.credentials import Minted, mint
from service.crypto.assertions import AssertionRefused, verify_assertion_reloading
from service.crypto.tokens import token_hash
from service.domain.errors import ProtocolError
from service.domain.exchange import DelegationSubject, Grant, decide_exchange, delegation_of
from service.domain.registration import Registration

Q = load_queries("service.commands", "tokens.sql")
REVOKED_BY_HOLDER = "agent"  # credential.revoked's reason at V8
log = structlog.get_logger("service.commands.tokens")


async def exchange(
    ctx: Context,
    assertion: str,
    caller: Caller,
    admit: Callable[[str], Awaitable[None]] | None = None,
) -> Minted:
    """V6: a new access token for a valid assertion, or ProtocolError `invalid_grant`.
    `admit` (the limit per subject) is given the verified subject before anything is read."""
    tenant = ctx.tenant
    try:
        claims = await verify_assertion_reloading(
            ctx.keyring, ctx.pool, assertion, issuer=tenant.issuer, now=ctx.clock.now()
        )
    except AssertionRefused as exc:
        log.info("token.assertion_refused", reason=str(exc))  # the reason names no value
        raise ProtocolError("invalid_grant", "the assertion is not valid") from None
    if admit is not None:
        await admit(claims.subject)

    async def attempt() -> Minted:
        now = ctx.clock.now()
        subject = await _subject(ctx, claims.subject)
        grant = decide_exchange(
            subject,
            sub=claims.subject,
            gen=claims.gen,
            scopes_supported=tenant.scopes_supported,
            now=now,
        )
        token = mint(
            ctx,
            "access_token",
            now=now,
            scopes=grant.scopes,
            issued_via=grant.issued_via,
            registration_id=grant.registration_id,
            user_id=grant.user_id,
            issuer=grant.issuer,
            delegation_id=grant.delegation_id,
            not_after=grant.not_after,
        )
        # The client address under the key of the data subject the token acts for.
        owner = grant.user_id if grant.delegation_id is not None else grant.registration_id
        await ctx.record(
            [token.change],
            metadata=await ctx.metadata(caller, owner or grant.registration_id),
            now=now,
            also=_unmoved(tenant.tenant_id, grant),
        )
        return token

    return await retrying(attempt)


async def _subject(ctx: Context, sub: str) -> Registration | DelegationSubject | None:
    """The registration `sub` names; else, for an ID-JAG subject's id, its delegation."""
    registration = await registration_state.load(ctx, sub)
    if registration is not None:
        return registration
    delegation_id = delegation_of(sub)
    if delegation_id is None:
        return None
    row = await ctx.pool.fetchrow(Q["subject_for_exchange"], ctx.tenant.tenant_id, delegation_id)
    if row is None:
        return None
    return DelegationSubject(
        delegation_id=row["delegation_id"],
        version=row["version"],
        revocations=row["generation"],
        user_id=row["user_id"],
        user_erased=row["user_erased"],
        issuer=row["issuer"],
    )


def _unmoved(tenant_id: str, grant: Grant) -> InTransaction:
    """Run under the append lock: ConcurrencyConflict if the subject's stream moved past the
    version the grant was decided on (`retrying` then decides again)."""

    async def check(conn: asyncpg.Connection) -> None:
        now_at = await conn.fetchval(Q["stream_version"], tenant_id, grant.stream_id)
        if now_at != grant.version:
            raise ConcurrencyConflict(tenant_id, grant.stream_id, grant.version, now_at)

    return check


async def revoke_presented(ctx: Context, token: str, caller: Caller) -> bool:
    """V8: end the live credential `token` is, if it is one of this tenant's (reason `agent`,
    by its holder); anything else (unknown, ended, another tenant's) changes nothing, and the
    caller cannot tell which (RFC 7009 2.2). True when a credential ended."""
    digest = token_hash(token)

    async def attempt() -> bool:
        now = ctx.clock.now()
        row = await ctx.pool.fetchrow(Q["presented"], digest)
        if (
            row is None
            or row["tenant_id"] != ctx.tenant.tenant_id
            or row["status"] != "active"
            or (row["expires_at"] is not None and row["expires_at"] <= now)
        ):
            return False
        owner = row["user_id"] or row["registration_id"]
        stream = ctx.stream(CREDENTIAL, row["credential_id"])
        revoked = CredentialRevoked(reason=REVOKED_BY_HOLDER)
        await ctx.record(
            [Change(stream, row["version"], [revoked])],
            metadata=(await ctx.metadata(caller, owner)) if owner else caller.envelope(),
            now=now,
        )
        return True

    return await retrying(attempt)
