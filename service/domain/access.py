"""Rules for scoped operator credentials (events/access.py): pure `evolve`, `decide` and `judge`.

A credential has one scope. Three scopes act in one tenant (`tenant_admin`, `introspection`,
`revocation_feed`) and must name it; `operator` and `metrics` act across the installation
and must not. Only an introspection credential has a client id (its RFC 7662 §2.1 user name).

`judge` is the whole access rule, the one every guarded route applies: an operator passes
everywhere; any other credential passes only a route that accepts its scope, and only on its
own tenant's hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, assert_never

from events.access import AccessEvent, AccessGranted, AccessRevoked
from events.catalogue import Event

Scope = Literal["operator", "tenant_admin", "introspection", "metrics", "revocation_feed"]
SCOPES: tuple[Scope, ...] = ("operator", "tenant_admin", "introspection", "metrics",
                             "revocation_feed")  # fmt: skip
TENANT_BOUND: frozenset[str] = frozenset({"tenant_admin", "introspection", "revocation_feed"})
Verdict = Literal["allowed", "wrong_scope", "wrong_tenant"]

# What each guarded surface accepts besides `operator`, which passes everywhere.
ADMIN: frozenset[str] = frozenset({"tenant_admin"})  # a tenant's trust list, revocations, ...
FEED: frozenset[str] = frozenset({"tenant_admin", "revocation_feed"})  # GET /admin/revocations
OPERATOR_ONLY: frozenset[str] = frozenset()  # credentials, the whole chain's verification
INTROSPECTION: frozenset[str] = frozenset({"introspection"})  # /oauth2/introspect
METRICS: frozenset[str] = frozenset({"metrics"})  # /metrics

LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:/-]{0,199}")


class AccessRefused(ValueError):
    """A grant that cannot be made; the message names the field."""


class NotGranted(LookupError):
    """No such credential."""


@dataclass(frozen=True, slots=True)
class Access:
    """One credential as its events leave it."""

    credential_id: str
    scope: str
    tenant_id: str | None
    client_id: str | None
    label: str
    token_hash: str
    revoked: bool
    version: int


def judge(scope: str, bound_to: str | None, accepts: frozenset[str], tenant_id: str) -> Verdict:
    """May a credential of `scope` (bound to tenant `bound_to`, None: every tenant) act on a
    route that accepts `accepts` (besides operator), reached on a host of `tenant_id`?"""
    if scope == "operator":
        return "allowed"
    if scope not in accepts:
        return "wrong_scope"
    if bound_to is not None and bound_to != tenant_id:
        return "wrong_tenant"
    return "allowed"


def evolve(state: Access | None, event: AccessEvent, credential_id: str, version: int) -> Access:
    match event:
        case AccessGranted():
            return Access(credential_id, event.scope, event.tenant_id, event.client_id,
                          event.label, event.token_hash, False, version)  # fmt: skip
        case AccessRevoked():
            if state is None:
                raise ValueError("access.revoked before access.granted")
            return Access(state.credential_id, state.scope, state.tenant_id, state.client_id,
                          state.label, state.token_hash, True, version)  # fmt: skip
        case _:
            assert_never(event)


def decide_grant(
    state: Access | None,
    *,
    scope: str,
    tenant_id: str | None,
    client_id: str | None,
    label: str,
    token_hash: str,
) -> list[Event]:
    """Grant a new credential; AccessRefused names what is wrong with the request."""
    if state is not None:
        raise AccessRefused("credential_id: already granted")
    if scope not in SCOPES:
        raise AccessRefused(f"scope: one of {', '.join(SCOPES)}")
    if scope in TENANT_BOUND and tenant_id is None:
        raise AccessRefused(f"tenant_id: a {scope} credential acts in one tenant; name it")
    if scope not in TENANT_BOUND and tenant_id is not None:
        raise AccessRefused(f"tenant_id: a {scope} credential acts in every tenant; omit it")
    if scope == "introspection" and client_id is None:
        raise AccessRefused("client_id: an introspection credential names its resource server")
    if scope != "introspection" and client_id is not None:
        raise AccessRefused("client_id: only introspection credentials have one")
    if client_id is not None and not CLIENT_ID.fullmatch(client_id):
        raise AccessRefused("client_id: 1-200 of A-Z a-z 0-9 . _ ~ : / -, starting alphanumeric")
    if not LABEL.fullmatch(label):
        raise AccessRefused("label: 1-100 characters, no control characters")
    return [AccessGranted(scope=scope, tenant_id=tenant_id, client_id=client_id, label=label,
                          token_hash=token_hash)]  # fmt: skip


def decide_revoke(state: Access | None, reason: str | None) -> list[Event]:
    """Revoke it; nothing when it is revoked already; NotGranted when it never was."""
    if state is None:
        raise NotGranted("no such credential")
    if state.revoked:
        return []
    return [AccessRevoked(reason=reason)]
