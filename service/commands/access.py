"""Scoped operator credentials: grant, revoke, list (events/access.py, service/domain/access.py).

Both the admin API (`/admin/credentials`) and the CLI (`authledger access …`) call these. A
grant makes a fresh id and a 256-bit token, records `access.granted` with the token's SHA-256
only, and hands the token back once. The read model is written in the append's transaction,
so the credential works (or, once revoked, is refused) as soon as the call returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events.access import STREAM_TYPE, AccessEvent
from events.envelope import Metadata, StreamRef
from events.ledger import LEDGER
from events.sql import load_queries
from service.commands.context import Caller, Change, Context, retrying
from service.crypto.tokens import new_access_credential_id, new_access_token, token_hash
from service.domain.access import (
    Access,
    AccessRefused,
    NotGranted,
    decide_grant,
    decide_revoke,
    evolve,
)
from service.domain.tenants import DEFAULT_TENANT, TENANT_ID

Q = load_queries("projections", "access.sql")


@dataclass(frozen=True, slots=True)
class Granted:
    """A new credential and its token: the only time the token exists outside its holder."""

    access: Access
    token: str
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class Listed:
    credential_id: str
    tenant_id: str | None
    scope: str
    client_id: str | None
    label: str
    granted_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None


def _stream(tenant_id: str | None, credential_id: str) -> StreamRef:
    """An installation-wide credential (operator, metrics) lives in the default tenant."""
    return StreamRef(tenant_id or DEFAULT_TENANT, STREAM_TYPE, credential_id)


def _metadata(caller: Caller) -> Metadata:
    """Who granted or revoked (`admin:<credential id>`, `admin:bootstrap`, `cli:<login>`)
    and the request; no client IP (an operator is no data subject)."""
    return Metadata(correlation_id=caller.request_id, actor=caller.actor)


async def _state(ctx: Context, stream: StreamRef) -> Access | None:
    state: Access | None = None
    for recorded in await ctx.store.read_stream(stream):
        event: AccessEvent = LEDGER.decode(recorded)  # type: ignore[assignment]
        state = evolve(state, event, recorded.stream_id, recorded.stream_version)
    return state


async def grant_access(
    ctx: Context,
    caller: Caller,
    *,
    scope: str,
    label: str,
    tenant_id: str | None = None,
    client_id: str | None = None,
) -> Granted:
    """Grant a credential of `scope`; AccessRefused says why not (nothing is written then)."""
    if tenant_id is not None and tenant_id != DEFAULT_TENANT:
        if not TENANT_ID.fullmatch(tenant_id):
            raise AccessRefused(f"tenant_id: no tenant {tenant_id!r}")
        if not await ctx.pool.fetchval(Q["tenant_exists"], tenant_id):
            raise AccessRefused(f"tenant_id: no tenant {tenant_id!r}")
    credential_id, token = new_access_credential_id(), new_access_token()
    events = decide_grant(None, scope=scope, tenant_id=tenant_id, client_id=client_id,
                          label=label, token_hash=token_hash(token))  # fmt: skip
    stream, now = _stream(tenant_id, credential_id), ctx.clock.now()
    await ctx.record([Change(stream, 0, events)], metadata=_metadata(caller), now=now)
    access = evolve(None, events[0], credential_id, 1)  # type: ignore[arg-type]
    return Granted(access, token, now)


async def revoke_access(
    ctx: Context, credential_id: str, caller: Caller, reason: str | None = None
) -> bool:
    """Revoke it: True when this call revoked it, False when it was revoked already.
    NotGranted when no such credential exists."""
    row = await ctx.pool.fetchrow(Q["by_id"], credential_id)
    if row is None:
        raise NotGranted(credential_id)
    stream = _stream(row["tenant_id"], credential_id)

    async def attempt() -> bool:
        state = await _state(ctx, stream)
        events = decide_revoke(state, reason)
        if not events or state is None:
            return False
        await ctx.record(
            [Change(stream, state.version, events)], metadata=_metadata(caller), now=ctx.clock.now()
        )
        return True

    return await retrying(attempt)


async def list_access(
    ctx: Context, *, tenant_id: str | None = None, with_revoked: bool = False
) -> list[Listed]:
    """Every credential (of `tenant_id` only, when given), oldest first; never a token or hash."""
    rows = await ctx.pool.fetch(Q["listed"], tenant_id, with_revoked)
    return [Listed(**dict(row)) for row in rows]
