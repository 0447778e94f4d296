"""Events of the credential aggregate (stream type `credential`, id `cred_…`).

`token_hash` is the SHA-256 of the bearer value (API key or access token); the plain value
leaves the server once, in the response that issued it.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from events.catalogue import Event
from events.registration import CredentialKind

STREAM_TYPE = "credential"
# `service_auth`: the v0.6 door's login-hint registrations, delivered after their claim.
IssuedVia = Literal["anonymous", "verified_email", "id_jag", "service_auth"]


class CredentialIssued(Event, frozen=True, kw_only=True, tag="credential.issued"):
    """v2 (agent providers) added `issuer` and `delegation_id`; v1 rows read as v2 with both
    None (events/versions.py): the credentials issued before providers existed had neither."""

    schema_version: ClassVar[int] = 2
    credential_id: str
    kind: CredentialKind
    token_hash: str
    scopes: tuple[str, ...]
    issued_via: IssuedVia
    registration_id: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    # ID-JAG credentials: the provider it came through and the delegation it acts under, so
    # a logout token or an incident revokes exactly these.
    issuer: str | None = None
    delegation_id: str | None = None


class CredentialRescoped(Event, frozen=True, kw_only=True, tag="credential.rescoped"):
    """New scopes; a claim also binds the key to its user and lifts the pre-claim expiry."""

    scopes: tuple[str, ...]
    user_id: str | None = None
    expires_at: datetime | None = None


class CredentialRevoked(Event, frozen=True, kw_only=True, tag="credential.revoked"):
    """`reason` is a short code (`logout`, `operator`, `registration_expired`, `erased`; for
    the v0.6 door also `claimed` (a claim ends the pre-claim tokens), `agent` (the holder, at
    the token revocation endpoint), `rotated` and `refresh_reuse` (refresh tokens)); an
    operator's free-text note goes to `note`."""

    reason: str
    note: str | None = None


class CredentialExpired(Event, frozen=True, kw_only=True, tag="credential.expired"):
    pass


CREDENTIAL_EVENTS: tuple[type[CredentialEvent], ...] = (
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
    CredentialExpired,
)
CredentialEvent = CredentialIssued | CredentialRescoped | CredentialRevoked | CredentialExpired
