"""Minting a credential: the plain value (returned once) and its `credential.issued` event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from events.credential import STREAM_TYPE, CredentialIssued, IssuedVia
from events.registration import CredentialKind
from service.commands.context import Change, Context
from service.crypto.tokens import new_api_key, new_credential_id, new_refresh_token, token_hash


@dataclass(frozen=True, slots=True)
class Minted:
    credential_id: str
    kind: CredentialKind
    plain: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    change: Change
    expires_in: int | None = None  # an access token's lifetime in seconds, as its `exp` says


def mint(
    ctx: Context,
    kind: CredentialKind,
    *,
    now: datetime,
    scopes: tuple[str, ...],
    issued_via: IssuedVia,
    registration_id: str | None,
    user_id: str | None,
    expires_at: datetime | None = None,
    issuer: str | None = None,
    delegation_id: str | None = None,
    credential_id: str | None = None,
    not_after: datetime | None = None,
) -> Minted:
    """An API key (opaque, no expiry unless given), an AuthKit refresh token (opaque, its
    expiry given) or an RFC 9068 access token; its id is `credential_id` when a decision
    already named it. An access token lives the tenant's `access_token_ttl`, cut to end by
    `not_after` (what it acts for ends then: an unclaimed registration; its `exp` is never
    later)."""
    credential_id = credential_id or new_credential_id()
    expires_in = None
    if kind == "api_key":
        plain = new_api_key(ctx.tenant.api_key_prefix)
    elif kind == "refresh_token":
        plain = new_refresh_token()
    else:
        ttl = timedelta(seconds=ctx.tenant.access_token_ttl)
        if not_after is not None:
            ttl = min(ttl, max(not_after - now, timedelta(0)))
        expires_in = int(ttl.total_seconds())
        expires_at = now + ttl
        plain = ctx.keyring.issue_access_token(
            issuer=ctx.tenant.issuer,
            audience=ctx.tenant.resource,
            subject=user_id or registration_id or credential_id,
            client_id=registration_id or credential_id,
            scopes=scopes,
            jti=credential_id,
            now=now,
            ttl=ttl,
        )
    issued = CredentialIssued(
        credential_id=credential_id,
        kind=kind,
        token_hash=token_hash(plain),
        scopes=scopes,
        issued_via=issued_via,
        registration_id=registration_id,
        user_id=user_id,
        expires_at=expires_at,
        issuer=issuer,
        delegation_id=delegation_id,
    )
    change = Change(ctx.stream(STREAM_TYPE, credential_id), 0, [issued])
    return Minted(credential_id, kind, plain, scopes, expires_at, change, expires_in)
