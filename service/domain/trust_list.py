"""Rules for the trust list and for delegations: pure `evolve` and `decide` functions.

A trust-list entry is one stream per issuer; adding an issuer that is already trusted is an
update (or nothing, when the terms are the same), removing one that is not trusted is refused.
A delegation is one stream per `(iss, sub, aud)`: created once, used on every accepted ID-JAG,
revoked by a logout token or an operator, and usable again afterwards (spec O9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import assert_never

from events.catalogue import Event
from events.delegation import DelegationCreated, DelegationEvent, DelegationRevoked, DelegationUsed
from events.issuer import IssuerEvent, IssuerRemoved, IssuerTrusted, IssuerUpdated
from service.providers.trust import TrustedIssuer


class NotTrusted(Exception):
    """Removing or changing an issuer that is not on the trust list."""


def issuer_stream_id(issuer: str) -> str:
    """`iss_` + 22 hex of SHA-256(issuer): one stream per issuer URL, whatever its length."""
    return "iss_" + hashlib.sha256(issuer.encode()).hexdigest()[:22]


def delegation_id_for(issuer: str, subject: str, audience: str) -> str:
    """`dlg_` + the same 22 hex the spec's ID-JAG registration id uses (§4)."""
    digest = hashlib.sha256("|".join((issuer, subject, audience)).encode()).hexdigest()
    return "dlg_" + digest[:22]


@dataclass(frozen=True, slots=True)
class IssuerState:
    entry: TrustedIssuer
    trusted: bool
    version: int


def evolve_issuer(state: IssuerState | None, event: IssuerEvent, version: int) -> IssuerState:
    match event:
        case IssuerTrusted() | IssuerUpdated():
            return IssuerState(entry_of(event), trusted=True, version=version)
        case IssuerRemoved():
            if state is None:
                raise ValueError("issuer.removed before issuer.trusted")
            return IssuerState(state.entry, trusted=False, version=version)
        case _:
            assert_never(event)


def fold_issuer(events: Sequence[tuple[IssuerEvent, int]]) -> IssuerState | None:
    state: IssuerState | None = None
    for event, version in events:
        state = evolve_issuer(state, event, version)
    return state


def entry_of(event: IssuerTrusted | IssuerUpdated) -> TrustedIssuer:
    return TrustedIssuer(
        issuer=event.issuer,
        jwks_uri=event.jwks_uri,
        algorithms=event.algorithms,
        display_name=event.display_name,
        link_by_verified_email=event.link_by_verified_email,
        client_ids=event.client_ids,
        required_amr=event.required_amr,
    )


def decide_trust(state: IssuerState | None, entry: TrustedIssuer) -> list[Event]:
    """Trust `entry`: a new trust (or a renewed one after removal), new terms, or nothing."""
    fields = {
        "issuer": entry.issuer,
        "jwks_uri": entry.jwks_uri,
        "algorithms": entry.algorithms,
        "display_name": entry.display_name,
        "link_by_verified_email": entry.link_by_verified_email,
        "client_ids": entry.client_ids,
        "required_amr": entry.required_amr,
    }
    if state is None or not state.trusted:
        return [IssuerTrusted(**fields)]  # type: ignore[arg-type]
    if state.entry == entry:
        return []
    return [IssuerUpdated(**fields)]  # type: ignore[arg-type]


def decide_remove(state: IssuerState | None, reason: str | None) -> list[Event]:
    if state is None or not state.trusted:
        raise NotTrusted("that issuer is not on the trust list")
    return [IssuerRemoved(issuer=state.entry.issuer, reason=reason)]


@dataclass(frozen=True, slots=True)
class DelegationState:
    delegation_id: str
    user_id: str
    version: int
    revoked: bool = False
    # How many times it was revoked: the generation a service-signed assertion for this
    # subject must carry (v0.6), so a revocation ends every assertion minted before it.
    revocations: int = 0


def evolve_delegation(
    state: DelegationState | None, event: DelegationEvent, version: int
) -> DelegationState:
    match event:
        case DelegationCreated():
            return DelegationState(event.delegation_id, event.user_id, version)
        case DelegationUsed():
            if state is None:
                raise ValueError("delegation.used before delegation.created")
            return replace(state, version=version, revoked=False)
        case DelegationRevoked():
            if state is None:
                raise ValueError("delegation.revoked before delegation.created")
            return replace(state, version=version, revoked=True, revocations=state.revocations + 1)
        case _:
            assert_never(event)


def fold_delegation(events: Sequence[tuple[DelegationEvent, int]]) -> DelegationState | None:
    state: DelegationState | None = None
    for event, version in events:
        state = evolve_delegation(state, event, version)
    return state
