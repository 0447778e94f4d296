"""Who a bearer credential speaks for, and how credential events change a cached one.

`CredentialCache` keeps one `CachedCredential` per token hash; `apply` folds the events it
reads from the log into it, the way `projections/credentials.py` folds them into the table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import asyncpg

from events.catalogue import Event
from events.credential import CredentialExpired, CredentialRescoped, CredentialRevoked
from events.registration import RegistrationClaimed

ClaimState = Literal["claimed", "unclaimed"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A live credential: what it is, what it may do, and whose it is."""

    credential_id: str
    tenant_id: str
    credential_type: str  # api_key | access_token
    scopes: tuple[str, ...]
    registration_id: str | None
    user_id: str | None
    claim_state: ClaimState | None  # None: no registration (ID-JAG)
    expires_at: datetime | None
    issued_at: datetime

    @property
    def subject(self) -> str:
        """The `sub` its access tokens carry: the user, else the registration."""
        return self.user_id or self.registration_id or self.credential_id

    @property
    def client_id(self) -> str:
        return self.registration_id or self.credential_id


@dataclass(slots=True)
class CachedCredential:
    digest: str  # SHA-256 of the bearer value
    principal: Principal
    status: str  # active | revoked | expired
    version: int  # of the credential stream, as far as this entry reflects it


def from_row(digest: str, row: asyncpg.Record) -> CachedCredential:
    """An entry from `principal_by_token` (service/credential_cache.sql)."""
    status = row["registration_status"]
    claim: ClaimState | None = None
    if status is not None:
        claim = "claimed" if status == "claimed" else "unclaimed"
    principal = Principal(
        credential_id=row["credential_id"],
        tenant_id=row["tenant_id"],
        credential_type=row["kind"],
        scopes=tuple(row["scopes"]),
        registration_id=row["registration_id"],
        user_id=row["user_id"],
        claim_state=claim,
        expires_at=row["expires_at"],
        issued_at=row["issued_at"],
    )
    return CachedCredential(digest, principal, row["status"], row["version"])


def apply(entry: CachedCredential, event: Event, version: int) -> bool:
    """Fold one event (of the entry's credential or registration) in; whether it changed it.

    Credential events apply only when newer than the entry (`version`), so replaying one the
    loaded row already reflects is a no-op; an ended credential stays ended, as in the table.
    """
    principal = entry.principal
    if isinstance(event, RegistrationClaimed):
        if principal.claim_state == "claimed":
            return False
        entry.principal = replace(principal, claim_state="claimed")
        return True
    if version <= entry.version:
        return False
    entry.version = version
    if isinstance(event, CredentialRescoped):
        user_id = event.user_id or principal.user_id
        entry.principal = replace(
            principal, scopes=event.scopes, user_id=user_id, expires_at=event.expires_at
        )
    elif isinstance(event, CredentialRevoked | CredentialExpired) and entry.status == "active":
        entry.status = "revoked" if isinstance(event, CredentialRevoked) else "expired"
    return True
