"""Folding a subject's events into the state of every stream they touch.

Registrations, credentials, delegations and providers fold with the domain's own `evolve`
functions (a credential with its events' stream versions and dates); users have no aggregate
of their own there, so they fold here, the way their read model does (projections/users.py).

Events are folded in log order. A bound by instant leaves out events dated later even when a
later-versioned event of the same stream is dated earlier (an expiry recorded late is dated
at its deadline); a domain fold that cannot apply an event to such a subset records an
anomaly and goes on rather than failing the audit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from events.credential import CREDENTIAL_EVENTS
from events.delegation import DELEGATION_EVENTS, DelegationCreated, DelegationEvent
from events.envelope import RecordedEvent
from events.issuer import ISSUER_EVENTS
from events.ledger import LEDGER
from events.registration import REGISTRATION_EVENTS
from events.user import USER_EVENTS, UserCreated, UserEvent
from service.domain import credentials
from service.domain.credentials import Credential
from service.domain.registration import Registration, evolve
from service.domain.trust_list import (
    DelegationState,
    IssuerState,
    evolve_delegation,
    evolve_issuer,
)


@dataclass(frozen=True, slots=True)
class UserState:
    user_id: str
    created_at: datetime
    created_via: str | None
    email_verified: bool
    phone_verified: bool
    erased_at: datetime | None = None


def evolve_user(state: UserState | None, event: UserEvent, recorded: RecordedEvent) -> UserState:
    if isinstance(event, UserCreated):
        return UserState(
            event.user_id,
            recorded.occurred_at,
            event.created_via,
            event.email_verified,
            event.phone_verified,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before user.created")
    return replace(state, erased_at=state.erased_at or recorded.occurred_at)  # user.erased


@dataclass(frozen=True, slots=True)
class DelegationFacts:
    """What the domain's delegation state leaves out and an audit wants."""

    issuer: str
    matched_by: str
    created_at: datetime
    uses: int = 0
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass
class Folded:
    """Every stream's state after the events folded so far."""

    registrations: dict[str, Registration] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)
    users: dict[str, UserState] = field(default_factory=dict)
    delegations: dict[str, tuple[DelegationState, DelegationFacts]] = field(default_factory=dict)
    issuers: dict[str, tuple[IssuerState, datetime]] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    last_position: int = 0

    def apply(self, recorded: RecordedEvent) -> None:
        self.last_position = recorded.position
        event = LEDGER.decode(recorded)
        sid = recorded.stream_id
        try:
            if isinstance(event, REGISTRATION_EVENTS):
                self.registrations[sid] = evolve(self.registrations.get(sid), event)
            elif isinstance(event, CREDENTIAL_EVENTS):
                self.credentials[sid] = credentials.evolve(
                    self.credentials.get(sid),
                    event,
                    version=recorded.stream_version,
                    at=recorded.occurred_at,
                )
            elif isinstance(event, USER_EVENTS):
                self.users[sid] = evolve_user(self.users.get(sid), event, recorded)
            elif isinstance(event, DELEGATION_EVENTS):
                self._delegation(sid, event, recorded)
            elif isinstance(event, ISSUER_EVENTS):
                before = self.issuers.get(sid)
                issuer = evolve_issuer(
                    before[0] if before else None, event, recorded.stream_version
                )
                self.issuers[sid] = (issuer, recorded.occurred_at)
        except ValueError as exc:
            self.anomalies.append({"position": recorded.position, "note": str(exc)})

    def _delegation(self, sid: str, event: DelegationEvent, recorded: RecordedEvent) -> None:
        before = self.delegations.get(sid)
        state = evolve_delegation(before[0] if before else None, event, recorded.stream_version)
        at = recorded.occurred_at
        if isinstance(event, DelegationCreated):
            facts = DelegationFacts(event.issuer, event.matched_by, at)
        elif before is None:
            raise ValueError(f"{type(event).__name__} before delegation.created")
        elif state.revoked:
            facts = replace(before[1], revoked_at=at)
        else:
            facts = replace(before[1], uses=before[1].uses + 1, last_used_at=at, revoked_at=None)
        self.delegations[sid] = (state, facts)


def fold_all(events: Sequence[RecordedEvent]) -> Folded:
    folded = Folded()
    for recorded in events:
        folded.apply(recorded)
    return folded
