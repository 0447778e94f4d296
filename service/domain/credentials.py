"""The credential aggregate: an API key's or access token's state, folded from its stream.

`evolve` is the one fold of a credential's events; the expiry rules, the audit folds and the
principal cache use it, and `projections/credentials.sql` writes the same fold to the
`credentials` table (tests/integration/test_credential_aggregate.py checks the two agree):

- `credential.issued` starts it, active, with the issue's facts;
- `credential.rescoped` replaces its scopes and its expiry, and binds it to a user (a
  rescope without a user keeps the one it had);
- `credential.revoked` / `credential.expired` end an active credential, dated; a credential
  that has ended stays ended (the second end changes nothing but the version).

The envelope's facts come in beside the event: `at` (its occurred-at) dates the issue and the
end, `version` is the stream version it was recorded at. Without them (the expiry rules fold
bare events) the version counts the events folded and the dates stay unknown (None).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, assert_never

from events.credential import (
    CredentialEvent,
    CredentialExpired,
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
    IssuedVia,
)
from events.registration import CredentialKind

CredentialStatus = Literal["active", "revoked", "expired"]
# `credential.revoked`'s reason when a pre-claim key ends because its registration did (R7).
REVOKED_WITH_REGISTRATION = "registration_expired"
# ...and when a v0.6 claim ends the registration's pre-claim access tokens (O-F).
REVOKED_BY_CLAIM = "claimed"


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential as its events made it. The first three fields and the status are what a
    rule about its lifetime needs; a state built by hand for such a rule may leave the
    issue's other facts out (None, empty)."""

    credential_id: str
    registration_id: str | None
    expires_at: datetime | None
    status: CredentialStatus = "active"
    version: int = 0
    kind: CredentialKind | None = None
    scopes: tuple[str, ...] = ()
    issued_via: IssuedVia | None = None
    user_id: str | None = None
    issuer: str | None = None
    delegation_id: str | None = None
    issued_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    def usable(self, instant: datetime) -> bool:
        """Active, and not past its own expiry (whether or not the expiry was recorded)."""
        return self.status == "active" and (self.expires_at is None or self.expires_at > instant)


def evolve(
    state: Credential | None,
    event: CredentialEvent,
    *,
    version: int | None = None,
    at: datetime | None = None,
) -> Credential:
    """`state` after `event`, recorded at stream `version` (default: the next) and dated `at`."""
    if isinstance(event, CredentialIssued):
        return Credential(
            credential_id=event.credential_id,
            registration_id=event.registration_id,
            expires_at=event.expires_at,
            version=1 if version is None else version,
            kind=event.kind,
            scopes=event.scopes,
            issued_via=event.issued_via,
            user_id=event.user_id,
            issuer=event.issuer,
            delegation_id=event.delegation_id,
            issued_at=at,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before credential.issued")
    version = state.version + 1 if version is None else version
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
            revoked = isinstance(event, CredentialRevoked)
            return replace(
                state,
                status="revoked" if revoked else "expired",
                ended_at=at,
                end_reason=event.reason if isinstance(event, CredentialRevoked) else "expired",
                version=version,
            )
        case _:
            assert_never(event)


def fold(events: Iterable[CredentialEvent], state: Credential | None = None) -> Credential | None:
    """`state` (None: nothing yet) with `events` applied in order, versions counted."""
    for event in events:
        state = evolve(state, event)
    return state
