"""Events of tenants (stream type `tenant`, id `ten_<tenant id>`).

A tenant is one service fronted by this ledger: its own resource URL, names, scopes, flows,
lifetimes, trust list, limits and signing keys, reached by its own host names. The default
tenant is the installation's own settings and needs no event; others are created, configured
(the whole set of overrides each time, so the state at any position is the last one) and
disabled or enabled by an operator.
"""

from __future__ import annotations

from events.catalogue import Event

STREAM_TYPE = "tenant"


class TenantCreated(Event, frozen=True, kw_only=True, tag="tenant.created"):
    """`settings` are AUTHLEDGER_* names without the prefix, lower case, over the
    installation's own (e.g. {"public_url": "https://auth.acme.example", "flows": "anonymous"})."""

    tenant_id: str
    hosts: tuple[str, ...]
    settings: dict[str, str]


class TenantConfigured(Event, frozen=True, kw_only=True, tag="tenant.configured"):
    hosts: tuple[str, ...]
    settings: dict[str, str]


class TenantDisabled(Event, frozen=True, kw_only=True, tag="tenant.disabled"):
    """Its hosts answer 404 `tenant_disabled`; its credentials are refused; nothing is lost."""

    reason: str | None = None


class TenantEnabled(Event, frozen=True, kw_only=True, tag="tenant.enabled"):
    pass


TENANT_EVENTS: tuple[type[TenantEvent], ...] = (
    TenantCreated,
    TenantConfigured,
    TenantDisabled,
    TenantEnabled,
)
TenantEvent = TenantCreated | TenantConfigured | TenantDisabled | TenantEnabled
