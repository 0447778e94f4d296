"""Folding a subject's events into the state of every stream they touch.

Registrations, delegations and providers fold with the domain's own `evolve` functions;
credentials and users have no aggregate of their own there, so they fold here, the way their
read models do (projections/credentials.py, projections/users.py): an ended credential stays
ended, a re-scope binds the key to its user and replaces its expiry.

Events are folded in log order. A bound by instant leaves out events dated later even when a
later-versioned event of the same stream is dated earlier (an expiry recorded late is dated
at its deadline); a domain fold that cannot apply an event to such a subset records an
anomaly and goes on rather than failing the audit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, assert_never, cast

from events.credential import (
    CREDENTIAL_EVENTS,
    CredentialEvent,
    CredentialExpired,
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
)
from events.delegation import DELEGATION_EVENTS, DelegationCreated, DelegationEvent
from events.envelope import RecordedEvent
from events.issuer import ISSUER_EVENTS, IssuerEvent
from events.ledger import LEDGER
from events.registration import REGISTRATION_EVENTS, RegistrationEvent
from events.user import USER_EVENTS, UserCreated, UserEvent
from service.domain.providers import (
    DelegationState,
    IssuerState,
    evolve_delegation,
    evolve_issuer,
)
from service.domain.registration import Registration, evolve

Status = Literal["active", "revoked", "expired"]


@dataclass(frozen=True, slots=True)
class CredentialState:
    credential_id: str
    kind: str
    scopes: tuple[str, ...]
    issued_via: str
    registration_id: str | None
    user_id: str | None
    issuer: str | None
    delegation_id: str | None
    issued_at: datetime
    expires_at: datetime | None
    status: Status = "active"
    ended_at: datetime | None = None
    end_reason: str | None = None
    version: int = 1

    def usable(self, instant: datetime) -> bool:
        """Active, and not past its own expiry (whether or not the expiry was recorded)."""
        return self.status == "active" and (self.expires_at is None or self.expires_at > instant)


def evolve_credential(
    state: CredentialState | None, event: CredentialEvent, recorded: RecordedEvent
) -> CredentialState:
    if isinstance(event, CredentialIssued):
        return CredentialState(
            credential_id=event.credential_id,
            kind=event.kind,
            scopes=event.scopes,
            issued_via=event.issued_via,
            registration_id=event.registration_id,
            user_id=event.user_id,
            issuer=event.issuer,
            delegation_id=event.delegation_id,
            issued_at=recorded.occurred_at,
            expires_at=event.expires_at,
            version=recorded.stream_version,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before credential.issued")
    version = recorded.stream_version
    match event:
        case CredentialRescoped():
            user_id = event.user_id or state.user_id
            return replace(
                state,
                scopes=event.scopes,
                user_id=user_id,
                expires_at=event.expires_at,
                version=version,
            )
        case CredentialRevoked() | CredentialExpired():
            if state.status != "active":
                return replace(state, version=version)
            ended: Status = "revoked" if isinstance(event, CredentialRevoked) else "expired"
            reason = event.reason if isinstance(event, CredentialRevoked) else "expired"
            return replace(
                state,
                status=ended,
                ended_at=recorded.occurred_at,
                end_reason=reason,
                version=version,
            )
        case _:
            assert_never(event)


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
    credentials: dict[str, CredentialState] = field(default_factory=dict)
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
                self.registrations[sid] = evolve(
                    self.registrations.get(sid), cast(RegistrationEvent, event)
                )
            elif isinstance(event, CREDENTIAL_EVENTS):
                self.credentials[sid] = evolve_credential(
                    self.credentials.get(sid), cast(CredentialEvent, event), recorded
                )
            elif isinstance(event, USER_EVENTS):
                self.users[sid] = evolve_user(self.users.get(sid), cast(UserEvent, event), recorded)
            elif isinstance(event, DELEGATION_EVENTS):
                self._delegation(sid, cast(DelegationEvent, event), recorded)
            elif isinstance(event, ISSUER_EVENTS):
                before = self.issuers.get(sid)
                issuer = evolve_issuer(
                    before[0] if before else None, cast(IssuerEvent, event), recorded.stream_version
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
