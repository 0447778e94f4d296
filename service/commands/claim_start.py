"""The agent's half of the v0.6 claim ceremony's start (docs/design/v06-dialect.md, sections
3.2 and 5.2): V1 `service_auth` and V2 `POST /agent/identity/claim`.

Both open an attempt whose one `user_code` goes to the agent, with a `verification_uri` the
person opens to sign in and type it (the pages are not this module's). The rules are
service.domain.user_code's `decide_open_attempt`; this module mints the secrets and records:

- the link token `cvt_…` (its SHA-256 is the attempt's), inside `verification_uri` =
  `<issuer>/login?return_to=` + the urlencoded `/claim?claim_attempt_token=cvt_…` (case 10);
- the hint (the address the signed-in person must be, O-J), blind-indexed and sealed under
  the attempt's own key, as E5 seals its address, so erasing it takes that attempt alone;
- the code, six digits from the CSPRNG, stored as its HMAC bound to the attempt (W6).

V1 service_auth writes `registration.created` (kind `service_auth`, dialect v06, no
pre-claim scope, no credential) with the attempt's two events in one append; V2 appends
[`claim.attempt_superseded`] + `claim.attempt_started` + `claim.otp_issued` at the version
it decided on, so the old link and code die (case 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from events.registration import STREAM_TYPE, RegistrationCreated
from events.sql import load_queries
from service.commands import registration_state
from service.commands.context import Caller, Change, Context, retrying
from service.crypto.pii import FreshSubject
from service.crypto.tokens import (
    new_attempt_id,
    new_attempt_token,
    new_claim_token,
    new_otp,
    new_registration_id,
    otp_hash,
    token_hash,
)
from service.domain.claim import Decision
from service.domain.confirm import decide_open_confirm
from service.domain.errors import ProtocolError
from service.domain.registration import Registration, evolve
from service.domain.user_code import NewCode, decide_open_attempt
from service.tenancy.config import TenantConfig

REG_Q = load_queries("projections", "registrations.sql")
# The person's pages (V3, V4): the sign-in first, which sends them on to the claim page.
LOGIN_PATH = "/login"
CLAIM_PAGE_PATH = "/claim"
CONFIRM_PAGE_PATH = "/claim/confirm"  # the AuthKit profile's page: Authorize, then the code


def verification_uri(tenant: TenantConfig, link_token: str) -> str:
    """Where the person goes: the sign-in, returning to the claim page of this link (the
    confirm page in the AuthKit profile)."""
    page = CONFIRM_PAGE_PATH if tenant.v06_profile == "authkit" else CLAIM_PAGE_PATH
    return_to = f"{page}?claim_attempt_token={link_token}"
    return f"{tenant.issuer}{LOGIN_PATH}?return_to={quote(return_to, safe='')}"


@dataclass(frozen=True, slots=True)
class Handout:
    """The attempt as the agent gets it: `claim` (V1) or `claim_attempt` (V2)."""

    attempt_id: str
    user_code: str
    expires_in: int
    verification_uri: str
    interval: int
    link_expires_at: datetime

    def answer(self) -> dict[str, object]:
        return {
            "user_code": self.user_code,
            "expires_in": self.expires_in,
            "verification_uri": self.verification_uri,
            "interval": self.interval,
        }


@dataclass(frozen=True, slots=True)
class ServiceAuthRegistered:
    registration_id: str
    claim_token: str
    claim_token_expires: datetime
    post_claim_scopes: tuple[str, ...]
    claim: Handout


@dataclass(frozen=True, slots=True)
class AttemptOpened:
    registration_id: str
    claim: Handout


@dataclass(frozen=True, slots=True)
class MintedAttempt:
    """A v0.6 attempt's secrets: what decide_open_attempt records (hashes, the sealed hint),
    the attempt's fresh data subject, and what only the answer carries (link, code)."""

    new: NewCode
    subject: FreshSubject
    link_token: str
    user_code: str


def mint_attempt(ctx: Context, hint: str, *, hint_index: str | None = None) -> MintedAttempt:
    """A new attempt's secrets, the hint sealed under the attempt's own (fresh) key, so that
    erasing the address later takes this attempt alone. `hint_index`: the blind index to
    record when it is not the hint's own (a step-up's: its matched user's, O-I)."""
    attempt_id, link_token, user_code = new_attempt_id(), new_attempt_token(), new_otp()
    subject = ctx.sealer.fresh(attempt_id)
    new = NewCode(
        attempt_id=attempt_id,
        link_hash=token_hash(link_token),
        hint_index=ctx.sealer.blind_index(hint) if hint_index is None else hint_index,
        hint_sealed=subject.seal(hint),
        code_hash=otp_hash(ctx.secret_key, attempt_id, user_code),
    )
    return MintedAttempt(new, subject, link_token, user_code)


