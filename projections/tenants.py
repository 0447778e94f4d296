"""Read model `tenants`: every tenant but the default one, its hosts, overrides and status."""

from __future__ import annotations

import json
from typing import Any, assert_never

from events.envelope import RecordedEvent
from events.sql import load_queries
from events.tenant import (
    TenantConfigured,
    TenantCreated,
    TenantDisabled,
    TenantEnabled,
    TenantEvent,
)

Q = load_queries("projections", "tenants.sql")
Statement = tuple[str, tuple[Any, ...]]


def statement(event: TenantEvent, recorded: RecordedEvent) -> Statement:
    version, at = recorded.stream_version, recorded.occurred_at
    match event:
        case TenantCreated():
            settings = json.dumps(event.settings, sort_keys=True)
            return Q["created"], (event.tenant_id, list(event.hosts), settings, version, at)
        case TenantConfigured():
            settings = json.dumps(event.settings, sort_keys=True)
            return Q["configured"], (recorded.tenant_id, list(event.hosts), settings, version, at)
        case TenantDisabled():
            return Q["status"], (recorded.tenant_id, "disabled", version, at)
        case TenantEnabled():
            return Q["status"], (recorded.tenant_id, "active", version, at)
        case _:
            assert_never(event)
