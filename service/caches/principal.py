"""Who a bearer credential speaks for, and how credential events change a cached one.

`CredentialCache` keeps one `CachedCredential` per token hash: the credential aggregate
(service.domain.credentials) as the loaded row and the events since say, and the `Principal`
it speaks for. `apply` folds the events it reads from the log into it with the aggregate's
own `evolve`, the one fold `projections/credentials.sql` also writes to the table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import asyncpg

from events.catalogue import Event
from events.credential import CREDENTIAL_EVENTS
from events.registration import RegistrationClaimed
from service.domain import credentials
from service.domain.credentials import Credential, CredentialStatus

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
    credential: Credential  # its version: of the credential stream, as far as this reflects it

    @property
    def status(self) -> CredentialStatus:
        return self.credential.status

    @property
    def version(self) -> int:
        return self.credential.version


def from_row(digest: str, row: asyncpg.Record) -> CachedCredential:
    """An entry from `principal_by_token` (service/caches/credentials.sql)."""
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
    credential = Credential(
        credential_id=principal.credential_id,
        registration_id=principal.registration_id,
        expires_at=principal.expires_at,
        status=row["status"],
        version=row["version"],
        kind=row["kind"],
        scopes=principal.scopes,
        user_id=principal.user_id,
        issued_at=principal.issued_at,
    )
    return CachedCredential(digest, principal, credential)


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
    if not isinstance(event, CREDENTIAL_EVENTS):
        entry.credential = replace(entry.credential, version=version)
        return True
    entry.credential = credential = credentials.evolve(entry.credential, event, version=version)
    entry.principal = replace(
        principal,
        scopes=credential.scopes,
        user_id=credential.user_id,
        expires_at=credential.expires_at,
    )
    return True
