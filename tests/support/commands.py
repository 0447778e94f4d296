"""The commands' Context on a test's own database, as the service builds it (below HTTP)."""

from __future__ import annotations

import asyncpg

from events.clock import ManualClock
from events.store import EventStore
from service.commands.context import Context
from service.crypto.pii import Sealer
from service.crypto.signing import KeyRing
from service.providers.jwks import JwksCache
from service.settings import Settings
from service.tenancy.config import TenantConfig

SECRET = "s" * 40


async def command_context(
    store: EventStore,
    pool: asyncpg.Pool,
    clock: ManualClock | None = None,
    *,
    settings: Settings | None = None,
    secret: str = SECRET,
    provider_keys: JwksCache | None = None,
) -> Context:
    """The default tenant of `settings` (the defaults), with an active signing key; with
    `provider_keys`, agent providers' keys fetched there (ID-JAG commands)."""
    clock = clock or ManualClock()
    ring = KeyRing(secret)
    await ring.ensure_active(pool, clock.now())
    chosen = settings or Settings(database_url="", nats_url="", secret_key=secret)
    return Context(
        store=store,
        tenant=TenantConfig.from_settings(chosen),
        sealer=Sealer(secret),
        secret_key=secret,
        clock=clock,
        keyring=ring,
        provider_keys=provider_keys,
    )
