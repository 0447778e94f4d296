"""Which tenant a request is for, and each tenant's configuration.

The directory holds the default tenant (the installation's own settings) and every tenant of
the `tenants` read model, each turned into a TenantConfig by reading the installation's
settings again with the tenant's overrides on top — the same parsers, the same checks. A
request's `Host` picks the tenant: one of a tenant's hosts, else the default tenant. A
disabled tenant's hosts are refused rather than falling back to the default tenant. The
directory is loaded at start-up and kept current from the event feed (`tenant.*`).

A tenant whose configuration does not load (a row that is not JSON or not a map of strings,
a setting the installation's settings no longer accept) is kept as unavailable, hosts and all:
its hosts are refused (503) instead of falling back to the default tenant, and it is logged
(`tenants.unusable`). Until the directory has loaded once (Postgres was down at start-up),
every host but the default tenant's own is unavailable the same way (security issue 12,
finding 9).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import structlog

from events.catalogue import event_tag
from events.envelope import RecordedEvent
from events.ledger import LEDGER
from events.sql import load_queries
from events.tenant import (
    TENANT_EVENTS,
    TenantConfigured,
    TenantCreated,
    TenantDisabled,
    TenantEnabled,
)
from service.domain.tenants import DEFAULT_TENANT
from service.settings import PREFIX, ConfigError, Settings
from service.tenancy.config import TenantConfig

Q = load_queries("projections", "tenants.sql")
TENANT_EVENT_TYPES = frozenset(event_tag(cls) for cls in TENANT_EVENTS)  # what `apply` follows
log = structlog.get_logger("service.tenancy.directory")


RELOAD_EVERY = 2.0  # seconds between tries to load a directory that has never loaded


class Disabled:
    """What a disabled tenant's host resolves to."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id


class Unavailable:
    """What the host of a tenant whose configuration did not load resolves to (None: the
    directory itself has not loaded yet, so which tenant a host belongs to is unknown)."""

    def __init__(self, tenant_id: str | None) -> None:
        self.tenant_id = tenant_id


def tenant_settings(base: Settings, overrides: Mapping[str, str]) -> Settings:
    """The installation's settings with a tenant's overrides; ConfigError names a bad one."""
    env = {**base.source, **{PREFIX + name.upper(): value for name, value in overrides.items()}}
    return Settings.from_env(env, base.mode)


def tenant_config(base: Settings, tenant_id: str, overrides: Mapping[str, str]) -> TenantConfig:
    return TenantConfig.from_settings(tenant_settings(base, overrides), tenant_id)


@dataclass
class _Entry:
    config: TenantConfig | None  # None: the configuration did not load
    hosts: tuple[str, ...]
    active: bool
    settings: dict[str, str]


def _overrides(raw: Any) -> dict[str, str]:
    """A tenant's settings column: a JSON object of strings; ValueError otherwise."""
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("the tenant's settings are not a JSON object of strings")
    return value


class TenantDirectory:
    def __init__(self, base: Settings) -> None:
        self.base = base
        self.default = TenantConfig.from_settings(base, DEFAULT_TENANT)
        self._entries: dict[str, _Entry] = {}
        self._by_host: dict[str, str] = {}
        # True: a load succeeded; False: every load so far failed; None: none was tried
        self.loaded: bool | None = None
        self._pool: asyncpg.Pool | None = None  # for `load_if_never_loaded`
        self._tried_at = -1e9
        self._loading = asyncio.Lock()
        public = urlsplit(base.public_url)
        self._default_hosts = {public.netloc.lower(), (public.hostname or "").lower()}

    def resolve(self, host: str | None) -> TenantConfig | Disabled | Unavailable:
        """The tenant for a request's `Host` (name:port tried first, then the name alone)."""
        if host:
            host = host.strip().lower()
            name = host.rsplit(":", 1)[0]
            found = self._by_host.get(host) or self._by_host.get(name)
            if found is not None:
                entry = self._entries[found]
                if not entry.active:
                    return Disabled(found)
                return entry.config if entry.config is not None else Unavailable(found)
            if self.loaded is False and not {host, name} & self._default_hosts:
                return Unavailable(None)  # maybe a tenant's host: never guess the default
        return self.default

    def get(self, tenant_id: str) -> TenantConfig | None:
        if tenant_id == DEFAULT_TENANT:
            return self.default
        entry = self._entries.get(tenant_id)
        return entry.config if entry is not None and entry.active else None

    def configs(self) -> list[TenantConfig]:
        usable = (e.config for e in self._entries.values() if e.active and e.config is not None)
        return [self.default, *usable]

    def unavailable(self) -> list[str]:
        """The active tenants whose configuration did not load ("*": the directory did not)."""
        broken = [t for t, e in self._entries.items() if e.active and e.config is None]
        return sorted(broken) + (["*"] if self.loaded is False else [])

    async def load(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        try:
            rows = await pool.fetch(Q["all"])
        except BaseException:
            self.loaded = self.loaded or False
            raise
        for row in rows:
            tenant_id, hosts = row["tenant_id"], tuple(row["hosts"])
            try:
                overrides = _overrides(row["settings"])
            except ValueError as exc:
                self._broken(tenant_id, hosts, row["status"] == "active", str(exc))
                continue
            self._put(tenant_id, hosts, overrides, row["status"] == "active")
        self.loaded = True

    async def load_if_never_loaded(self) -> None:
        """Try again (at most every RELOAD_EVERY seconds) to load a directory whose first
        load failed; errors are logged and leave it unloaded."""
        if self.loaded is not False or self._pool is None:
            return
        async with self._loading:
            if self.loaded or time.monotonic() - self._tried_at < RELOAD_EVERY:
                return
            self._tried_at = time.monotonic()
            try:
                await self.load(self._pool)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("tenants.not_loaded", error=type(exc).__name__)
            else:
                log.info("tenants.loaded", tenants=len(self._entries))

    def apply(self, recorded: RecordedEvent) -> None:
        """A feed hook for `tenant.*` events (the tenant is the event's own tenant)."""
        event = LEDGER.decode(recorded)
        tenant_id = recorded.tenant_id
        entry = self._entries.get(tenant_id)
        match event:
            case TenantCreated():
                self._put(event.tenant_id, event.hosts, dict(event.settings), True)
            case TenantConfigured() if entry is not None:
                self._put(tenant_id, event.hosts, dict(event.settings), entry.active)
            case TenantDisabled() | TenantEnabled() if entry is not None:
                entry.active = isinstance(event, TenantEnabled)

    def _put(
        self, tenant_id: str, hosts: tuple[str, ...], settings: dict[str, str], active: bool
    ) -> None:
        try:
            config = tenant_config(self.base, tenant_id, settings)
        except (ConfigError, ValueError, TypeError, AttributeError) as exc:
            # checked when recorded; a changed base (or a hand-edited row) can still break it
            self._broken(tenant_id, hosts, active, str(exc))
            return
        self._set(tenant_id, _Entry(config, hosts, active, settings))

    def _broken(self, tenant_id: str, hosts: tuple[str, ...], active: bool, error: str) -> None:
        """Keep the tenant and its hosts, unavailable: never let them reach the default."""
        log.error("tenants.unusable", tenant=tenant_id, error=error)
        self._set(tenant_id, _Entry(None, hosts, active, {}))

    def _set(self, tenant_id: str, entry: _Entry) -> None:
        old = self._entries.get(tenant_id)
        for host in old.hosts if old is not None else ():
            if self._by_host.get(host) == tenant_id:
                del self._by_host[host]
        self._entries[tenant_id] = entry
        for host in entry.hosts:
            self._by_host[host] = tenant_id
