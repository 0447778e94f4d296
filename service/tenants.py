"""Which tenant a request is for, and each tenant's configuration.

The directory holds the default tenant (the installation's own settings) and every tenant of
the `tenants` read model, each turned into a TenantConfig by reading the installation's
settings again with the tenant's overrides on top — the same parsers, the same checks. A
request's `Host` picks the tenant: one of a tenant's hosts, else the default tenant. A
disabled tenant's hosts are refused rather than falling back to the default tenant. The
directory is loaded at start-up and kept current from the event feed (`tenant.*`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

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
from service.tenant import TenantConfig

Q = load_queries("projections", "tenants.sql")
TENANT_EVENT_TYPES = frozenset(event_tag(cls) for cls in TENANT_EVENTS)  # what `apply` follows
log = structlog.get_logger("service.tenants")


class Disabled:
    """What a disabled tenant's host resolves to."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id


def tenant_settings(base: Settings, overrides: Mapping[str, str]) -> Settings:
    """The installation's settings with a tenant's overrides; ConfigError names a bad one."""
    env = {**base.source, **{PREFIX + name.upper(): value for name, value in overrides.items()}}
    return Settings.from_env(env, base.mode)


def tenant_config(base: Settings, tenant_id: str, overrides: Mapping[str, str]) -> TenantConfig:
    return TenantConfig.from_settings(tenant_settings(base, overrides), tenant_id)


@dataclass
class _Entry:
    config: TenantConfig
    hosts: tuple[str, ...]
    active: bool
    settings: dict[str, str]


class TenantDirectory:
    def __init__(self, base: Settings) -> None:
        self.base = base
        self.default = TenantConfig.from_settings(base, DEFAULT_TENANT)
        self._entries: dict[str, _Entry] = {}
        self._by_host: dict[str, str] = {}

    def resolve(self, host: str | None) -> TenantConfig | Disabled:
        """The tenant for a request's `Host` (name:port tried first, then the name alone)."""
        if host:
            host = host.strip().lower()
            found = self._by_host.get(host) or self._by_host.get(host.rsplit(":", 1)[0])
            if found is not None:
                entry = self._entries[found]
                return entry.config if entry.active else Disabled(found)
        return self.default

    def get(self, tenant_id: str) -> TenantConfig | None:
        if tenant_id == DEFAULT_TENANT:
            return self.default
        entry = self._entries.get(tenant_id)
        return entry.config if entry is not None and entry.active else None

    def configs(self) -> list[TenantConfig]:
        return [self.default, *(e.config for e in self._entries.values() if e.active)]

    async def load(self, pool: asyncpg.Pool) -> None:
        for row in await pool.fetch(Q["all"]):
            self._put(
                row["tenant_id"], tuple(row["hosts"]), json.loads(row["settings"]),
                row["status"] == "active",
            )  # fmt: skip

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
        except ConfigError as exc:  # checked when recorded; a changed base can still break it
            log.warning("tenants.unusable", tenant=tenant_id, error=str(exc))
            return
        old = self._entries.get(tenant_id)
        for host in old.hosts if old is not None else ():
            self._by_host.pop(host, None)
        self._entries[tenant_id] = _Entry(config, hosts, active, settings)
        for host in hosts:
            self._by_host[host] = tenant_id
