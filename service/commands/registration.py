"""E4: registering an agent, anonymously or for a verified email (spec §5.1, §5.2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from events.registration import (
    STREAM_TYPE,
    ClaimAttemptStarted,
    CredentialKind,
    RegistrationCreated,
)
from service.commands.context import Caller, Change, Context
from service.commands.credentials import mint
from service.commands.mail import MailRequest, mail_write
from service.crypto.tokens import (
    new_attempt_id,
    new_attempt_token,
    new_claim_token,
    new_registration_id,
    token_hash,
)
from service.domain.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Registered:
    registration_id: str
    registration_type: str
    claim_token: str
    claim_token_expires: datetime
    credential_type: CredentialKind | None = None
    credential: str | None = None
    credential_expires: datetime | None = None
    scopes: tuple[str, ...] = ()


async def register_anonymous(ctx: Context, requested: CredentialKind, caller: Caller) -> Registered:
    tenant = ctx.tenant
    if not tenant.offers("anonymous"):
        raise ProtocolError("anonymous_not_enabled", "anonymous registration is not enabled")
    if requested not in tenant.anonymous_credential_types:
        raise ProtocolError(
            "unsupported_credential_type",
            f"anonymous registration offers {', '.join(tenant.anonymous_credential_types)}",
        )
    now = ctx.clock.now()
    registration_id, claim_token = new_registration_id(), new_claim_token()
    expires_at = now + timedelta(seconds=tenant.registration_ttl)
    key = mint(
        ctx,
        requested,
        now=now,
        scopes=tenant.pre_claim_scopes,
        issued_via="anonymous",
        registration_id=registration_id,
        user_id=None,
        expires_at=expires_at,
    )
    created = RegistrationCreated(
        registration_id=registration_id,
        kind="anonymous",
        requested_credential_type=requested,
        claim_token_hash=token_hash(claim_token),
        expires_at=expires_at,
        pre_claim_scopes=tenant.pre_claim_scopes,
        post_claim_scopes=tenant.post_claim_scopes,
        credential_id=key.credential_id,
    )
    subject = ctx.sealer.fresh(registration_id)
    await ctx.record(
        [Change(ctx.stream(STREAM_TYPE, registration_id), 0, [created]), key.change],
        metadata=ctx.fresh_metadata(caller, subject),
        now=now,
        fresh=[subject],
    )
    return Registered(
        registration_id=registration_id,
        registration_type="anonymous",
        claim_token=claim_token,
        claim_token_expires=expires_at,
        credential_type=requested,
        credential=key.plain,
        credential_expires=key.expires_at if requested == "access_token" else None,
        scopes=key.scopes,
    )


async def register_verified_email(
    ctx: Context, email: str, requested: CredentialKind, caller: Caller
) -> Registered:
    tenant = ctx.tenant
    if not tenant.offers("verified_email"):
        raise ProtocolError("verified_email_not_enabled", "email registration is not enabled")
    if requested not in tenant.identity_credential_types:
        raise ProtocolError(
            "unsupported_credential_type",
            f"email registration offers {', '.join(tenant.identity_credential_types)}",
        )
    now = ctx.clock.now()
    registration_id, claim_token = new_registration_id(), new_claim_token()
    attempt_id, link_token = new_attempt_id(), new_attempt_token()
    expires_at = now + timedelta(seconds=tenant.registration_ttl)
    link_expires_at = now + timedelta(seconds=tenant.claim_link_ttl)
    created = RegistrationCreated(
        registration_id=registration_id,
        kind="verified_email",
        requested_credential_type=requested,
        claim_token_hash=token_hash(claim_token),
        expires_at=expires_at,
        pre_claim_scopes=(),
        post_claim_scopes=tenant.post_claim_scopes,
    )
    subject = ctx.sealer.fresh(registration_id)
    # The attempt's address, its mail and this call's client address under the attempt's own
    # key, so an erasure of the address can take the attempt alone (security issue 12.4).
    attempt = ctx.sealer.fresh(attempt_id)
    started = ClaimAttemptStarted(
        attempt_id=attempt_id,
        attempt_token_hash=token_hash(link_token),
        email_sealed=attempt.seal(email),
        email_index=ctx.sealer.blind_index(email),
        link_expires_at=link_expires_at,
    )
    mail = MailRequest(
        registration_id, attempt_id, attempt.seal(email), link_token, link_expires_at
    )
    await ctx.record(
        [Change(ctx.stream(STREAM_TYPE, registration_id), 0, [created, started])],
        metadata=ctx.fresh_metadata(caller, attempt),
        now=now,
        writes=[mail_write(ctx, mail, now)],
        fresh=[subject, attempt],
    )
    return Registered(
        registration_id=registration_id,
        registration_type="email-verification",
        claim_token=claim_token,
        claim_token_expires=expires_at,
    )
