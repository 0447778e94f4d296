"""Tenants as pure rules, and the directory that turns them into configurations by Host."""

from __future__ import annotations

import pytest

from events.envelope import RecordedEvent
from events.ledger import LEDGER
from events.tenant import TenantConfigured, TenantCreated, TenantDisabled, TenantEnabled
from service.domain.tenants import (
    TenantRefused,
    decide_configure,
    decide_create,
    decide_status,
    fold,
)
from service.settings import Settings
from service.tenancy.config import TenantConfig
from service.tenancy.directory import Disabled, TenantDirectory
from tests.support.builders import NOW

BASE = Settings.from_env(
    {
        "AUTHLEDGER_DATABASE_URL": "postgresql://db/x",
        "AUTHLEDGER_NATS_URL": "nats://nats:4222",
        "AUTHLEDGER_PUBLIC_URL": "https://auth.example.com",
    },
    "migrate",
)
ACME = {"public_url": "https://auth.acme.example", "resource_name": "Acme", "flows": "anonymous"}


def test_create_checks_id_hosts_and_settings() -> None:
    created = decide_create(None, "acme", ["Auth.Acme.Example", "auth.acme.example"], ACME)
    assert created.hosts == ("auth.acme.example",)
    assert created.settings == dict(sorted(ACME.items()))
    for bad_id in ("default", "A", "1acme", "acme_corp", "x" * 40):
        with pytest.raises(TenantRefused, match="tenant id"):
            decide_create(None, bad_id, ["h.example"], ACME)
    with pytest.raises(TenantRefused, match="hosts"):
        decide_create(None, "acme", [], ACME)
    with pytest.raises(TenantRefused, match="hosts"):
        decide_create(None, "acme", ["bad host"], ACME)
    with pytest.raises(TenantRefused, match="database_url cannot be set per tenant"):
        decide_create(None, "acme", ["h.example"], {**ACME, "database_url": "postgresql://x/y"})
    with pytest.raises(TenantRefused, match="public_url is required"):
        decide_create(None, "acme", ["h.example"], {"resource_name": "Acme"})
    state = fold([(created, 1)])
    with pytest.raises(TenantRefused, match="exists"):
        decide_create(state, "acme", ["h.example"], ACME)


def test_configure_disable_enable() -> None:
    state = fold([(decide_create(None, "acme", ["a.example"], ACME), 1)])
    assert state is not None
    assert decide_configure(state, None, None) is None
    configured = decide_configure(state, ["b.example"], None)
    assert configured == TenantConfigured(hosts=("b.example",), settings=dict(state.settings))
    [disabled] = decide_status(state, False, "unpaid")
    assert disabled == TenantDisabled(reason="unpaid")
    assert decide_status(state, True, None) == []
    after = fold([(decide_create(None, "acme", ["a.example"], ACME), 1), (disabled, 2)])
    assert after is not None
    assert not after.active
    assert decide_status(after, True, None) == [TenantEnabled()]
    with pytest.raises(TenantRefused, match="no such tenant"):
        decide_configure(None, ["x.example"], None)


def _recorded(event: object, tenant: str, version: int) -> RecordedEvent:
    new = LEDGER.new(event, occurred_at=NOW)  # type: ignore[arg-type]
    return RecordedEvent(
        position=version, event_id=new.event_id, tenant_id=tenant, stream_type="tenant",
        stream_id=f"ten_{tenant}", stream_version=version, type=new.type,
        schema_version=new.schema_version, occurred_at=NOW, recorded_at=NOW,
        payload=new.payload, metadata=b"{}", hash=bytes(32),
    )  # fmt: skip


def test_the_directory_resolves_hosts_and_falls_back_to_the_default() -> None:
    directory = TenantDirectory(BASE)
    created = TenantCreated(tenant_id="acme", hosts=("auth.acme.example",), settings=ACME)
    directory.apply(_recorded(created, "acme", 1))
    acme = directory.resolve("auth.acme.example:443")
    assert isinstance(acme, TenantConfig)
    assert (acme.tenant_id, acme.issuer, acme.resource_name) == (
        "acme",
        "https://auth.acme.example",
        "Acme",
    )
    assert acme.flows == ("anonymous",)
    assert acme.resource == "https://auth.acme.example/api/"
    default = directory.resolve("auth.example.com")
    assert isinstance(default, TenantConfig)
    assert default.tenant_id == "default"
    assert directory.resolve(None) is directory.default
    directory.apply(_recorded(TenantDisabled(reason="x"), "acme", 2))
    assert isinstance(directory.resolve("AUTH.ACME.EXAMPLE"), Disabled)
    assert directory.get("acme") is None
    directory.apply(_recorded(TenantEnabled(), "acme", 3))
    moved = TenantConfigured(hosts=("api.acme.example",), settings={**ACME, "flows": "id_jag"})
    directory.apply(_recorded(moved, "acme", 4))
    assert directory.resolve("auth.acme.example") is directory.default
    now = directory.resolve("api.acme.example")
    assert isinstance(now, TenantConfig)
    assert now.flows == ("id_jag",)


V06_SETTINGS = {
    "doors": "v1 v06", "v06_profile": "main", "assertion_ttl": "1800",
    "claim_poll_interval": "10", "claim_deliveries": "2", "claim_delivery_window": "300",
    "sign_in": "email", "sign_in_link_ttl": "900", "session_ttl": "7200",
}  # fmt: skip


def test_the_v06_settings_are_per_tenant_and_oidc_is_not() -> None:
    """A tenant sets its doors and the v0.6 door's numbers, checked as at start-up; the
    OpenID Connect provider is the installation's only (a client secret in a tenant's
    settings would enter the log with tenant.configured)."""
    created = decide_create(None, "acme", ["auth.acme.example"], {**ACME, **V06_SETTINGS})
    directory = TenantDirectory(BASE)
    directory.apply(_recorded(created, "acme", 1))
    acme = directory.resolve("auth.acme.example")
    assert isinstance(acme, TenantConfig)
    assert (acme.doors, acme.assertion_ttl, acme.claim_poll_interval) == (("v1", "v06"), 1800, 10)
    assert (acme.claim_deliveries, acme.claim_delivery_window, acme.session_ttl) == (2, 300, 7200)
    assert acme.flows == ("anonymous",)  # its explicit list: no service_auth added
    for name in ("oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_name"):
        with pytest.raises(TenantRefused, match=f"{name} cannot be set per tenant"):
            decide_create(None, "acme", ["h.example"], {**ACME, name: "x"})
