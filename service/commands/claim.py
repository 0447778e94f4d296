"""The claim ceremony: E5 start, E6 page, E7 code, E8 complete (spec §6).

Each command loads the registration by a token's hash (the projection), folds its stream,
asks the pure rules in service.domain.claim, and appends the decision with the
stream's version as the expected one. A conflict means someone else moved first: the
command runs again on the new state, so of two racing completes exactly one claims.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import msgspec
import structlog

from events.credential import STREAM_TYPE as CREDENTIAL
from events.registration import STREAM_TYPE as REGISTRATION
from events.registration import ClaimAttemptStarted
from events.sql import load_queries
from events.store import ANY_VERSION
from events.user import STREAM_TYPE as USER
from events.user import UserCreated
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, retrying
from service.commands.credentials import Minted, mint
from service.commands.mail import MailRequest, mail_write
from service.crypto.pii import subject_of
from service.crypto.tokens import (
    new_attempt_id,
    new_attempt_token,
    new_credential_id,
    new_otp,
    new_user_id,
    otp_hash,
    otp_matches,
    token_hash,
)
from service.domain.claim import (
    NewAttempt,
    OtpLimits,
    decide_complete,
    decide_issue_otp,
    decide_start_claim,
    kept_key,
)
from service.domain.errors import ProtocolError
from service.domain.registration import Registration

REG_Q = load_queries("projections", "registrations.sql")
log = structlog.get_logger("service.commands.claim")
USER_Q = load_queries("projections", "users.sql")


@dataclass(frozen=True, slots=True)
class ClaimStarted:
    registration_id: str
    claim_attempt_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimPage:
    registration_id: str
    kind: str
    email: str | None
    link_expires_at: datetime


@dataclass(frozen=True, slots=True)
class Challenge:
    otp: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Completed:
    registration_id: str
    credential: Minted | None  # verified_email only: the new credential, shown once


def _limits(ctx: Context) -> OtpLimits:
    t = ctx.tenant
    return OtpLimits(t.otp_max_misses, t.otp_max_mints, t.claim_max_misses)


async def _load(ctx: Context, query: str, token: str) -> Registration | None:
    row = await ctx.pool.fetchrow(REG_Q[query], token_hash(token))
    if row is None or row["tenant_id"] != ctx.tenant.tenant_id:
        return None
    return await registration_state.load(ctx, row["registration_id"])


async def start_claim(ctx: Context, claim_token: str, email: str, caller: Caller) -> ClaimStarted:
    """E5: a new attempt (and its mail), or the current one for the same email."""

    async def attempt() -> ClaimStarted:
        state = await _load(ctx, "by_claim_token", claim_token)
        if state is None:
            raise ProtocolError("invalid_claim_token", "unknown claim token")
        now = ctx.clock.now()
        rid = state.registration_id
        link_token = new_attempt_token()
        new = NewAttempt(
            attempt_id=new_attempt_id(),
            token_hash=token_hash(link_token),
            email_index=ctx.sealer.blind_index(email),
            email_sealed="",  # sealed below, only when an attempt really starts
        )
        link_ttl = timedelta(seconds=ctx.tenant.claim_link_ttl)
        decision = decide_start_claim(state, new, now=now, link_ttl=link_ttl)
        if not decision.events and state.attempt is not None:  # R4: the current attempt
            return ClaimStarted(rid, state.attempt.attempt_id, state.attempt.link_expires_at)
        *superseded, started = decision.events
        if not isinstance(started, ClaimAttemptStarted):
            raise TypeError("decide_start_claim must end a new attempt with its start")
        # The address, its mail and this call's client address under the new attempt's own
        # key: erasing the address later takes this attempt alone (security issue 12.4).
        subject = ctx.sealer.fresh(new.attempt_id)
        events = [*superseded, msgspec.structs.replace(started, email_sealed=subject.seal(email))]
        link_expires_at = now + link_ttl
        mail = MailRequest(rid, new.attempt_id, subject.seal(email), link_token, link_expires_at)
        await ctx.record(
            [Change(ctx.stream(REGISTRATION, rid), state.version, events)],
            metadata=ctx.fresh_metadata(caller, subject),
            now=now,
            writes=[mail_write(ctx, mail, now)],
            fresh=[subject],
        )
        await registration_state.remember(ctx, state, events)
        return ClaimStarted(rid, new.attempt_id, link_expires_at)

    return await retrying(attempt)


async def claim_page(ctx: Context, link_token: str) -> ClaimPage:
    """E6: what the link claims, without minting anything (spec §6.3, W12)."""
    state = await _load(ctx, "by_attempt_token", link_token)
    attempt = state.attempt if state is not None else None
    if state is not None and state.status == "claimed":  # the link that claimed it, reopened
        raise ProtocolError("claim_completed", "this registration is already claimed")
    if state is None or attempt is None or not attempt.live:
        raise ProtocolError("claim_superseded", "this link is not valid")
    now = ctx.clock.now()
    if now >= attempt.link_expires_at or state.expired_at(now):
        raise ProtocolError("claim_expired", "this link expired; ask the agent for a new claim")
    email = await ctx.sealer.open(ctx.pool, attempt.email_sealed)
    return ClaimPage(state.registration_id, state.kind, email, attempt.link_expires_at)


async def issue_otp(ctx: Context, link_token: str, caller: Caller) -> Challenge:
    """E7: a fresh code for the link's attempt; the previous code stops working."""

    async def attempt() -> Challenge:
        state = await _load(ctx, "by_attempt_token", link_token)
        if state is None or state.attempt is None:
            raise ProtocolError("claim_superseded", "this link was replaced by a newer one")
        now = ctx.clock.now()
        otp = new_otp()
        decision = decide_issue_otp(
            state,
            token_hash=token_hash(link_token),
            otp_hash=otp_hash(ctx.secret_key, state.attempt.attempt_id, otp),
            now=now,
            otp_ttl=timedelta(seconds=ctx.tenant.otp_ttl),
            limits=_limits(ctx),
        )
        rid = state.registration_id
        person = replace(caller, actor="user")
        await ctx.record(
            [Change(ctx.stream(REGISTRATION, rid), state.version, decision.events)],
            # the person's address, under the key of the attempt's own (the one its mail named)
            metadata=await ctx.metadata(person, subject_of(state.attempt.email_sealed)),
            now=now,
        )
        await registration_state.remember(ctx, state, decision.events)
        return Challenge(otp, now + timedelta(seconds=ctx.tenant.otp_ttl))

    return await retrying(attempt)


