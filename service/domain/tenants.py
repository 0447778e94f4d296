"""Rules for tenants: pure `evolve` and `decide` functions (events/tenant.py).

A tenant id is a short lower-case name; `default` is the installation itself and is never an
aggregate. Hosts are what clients send in `Host` (a name, or name:port), lower case. The
settings a tenant may override are the protocol's (TENANT_SETTINGS); its public URL is its own
issuer and must be given, so two tenants never share an issuer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import assert_never

from events.catalogue import Event
from events.tenant import (
    TenantConfigured,
    TenantCreated,
    TenantDisabled,
    TenantEnabled,
    TenantEvent,
)

DEFAULT_TENANT = "default"
TENANT_ID = re.compile(r"[a-z][a-z0-9-]{1,31}")
HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")
TENANT_SETTINGS = frozenset(
    {
        "public_url", "resource_url", "resource_name", "resource_logo_uri", "scopes",
        "pre_claim_scopes", "post_claim_scopes", "flows", "credential_types",
        "registration_ttl", "otp_ttl", "access_token_ttl", "claim_link_ttl", "otp_max_misses",
        "otp_max_mints", "claim_max_misses", "contact_url", "terms_url", "privacy_url",
        # the v0.6 door (docs/design/v06-dialect.md, section 5.3); OIDC_* are the
        # installation's only: a client secret must not enter the log with tenant.configured
        "doors", "v06_profile", "assertion_ttl", "claim_poll_interval", "claim_deliveries",
        "claim_delivery_window", "sign_in", "sign_in_link_ttl", "session_ttl",
    }
)  # fmt: skip


class TenantRefused(ValueError):
    """A tenant change that cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    hosts: tuple[str, ...]
    settings: Mapping[str, str]
    active: bool
    version: int


def evolve(state: Tenant | None, event: TenantEvent, version: int) -> Tenant:
    match event:
        case TenantCreated():
            return Tenant(event.tenant_id, event.hosts, dict(event.settings), True, version)
        case TenantConfigured() if state is not None:
            return Tenant(state.tenant_id, event.hosts, dict(event.settings), state.active, version)
        case TenantDisabled() if state is not None:
            return Tenant(state.tenant_id, state.hosts, state.settings, False, version)
        case TenantEnabled() if state is not None:
            return Tenant(state.tenant_id, state.hosts, state.settings, True, version)
        case TenantConfigured() | TenantDisabled() | TenantEnabled():
            raise ValueError(f"{type(event).__name__} before tenant.created")
        case _:
            assert_never(event)


def fold(events: Sequence[tuple[TenantEvent, int]]) -> Tenant | None:
    state: Tenant | None = None
    for event, version in events:
        state = evolve(state, event, version)
    return state


def check_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(h.strip().lower() for h in hosts))
    if not cleaned:
        raise TenantRefused("hosts: at least one host name is needed")
    for host in cleaned:
        if not HOST.fullmatch(host):
            raise TenantRefused(f"hosts: {host!r} is not a host name (name or name:port)")
    return cleaned


def check_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """Only the per-tenant names; the values are checked by building the tenant's settings."""
    lowered = {k.lower(): v for k, v in settings.items()}
    unknown = sorted(set(lowered) - TENANT_SETTINGS)
    if unknown:
        raise TenantRefused(f"settings: {', '.join(unknown)} cannot be set per tenant")
    if "public_url" not in lowered:
        raise TenantRefused("settings: public_url is required (it is the tenant's issuer)")
    return dict(sorted(lowered.items()))


def decide_create(
    state: Tenant | None, tenant_id: str, hosts: Sequence[str], settings: Mapping[str, str]
) -> TenantCreated:
    if tenant_id == DEFAULT_TENANT or not TENANT_ID.fullmatch(tenant_id):
        raise TenantRefused(
            "tenant id: 2-32 characters, a-z, 0-9 and '-', starting with a letter; not 'default'"
        )
    if state is not None:
        raise TenantRefused(f"tenant {tenant_id} exists; configure it instead")
    return TenantCreated(
        tenant_id=tenant_id, hosts=check_hosts(hosts), settings=check_settings(settings)
    )


def decide_configure(
    state: Tenant | None, hosts: Sequence[str] | None, settings: Mapping[str, str] | None
) -> TenantConfigured | None:
    """New hosts and/or settings (each given in full), or None when nothing changes."""
    if state is None:
        raise TenantRefused("no such tenant")
    new_hosts = check_hosts(hosts) if hosts is not None else state.hosts
    new_settings = check_settings(settings) if settings is not None else dict(state.settings)
    if new_hosts == state.hosts and new_settings == dict(state.settings):
        return None
    return TenantConfigured(hosts=new_hosts, settings=new_settings)


def decide_status(state: Tenant | None, active: bool, reason: str | None) -> list[Event]:
    if state is None:
        raise TenantRefused("no such tenant")
    if state.active == active:
        return []
    return [TenantEnabled()] if active else [TenantDisabled(reason=reason)]
