"""The AuthKit profile's commands (contract [PR28]; docs/design/v06-dialect.md section 12): the
person's Authorize on the confirm page, the agent's `claim/complete` with the code the person
read to it, and the refresh grant at V1 (`{type: refresh}`) with its rotation and reuse rule.

The rules are service/domain/confirm.py's and service/domain/refresh.py's; the events are the
ledger's own (`claim.otp_issued` with `confirmed_by`, `registration.claimed`,
`credential.issued` of kind `refresh_token`, `credential.revoked` reasons `claimed`,
`rotated`, `refresh_reuse`). The claim's credential and assertion are built as V7's delivery
builds them (service/commands/claim_grant.py), with a refresh token where V7 mints an access
token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialRevoked
from events.delegation import STREAM_TYPE as DELEGATION
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import load_queries
from service.commands import registration_state
from service.commands.claim import new_user, user_id_for
from service.commands.claim_grant import claimed_assertion, mint_for_claim
from service.commands.claim_start import load_by_claim_token
from service.commands.context import Caller, Change, Context, retrying
from service.commands.credentials import Minted
from service.commands.person_claim import ended_by, none_left
from service.crypto.tokens import new_credential_id, new_otp, otp_hash, otp_matches, token_hash
from service.domain.claim import OtpLimits
from service.domain.confirm import confirmable, decide_complete_confirmed, decide_confirm
from service.domain.errors import ProtocolError
from service.domain.refresh import INVALID, REUSED, ROTATED, Presented, Reuse, decide_refresh
from service.domain.registration import Attempt, Registration
from service.domain.user_code import Claimant

Q = load_queries("service.commands", "authkit.sql")
REG_Q = load_queries("projections", "registrations.sql")
REFRESH_TTL = timedelta(days=30)  # contract [PR28]: refresh tokens live 30 days
log = structlog.get_logger("service.commands.authkit")


@dataclass(frozen=True, slots=True)
class Identity:
    """What the agent holds after a claim or a refresh: an assertion and a refresh token."""

    registration_id: str
    assertion: str
    assertion_expires: datetime
    refresh: Minted


def _limits(ctx: Context) -> OtpLimits:
    t = ctx.tenant
    return OtpLimits(t.otp_max_misses, t.otp_max_mints, t.claim_max_misses)


@dataclass(frozen=True, slots=True)
class ConfirmView:
    """What the confirm page tells the person before they authorize."""

    registration_id: str
    kind: str
    link_expires_at: datetime


async def _by_link(ctx: Context, link_token: str) -> tuple[Registration, Attempt]:
    row = await ctx.pool.fetchrow(REG_Q["by_attempt_token"], token_hash(link_token))
    if row is None or row["tenant_id"] != ctx.tenant.tenant_id:
        raise ProtocolError("not_found", "this link is not valid")
    state = await registration_state.load(ctx, row["registration_id"])
    if state is None or state.attempt is None:
        raise ProtocolError("not_found", "this link is not valid")
    return state, state.attempt


async def confirm_view(ctx: Context, link_token: str, *, email_index: str) -> ConfirmView:
    """GET `/claim/confirm`: the page's checks (`confirmable`), reading only."""
    state, _ = await _by_link(ctx, link_token)
    link_hash, now = token_hash(link_token), ctx.clock.now()
    attempt = confirmable(state, link_hash=link_hash, signed_in_index=email_index, now=now)
    return ConfirmView(state.registration_id, state.kind, attempt.link_expires_at)


async def confirm(
    ctx: Context, link_token: str, *, email_index: str, auth_method: str, caller: Caller
) -> tuple[str, datetime]:
    """POST `/claim/confirm`: the person signed in as `email_index` authorizes; the code they
    read to the agent (only its HMAC is recorded) and its end. ProtocolError as
    `decide_confirm`."""

    async def attempt() -> tuple[str, datetime]:
        state, current = await _by_link(ctx, link_token)
        code, now = new_otp(), ctx.clock.now()
        decision = decide_confirm(
            state,
            link_hash=token_hash(link_token),
            signed_in_index=email_index,
            code_hash=otp_hash(ctx.secret_key, current.attempt_id, code),
            auth_method=auth_method,
            now=now,
            code_ttl=timedelta(seconds=ctx.tenant.otp_ttl),
            limits=_limits(ctx),
        )
        rid = state.registration_id
        await ctx.record(
            [Change(ctx.stream(REGISTRATION, rid), state.version, decision.events)],
            metadata=await ctx.metadata(caller, current.attempt_id),
            now=now,
        )
        await registration_state.remember(ctx, state, decision.events)
        return code, now + timedelta(seconds=ctx.tenant.otp_ttl)

    return await retrying(attempt)


