"""Tenant administration: create, configure, disable and enable tenants (events/tenant.py).

Each change is checked the way start-up checks settings (the tenant's settings are read with
its overrides, so a bad value is refused with the variable's own message) and recorded on the
tenant's stream with its expected version. A host belongs to one tenant: the check runs in the
append transaction under an advisory lock, so two operators cannot give one host to two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from events.catalogue import Event
from events.envelope import Metadata, StreamRef
from events.ledger import LEDGER
from events.sql import load_queries
from events.tenant import STREAM_TYPE, TenantEvent
from service.commands.context import Caller, Change, Context, InTransaction, retrying
from service.domain.tenants import (
    Tenant,
    TenantRefused,
    decide_configure,
    decide_create,
    decide_status,
    fold,
)
from service.settings import PREFIX, ConfigError, Settings
from service.tenancy.directory import tenant_config

Q = load_queries("projections", "tenants.sql")
HOSTS_LOCK = int.from_bytes(hashlib.sha256(b"authledger tenant hosts").digest()[:8], "big") >> 1


@dataclass(frozen=True, slots=True)
class TenantView:
    tenant_id: str
    hosts: tuple[str, ...]
    settings: Mapping[str, str]
    active: bool
    version: int


def _stream(tenant_id: str) -> StreamRef:
    return StreamRef(tenant_id, STREAM_TYPE, f"ten_{tenant_id}")


async def _state(ctx: Context, tenant_id: str) -> Tenant | None:
    recorded = await ctx.store.read_stream(_stream(tenant_id))
    events: list[tuple[TenantEvent, int]] = [
        (LEDGER.decode(r), r.stream_version)  # type: ignore[misc]
        for r in recorded
    ]
    return fold(events)


def _check_values(base: Settings, tenant_id: str, settings: Mapping[str, str]) -> None:
    """Read the tenant's settings as start-up would: a bad value is refused by its name."""
    try:
        config = tenant_config(base, tenant_id, settings)
    except ConfigError as exc:
        name, _, rest = str(exc).removeprefix(PREFIX).partition(":")
        raise TenantRefused(f"settings: {name.lower()}:{rest}") from None
    if config.issuer == base.public_url.rstrip("/"):
        raise TenantRefused("settings: public_url must differ from the default tenant's")


def _hosts_free(tenant_id: str, hosts: Sequence[str]) -> InTransaction:
    async def check(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", HOSTS_LOCK)
        taken = await conn.fetch(Q["holding_hosts"], list(hosts), tenant_id)
        if taken:
            pairs = ", ".join(f"{r['host']} ({r['tenant_id']})" for r in taken)
            raise TenantRefused(f"hosts: already in use: {pairs}")

    return check


async def _record(ctx: Context, tenant_id: str, version: int, event: Event, *,
                  hosts: Sequence[str], caller: Caller) -> None:  # fmt: skip
    await ctx.record(
        [Change(_stream(tenant_id), version, [event])],
        metadata=Metadata(correlation_id=caller.request_id, actor=caller.actor),
        now=ctx.clock.now(),
        also=_hosts_free(tenant_id, hosts),
    )


async def create_tenant(
    ctx: Context, base: Settings, tenant_id: str, *, hosts: Sequence[str],
    settings: Mapping[str, str], caller: Caller,
) -> None:  # fmt: skip
    async def attempt() -> None:
        created = decide_create(await _state(ctx, tenant_id), tenant_id, hosts, settings)
        _check_values(base, tenant_id, created.settings)
        await _record(ctx, tenant_id, 0, created, hosts=created.hosts, caller=caller)

    await retrying(attempt)


async def configure_tenant(
    ctx: Context, base: Settings, tenant_id: str, caller: Caller, *,
    hosts: Sequence[str] | None = None, settings: Mapping[str, str] | None = None,
) -> bool:  # fmt: skip
    """New hosts and/or settings, each replacing the old in full; True when something changed."""

    async def attempt() -> bool:
        state = await _state(ctx, tenant_id)
        configured = decide_configure(state, hosts, settings)
        if configured is None or state is None:
            return False
        _check_values(base, tenant_id, configured.settings)
        await _record(ctx, tenant_id, state.version, configured, hosts=configured.hosts,
                      caller=caller)  # fmt: skip
        return True

    return await retrying(attempt)


async def set_tenant_active(
    ctx: Context, tenant_id: str, active: bool, caller: Caller, reason: str | None = None
) -> bool:
    async def attempt() -> bool:
        state = await _state(ctx, tenant_id)
        events = decide_status(state, active, reason)
        if not events or state is None:
            return False
        await _record(ctx, tenant_id, state.version, events[0], hosts=(), caller=caller)
        return True

    return await retrying(attempt)


async def list_tenants(ctx: Context) -> list[TenantView]:
    return [
        TenantView(r["tenant_id"], tuple(r["hosts"]), json.loads(r["settings"]),
                   r["status"] == "active", r["version"])
        for r in await ctx.pool.fetch(Q["all"])
    ]  # fmt: skip