async def complete_claim(ctx: Context, claim_token: str, otp: str, caller: Caller) -> Completed:
    """E8: the right code claims once; every try is recorded, right or wrong."""

    async def attempt() -> Completed:
        state = await _load(ctx, "by_claim_token", claim_token)
        if state is None:
            raise ProtocolError("invalid_claim_token", "unknown claim token")
        now = ctx.clock.now()
        rid = state.registration_id
        user_id, first = await user_id_for(ctx, state)
        kept = kept_key(state)  # re-scoped in place; else a credential minted once claimed
        decision = decide_complete(
            state,
            otp_matches=lambda aid, stored: otp_matches(stored, ctx.secret_key, aid, otp),
            now=now,
            limits=_limits(ctx),
            user_id=user_id,
            credential_id=kept or new_credential_id(),
        )
        if decision.error is not None and not decision.events:
            # Changes nothing, so no event (issue 12.1): the try is logged and counted.
            log.info(
                "claim.complete_refused",
                registration_id=rid,
                reason=decision.refused,
                client_ip=caller.client_ip,
            )
            raise decision.error
        changes = [Change(ctx.stream(REGISTRATION, rid), state.version, decision.events)]
        key: list[Change] = []  # the pre-claim key's events: re-scoped, or revoked by a lock
        if decision.credential and state.credential_id is not None:
            stream = ctx.stream(CREDENTIAL, state.credential_id)
            key.append(Change(stream, ANY_VERSION, decision.credential))
        credential: Minted | None = None
        if (claimed := decision.claimed) is None:
            changes += key
        else:
            if first:
                changes.append(await new_user(ctx, state, user_id))
            if kept is None:  # the code was right: now mint the credential the claim binds
                credential = mint(
                    ctx,
                    state.requested_credential_type,
                    now=now,
                    scopes=state.post_claim_scopes,
                    issued_via="verified_email",
                    registration_id=rid,
                    user_id=user_id,
                    credential_id=claimed.credential_id,
                )
                changes.append(credential.change)
            changes += key
        await ctx.record(changes, metadata=await ctx.metadata(caller, rid), now=now)
        await registration_state.remember(ctx, state, decision.events)
        if decision.error is not None:
            raise decision.error
        return Completed(rid, credential)

    # Every conflict here is another try that changed the registration, and only a bounded
    # number can (a code's misses void it, the registration's misses lock it; after that a
    # try changes nothing and writes nothing): retry as often as that bound, not five times,
    # or a burst of wrong codes for one registration ends some tries in a 500.
    return await retrying(attempt, tries=_limits(ctx).max_registration_misses + 2)


async def user_id_for(ctx: Context, state: Registration) -> tuple[str, bool]:
    """The verified local user with the attempt's email, else a new id (spec R6)."""
    email_index = state.attempt.email_index if state.attempt is not None else None
    if email_index is not None:
        existing = await ctx.pool.fetchval(USER_Q["by_email"], ctx.tenant.tenant_id, email_index)
        if existing is not None:
            return str(existing), False
    return new_user_id(), True


async def new_user(ctx: Context, state: Registration, user_id: str) -> Change:
    """`user.created` for a first claim by this email, sealed under the user's own key."""
    attempt = state.attempt
    email = await ctx.sealer.open(ctx.pool, attempt.email_sealed) if attempt else None
    if attempt is None or email is None:
        raise ProtocolError("claim_expired", "this registration's data was erased")
    created = UserCreated(
        user_id=user_id,
        email_sealed=await ctx.sealer.seal(ctx.pool, user_id, email),
        email_index=attempt.email_index,
        email_verified=True,
    )
    return Change(ctx.stream(USER, user_id), 0, [created])