def _open(ctx: Context, state: Registration, minted: MintedAttempt, now: datetime) -> Decision:
    """The attempt's events: with the agent's code (main), or waiting for the person's
    confirmation, which mints the code (AuthKit, service/domain/confirm.py)."""
    tenant = ctx.tenant
    if tenant.v06_profile == "authkit":
        link_ttl = timedelta(seconds=tenant.claim_link_ttl)
        return decide_open_confirm(state, minted.new, now=now, link_ttl=link_ttl)
    return decide_open_attempt(
        state,
        minted.new,
        now=now,
        link_ttl=timedelta(seconds=tenant.claim_link_ttl),
        code_ttl=timedelta(seconds=tenant.otp_ttl),
    )


def _handout(ctx: Context, minted: MintedAttempt, now: datetime) -> Handout:
    tenant = ctx.tenant
    return Handout(
        attempt_id=minted.new.attempt_id,
        user_code=minted.user_code,
        expires_in=tenant.otp_ttl,
        verification_uri=verification_uri(tenant, minted.link_token),
        interval=tenant.claim_poll_interval,
        link_expires_at=now + timedelta(seconds=tenant.claim_link_ttl),
    )


async def register_service_auth(ctx: Context, hint: str, caller: Caller) -> ServiceAuthRegistered:
    """V1 service_auth (R2'): a registration pending its claim by the person `hint` names,
    with its attempt and code; no assertion until the claim (contract V1)."""
    tenant = ctx.tenant
    if not tenant.offers("service_auth"):
        raise ProtocolError("service_auth_not_enabled", "service_auth registration is not enabled")
    now = ctx.clock.now()
    registration_id, claim_token = new_registration_id(), new_claim_token()
    expires_at = now + timedelta(seconds=tenant.registration_ttl)
    created = RegistrationCreated(
        registration_id=registration_id,
        kind="service_auth",
        requested_credential_type="access_token",  # what V7 delivers
        claim_token_hash=token_hash(claim_token),
        expires_at=expires_at,
        pre_claim_scopes=(),
        post_claim_scopes=tenant.post_claim_scopes,
        dialect="v06",
    )
    minted = mint_attempt(ctx, hint)
    decision = _open(ctx, evolve(None, created), minted, now)
    registration = ctx.sealer.fresh(registration_id)
    await ctx.record(
        [Change(ctx.stream(STREAM_TYPE, registration_id), 0, [created, *decision.events])],
        # the client address under the attempt's key, as E4 verified_email does (finding 4)
        metadata=ctx.fresh_metadata(caller, minted.subject),
        now=now,
        fresh=[registration, minted.subject],
    )
    return ServiceAuthRegistered(
        registration_id=registration_id,
        claim_token=claim_token,
        claim_token_expires=expires_at,
        post_claim_scopes=tenant.post_claim_scopes,
        claim=_handout(ctx, minted, now),
    )


async def load_by_claim_token(ctx: Context, claim_token: str) -> Registration | None:
    """The registration of this tenant whose claim token this is, folded; else None."""
    row = await ctx.pool.fetchrow(REG_Q["by_claim_token"], token_hash(claim_token))
    if row is None or row["tenant_id"] != ctx.tenant.tenant_id:
        return None
    return await registration_state.load(ctx, row["registration_id"])


async def start(ctx: Context, claim_token: str, email: str, caller: Caller) -> AttemptOpened:
    """V2 (R3'): a new attempt for `email`, superseding the live one; 401
    `invalid_claim_token` (unknown, or made at the v1 door), 409 `claimed_or_in_flight`,
    410 `claim_expired`."""

    async def attempt() -> AttemptOpened:
        state = await load_by_claim_token(ctx, claim_token)
        if state is None:
            raise ProtocolError("invalid_claim_token", "unknown claim token")
        now = ctx.clock.now()
        minted = mint_attempt(ctx, email)
        decision = _open(ctx, state, minted, now)
        rid = state.registration_id
        await ctx.record(
            [Change(ctx.stream(STREAM_TYPE, rid), state.version, decision.events)],
            metadata=ctx.fresh_metadata(caller, minted.subject),
            now=now,
            fresh=[minted.subject],
        )
        await registration_state.remember(ctx, state, decision.events)
        return AttemptOpened(rid, _handout(ctx, minted, now))

    return await retrying(attempt)
