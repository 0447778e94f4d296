"""The scoped credentials' rules (service/domain/access.py): who passes which route, and which
grants are refused, as pure functions (security issue 12, finding 2)."""

from __future__ import annotations

import typing

import pytest

from events.access import AccessGranted, AccessRevoked
from service.domain.access import (
    ADMIN,
    FEED,
    INTROSPECTION,
    METRICS,
    OPERATOR_ONLY,
    SCOPES,
    TENANT_BOUND,
    AccessRefused,
    NotGranted,
    decide_grant,
    decide_revoke,
    evolve,
    judge,
)
from service.http.credentials import ScopeName

SURFACES = {"admin": ADMIN, "feed": FEED, "operator_only": OPERATOR_ONLY,
            "introspection": INTROSPECTION, "metrics": METRICS}  # fmt: skip
# Which scope passes which surface (on its own tenant's host): the whole matrix.
PASSES = {
    "operator": {"admin", "feed", "operator_only", "introspection", "metrics"},
    "tenant_admin": {"admin", "feed"},
    "introspection": {"introspection"},
    "metrics": {"metrics"},
    "revocation_feed": {"feed"},
}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_each_scope_passes_only_its_own_surfaces(scope: str, surface: str) -> None:
    """On its own tenant: allowed exactly where PASSES says, `wrong_scope` elsewhere."""
    bound = "acme" if scope in TENANT_BOUND else None
    verdict = judge(scope, bound, SURFACES[surface], "acme")
    assert verdict == ("allowed" if surface in PASSES[scope] else "wrong_scope")


@pytest.mark.parametrize("scope", sorted(TENANT_BOUND))
def test_a_tenant_bound_credential_is_refused_on_another_tenant(scope: str) -> None:
    """Where its scope would pass, a credential of tenant acme is `wrong_tenant` on globex."""
    surface = next(s for s in sorted(SURFACES) if s in PASSES[scope])
    assert judge(scope, "acme", SURFACES[surface], "acme") == "allowed"
    assert judge(scope, "acme", SURFACES[surface], "globex") == "wrong_tenant"


def test_operator_and_metrics_act_in_every_tenant() -> None:
    for tenant in ("default", "acme"):
        assert judge("operator", None, OPERATOR_ONLY, tenant) == "allowed"
        assert judge("metrics", None, METRICS, tenant) == "allowed"


def test_an_unknown_scope_passes_nothing() -> None:
    assert {judge("root", None, s, "default") for s in SURFACES.values()} == {"wrong_scope"}


def test_the_api_offers_exactly_the_domains_scopes() -> None:
    assert set(typing.get_args(ScopeName)) == set(SCOPES)


GOOD = {"scope": "introspection", "tenant_id": "acme", "client_id": "orders-api",
        "label": "orders", "token_hash": "ab" * 32}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": "root"}, "scope"),
        ({"tenant_id": None}, "tenant_id"),
        ({"scope": "operator", "client_id": None}, "tenant_id"),
        ({"scope": "tenant_admin"}, "client_id"),
        ({"client_id": None}, "client_id"),
        ({"client_id": "has space"}, "client_id"),
        ({"label": ""}, "label"),
        ({"label": "new\nline"}, "label"),
        ({"label": "x" * 101}, "label"),
    ],
)
def test_bad_grants_are_refused_by_field(change: dict[str, typing.Any], field: str) -> None:
    with pytest.raises(AccessRefused, match=f"^{field}:"):
        decide_grant(None, **{**GOOD, **change})


def test_a_grant_records_the_hash_and_a_revocation_once() -> None:
    [granted] = decide_grant(None, **GOOD)
    assert granted == AccessGranted(**GOOD)
    state = evolve(None, granted, "acc_1", 1)
    assert (state.scope, state.tenant_id, state.revoked) == ("introspection", "acme", False)
    [revoked] = decide_revoke(state, "rotated")
    assert revoked == AccessRevoked(reason="rotated")
    after = evolve(state, revoked, "acc_1", 2)
    assert (after.revoked, after.version) == (True, 2)
    assert decide_revoke(after, None) == []
    with pytest.raises(NotGranted):
        decide_revoke(None, None)
    with pytest.raises(AccessRefused, match="already granted"):
        decide_grant(state, **GOOD)
