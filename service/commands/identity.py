"""E4 with an ID-JAG (spec §5.3, §7.5): a credential for the user an agent provider vouches for.

The assertion is verified first (service.providers.assertions), then the user is found: the
delegation `(iss, sub, aud)` if one exists; else, where the provider may link by email, the
local user with that verified email; else the one with that verified phone; else a user is
provisioned just in time. A subject, once bound, stays with its user (first link wins): a
later ID-JAG for it never moves to another account because the email changed. The credential,
the delegation's events, any new user and the burned `jti` commit in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from events.catalogue import Event
from events.delegation import STREAM_TYPE as DELEGATION
from events.delegation import DelegationCreated, DelegationUsed, MatchedBy
from events.registration import CredentialKind
from events.sql import load_queries
from events.user import STREAM_TYPE as USER
from events.user import UserCreated
from service.commands.context import Caller, Change, Context, retrying
from service.commands.credentials import Minted, mint
from service.commands.delegation_head import DelegationHead, HeadAhead
from service.commands.jti import remember_jti
from service.commands.trust_list import lookup_with_head
from service.crypto.tokens import new_user_id, registration_id_for_identity
from service.domain.errors import ProtocolError
from service.domain.trust_list import delegation_id_for
from service.providers.assertions import read_id_jag, verify_id_jag
from service.providers.jwks import JwksCache
from service.providers.jwt_parts import is_text, same_url
from service.providers.trust import TrustedIssuer, VerifiedAssertion

USER_Q = load_queries("projections", "users.sql")


@dataclass(frozen=True, slots=True)
class Delegated:
    registration_id: str
    credential: Minted


def provider_keys(ctx: Context) -> JwksCache:
    if ctx.provider_keys is None:
        raise RuntimeError("this process was started without agent-provider key fetching")
    return ctx.provider_keys


async def register_id_jag(
    ctx: Context, assertion: str, requested: CredentialKind, caller: Caller
) -> Delegated:
    tenant = ctx.tenant
    if not tenant.offers("id_jag"):
        raise ProtocolError("invalid_request", "ID-JAG registration is not enabled")
    if requested not in tenant.identity_credential_types:
        raise ProtocolError(
            "unsupported_credential_type",
            f"ID-JAG registration offers {', '.join(tenant.identity_credential_types)}",
        )
    checked = await verify_presented(ctx, assertion)

    async def attempt() -> Delegated:
        return await _delegate(ctx, checked, requested, caller)

    return await retrying(attempt)


@dataclass(frozen=True, slots=True)
class Checked:
    """An ID-JAG that passed §7.3 (all but the replay), its issuer's entry, and the head of
    the delegation it names (with its user's data key) as read beside that entry (`ahead`:
    the first attempt's)."""

    verified: VerifiedAssertion
    entry: TrustedIssuer
    ahead: HeadAhead


async def verify_presented(ctx: Context, assertion: str, *, v06: bool = False) -> Checked:
    """A provider's ID-JAG checked (spec §7.3, all but the replay), and its issuer's entry.
    `v06`: the v0.6 door's rules, O-C (our own issuer refused before any lookup) and O-D
    (an `aud` naming the API's resource accepted beside our issuer).

    The trust entry is read with the head of the delegation the unverified `iss` and `sub`
    name and its user's data key, in one round trip; nothing of those is used unless the
    assertion verifies, and then `sub` is the verified one (the payload is what the signature
    covers)."""
    tenant = ctx.tenant
    jws = read_id_jag(assertion)
    sub = jws.payload.get("sub")
    subject = str(sub) if is_text(sub) else None  # unverified: only picks what is read ahead
    issuers: dict[str, tuple[TrustedIssuer | None, HeadAhead]] = {}

    async def trusted(issuer: str) -> TrustedIssuer | None:
        if v06 and same_url(issuer, tenant.issuer):
            raise ProtocolError("invalid_issuer", "this service's own assertions are no ID-JAGs")
        if issuer not in issuers:
            delegation = (
                None if subject is None else delegation_id_for(issuer, subject, tenant.issuer)
            )
            issuers[issuer] = await lookup_with_head(ctx, issuer, delegation)
        return issuers[issuer][0]

    verified = await verify_id_jag(
        jws,
        trust=trusted,
        keys=provider_keys(ctx),
        audience=tenant.issuer,
        resource=tenant.resource,
        now=ctx.clock.now(),
        resource_audience=v06,
    )
    entry, ahead = issuers[verified.issuer]
    if entry is None:  # verify_id_jag refuses untrusted issuers; this is for the type checker
        raise ProtocolError("invalid_issuer", "the issuer is not trusted")
    return Checked(verified, entry, ahead)


async def _delegate(
    ctx: Context, checked: Checked, requested: CredentialKind, caller: Caller
) -> Delegated:
    tenant, now = ctx.tenant, ctx.clock.now()
    verified, entry = checked.verified, checked.entry
    delegation_id = delegation_id_for(verified.issuer, verified.subject, tenant.issuer)
    registration_id = registration_id_for_identity(verified.issuer, verified.subject, tenant.issuer)
    stream = ctx.stream(DELEGATION, delegation_id)
    state = await checked.ahead.read(ctx, delegation_id)
    changes: list[Change] = []
    delegation_events: list[Event] = []
    if state is None:
        user_id, matched_by, new_user = await _match_user(ctx, verified, entry)
        if new_user is not None:
            changes.append(new_user)
        delegation_events.append(
            DelegationCreated(
                delegation_id=delegation_id,
                issuer=verified.issuer,
                audience=tenant.issuer,
                subject_sealed=await ctx.sealer.seal(ctx.pool, user_id, verified.subject),
                user_id=user_id,
                matched_by=matched_by,
            )
        )
    else:
        user_id = state.user_id
    credential = mint(
        ctx,
        requested,
        now=now,
        scopes=tenant.scopes_supported,  # spec §5.3: all of them, as auth.md says
        issued_via="id_jag",
        registration_id=registration_id,
        user_id=user_id,
        issuer=verified.issuer,
        delegation_id=delegation_id,
    )
    delegation_events.append(
        DelegationUsed(
            credential_id=credential.credential_id,
            jti=verified.jti,
            client_id=verified.client_id,
            agent_platform=verified.agent_platform,
            agent_context_id=verified.agent_context_id,
        )
    )
    changes += [Change(stream, _version(state), delegation_events), credential.change]
    await ctx.record(
        changes,
        metadata=await ctx.metadata(caller, user_id),
        now=now,
        also=remember_jti(
            tenant.tenant_id, verified.issuer, verified.jti, verified.remember_until, now
        ),
    )
    return Delegated(registration_id, credential)


def _version(state: DelegationHead | None) -> int:
    return 0 if state is None else state.version


async def _match_user(
    ctx: Context, verified: VerifiedAssertion, entry: TrustedIssuer
) -> tuple[str, MatchedBy, Change | None]:
    """Spec §7.5 steps 2-4: an existing user by verified email (where this provider may link
    by email) or verified phone, else a new one. Returns the user id, how it was found and,
    for a new user, its `user.created`."""
    found = await find_user(ctx, verified, by_email=entry.link_by_verified_email)
    if found is not None:
        return found[0], found[1], None
    user_id, created = await provision_user(ctx, verified)
    return user_id, "provisioned", created


async def find_user(
    ctx: Context, verified: VerifiedAssertion, *, by_email: bool
) -> tuple[str, Literal["email", "phone"]] | None:
    """The existing user the ID-JAG's verified email (when `by_email`) or else its verified
    phone finds, and how; None when neither does."""
    tenant_id, sealer = ctx.tenant.tenant_id, ctx.sealer
    if verified.email is not None and by_email:
        email_index = sealer.blind_index(verified.email)
        found = await ctx.pool.fetchval(USER_Q["by_email"], tenant_id, email_index)
        if found is not None:
            return str(found), "email"
    if verified.phone_number is not None:
        phone_index = sealer.blind_index(verified.phone_number, "phone")
        found = await ctx.pool.fetchval(USER_Q["by_phone"], tenant_id, phone_index)
        if found is not None:
            return str(found), "phone"
    return None


async def provision_user(ctx: Context, verified: VerifiedAssertion) -> tuple[str, Change]:
    """A user made just in time for the ID-JAG's subject: its id and its `user.created`.
    An address or phone another user already holds is kept, but finds only that one."""
    tenant_id, sealer = ctx.tenant.tenant_id, ctx.sealer
    email_index = sealer.blind_index(verified.email) if verified.email else None
    phone_index = (
        sealer.blind_index(verified.phone_number, "phone") if verified.phone_number else None
    )
    user_id = new_user_id()
    if email_index is not None and await ctx.pool.fetchval(
        USER_Q["email_taken"], tenant_id, email_index
    ):
        email_index = None  # another user's address: kept, but it must not find this one
    if phone_index is not None and await ctx.pool.fetchval(
        USER_Q["phone_taken"], tenant_id, phone_index
    ):
        phone_index = None
    created = UserCreated(
        user_id=user_id,
        email_sealed=await _seal(ctx, user_id, verified.email),
        email_index=email_index,
        email_verified=verified.email is not None,
        phone_sealed=await _seal(ctx, user_id, verified.phone_number),
        phone_index=phone_index,
        phone_verified=verified.phone_number is not None,
        name_sealed=await _seal(ctx, user_id, verified.name),
        created_via=verified.issuer,
    )
    return user_id, Change(ctx.stream(USER, user_id), 0, [created])


async def _seal(ctx: Context, subject_id: str, value: str | None) -> str | None:
    return None if value is None else await ctx.sealer.seal(ctx.pool, subject_id, value)