async def complete(ctx: Context, claim_token: str, user_code: str, caller: Caller) -> Identity:
    """`POST /agent/identity/claim/complete`: the right code claims once, ending the
    registration's pre-claim tokens and issuing the family's first refresh token; a wrong
    one is recorded (§6.4). ProtocolError as `decide_complete_confirmed`."""

    async def attempt() -> Identity:
        state = await load_by_claim_token(ctx, claim_token)
        if state is None:
            raise ProtocolError("invalid_claim", "unknown claim token")
        now, rid = ctx.clock.now(), state.registration_id
        user_id, first_claim = await user_id_for(ctx, state)
        active = await _active(ctx, rid)
        decision = decide_complete_confirmed(
            state,
            code_matches=lambda aid, stored: otp_matches(stored, ctx.secret_key, aid, user_code),
            now=now,
            limits=_limits(ctx),
            claimant=Claimant(user_id, "", ctx.tenant.issuer),
            refresh_id=new_credential_id(),
            active=tuple(active),
        )
        changes = [Change(ctx.stream(REGISTRATION, rid), state.version, decision.events)]
        changes += ended_by(ctx, decision, active)  # the claim's (O-F) or the lock's (§6.4)
        refresh: Minted | None = None
        if (claimed := decision.claimed) is not None:
            if first_claim:
                changes.append(await new_user(ctx, state, user_id))
            if decision.delegation and state.step_up is not None:
                stream = ctx.stream(DELEGATION, state.step_up.delegation_id)
                changes.append(Change(stream, 0, decision.delegation))
            refresh = mint_for_claim(
                ctx, state, "refresh_token", now=now, user_id=user_id,
                expires_at=now + REFRESH_TTL, credential_id=claimed.credential_id,
            )  # fmt: skip
            changes.append(refresh.change)
        await ctx.record(
            changes,
            metadata=await ctx.metadata(caller, rid),
            now=now,
            also=none_left(ctx.tenant.tenant_id, rid) if decision.revoke else None,
        )
        await registration_state.remember(ctx, state, decision.events)
        if decision.error is not None or refresh is None:
            raise decision.error or ProtocolError("invalid_claim", "nothing to complete")
        claimed_state = await registration_state.load(ctx, rid)
        return await _identity(ctx, claimed_state or state, refresh, now)

    return await retrying(attempt, tries=_limits(ctx).max_registration_misses + 2)


async def refresh(ctx: Context, token: str, caller: Caller) -> Identity:
    """V1 `{type: refresh}`: the presented token ends (`rotated`) and the next one is issued
    with a fresh assertion; a rotated token presented again ends its family's live token
    (`refresh_reuse`) and is refused; anything else is refused, writing nothing."""

    async def attempt() -> Identity:
        now = ctx.clock.now()
        row = await ctx.pool.fetchrow(Q["presented_refresh"], token_hash(token))
        presented: Presented | None = None
        state: Registration | None = None
        family: tuple[tuple[str, int], ...] = ()
        if row is not None and row["tenant_id"] == ctx.tenant.tenant_id:
            presented = Presented(
                credential_id=row["credential_id"], kind=row["kind"],
                registration_id=row["registration_id"], status=row["status"],
                end_reason=row["end_reason"], expires_at=row["expires_at"],
                version=row["version"],
            )  # fmt: skip
            if (rid := row["registration_id"]) is not None:
                state = await registration_state.load(ctx, rid)
                rows = await ctx.pool.fetch(Q["live_family"], ctx.tenant.tenant_id, rid)
                family = tuple((r["credential_id"], r["version"]) for r in rows)
        decided = decide_refresh(presented, state, family=family, now=now)
        if isinstance(decided, Reuse):
            await _end_family(ctx, decided, state, caller, now)
            raise ProtocolError("invalid_refresh_token", INVALID)
        claimed = decided.registration
        user_id = claimed.user_id or ""  # decide_refresh rotates only a claimed registration's
        rotated = Change(
            ctx.stream(CREDENTIAL, decided.credential_id),
            decided.version,
            [CredentialRevoked(reason=ROTATED)],
        )
        next_token = mint_for_claim(
            ctx, claimed, "refresh_token", now=now, user_id=user_id, expires_at=now + REFRESH_TTL
        )
        owner = user_id if claimed.step_up is not None else claimed.registration_id
        await ctx.record(
            [rotated, next_token.change], metadata=await ctx.metadata(caller, owner), now=now
        )
        return await _identity(ctx, claimed, next_token, now)

    return await retrying(attempt)


async def _end_family(
    ctx: Context, reuse: Reuse, state: Registration | None, caller: Caller, now: datetime
) -> None:
    registration_id = state.registration_id if state is not None else None
    log.warning("authkit.refresh_reused", registration_id=registration_id, ended=len(reuse.family))
    if not reuse.family or registration_id is None:
        return
    ended = [CredentialRevoked(reason=REUSED)]
    await ctx.record(
        [Change(ctx.stream(CREDENTIAL, cid), version, ended) for cid, version in reuse.family],
        metadata=await ctx.metadata(caller, registration_id),
        now=now,
    )


async def _identity(ctx: Context, state: Registration, token: Minted, now: datetime) -> Identity:
    assertion, expires = await claimed_assertion(ctx, state, now)
    return Identity(state.registration_id, assertion, expires, token)


async def _active(ctx: Context, registration_id: str) -> dict[str, int]:
    """The credentials a claim of the registration ends, by id, with their versions."""
    rows = await ctx.pool.fetch(Q["active_pre_claim"], ctx.tenant.tenant_id, registration_id)
    return {r["credential_id"]: r["version"] for r in rows}
