"""The v0.6 door's claim ceremony (docs/design/v06-dialect.md, sections 3.2-3.4): pure
decisions on a registration (service.domain.registration), time and the secrets' checks
passed in; service.domain.claim keeps v1's.

The service mints a `user_code` when an attempt starts and hands it to the agent with a
`verification_uri`; the person signs in at the service and types the code on the claim
page (V4/V5) or declines (Deny); the agent polls the token endpoint's claim grant (V7).

- `decide_open_attempt`: a new attempt with its one code (V1 service_auth, the ID-JAG
  step-up, V2), superseding the live one; the old link and code die (case 20).
- `decide_enter_code`: V5. Refusals before the code is looked at write nothing, and so does
  a refusal of a code that can no longer match; a wrong code that could have matched counts
  toward the §6.4 limits (O-H); the right one claims (O-E's allowance recorded, O-F's
  revocation of the pre-claim tokens, the step-up's delegation).
- `decide_view`: V4, what the claim page may show (the same checks as V5 before the code).
- `decide_deny`: the person declines; the next poll answers `access_denied` (O-G).
- `decide_poll`: V7's answer, in the design's order; a delivery's event is the command's
  to write once it minted the credential.

A registration made at the v1 door is refused here, saying which door to use (section 3.4).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from events.catalogue import Event
from events.delegation import DelegationCreated
from events.registration import (
    ClaimAttemptDenied,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    ClaimDelivered,
    OtpIssued,
    RegistrationClaimed,
    RegistrationExpired,
)
from service.domain.claim import Decision, OtpCheck, OtpLimits, code_missed, room_for
from service.domain.errors import Code, ProtocolError
from service.domain.registration import Attempt, Registration

# What the v0.6 routes answer for a registration made at the v1 door (section 3.4).
V1_CLAIM = (
    "this registration was made through /agent/auth; claim it there "
    "(POST /agent/auth/claim, then POST /agent/auth/claim/complete)"
)
V1_LINK = "this link belongs to a claim made through /agent/auth; open the link it mailed"


@dataclass(frozen=True, slots=True)
class NewCode:
    """What the caller minted for a new attempt: its id, the SHA-256 of the `cvt_…` link
    token inside `verification_uri`, the hint the signed-in person must match (blind index,
    and sealed under the attempt's own key) and the HMAC of the `user_code`."""

    attempt_id: str
    link_hash: str
    hint_index: str
    hint_sealed: str
    code_hash: str


@dataclass(frozen=True, slots=True)
class DeliveryTerms:
    """O-E: how many credentials a claimed registration's claim token may still fetch, and
    for how long after the claim (never past the registration's own end)."""

    max_deliveries: int = 3
    window: timedelta = timedelta(seconds=600)

    def until(self, claimed_at: datetime, expires_at: datetime) -> datetime:
        return min(claimed_at + self.window, expires_at)


@dataclass(frozen=True, slots=True)
class Claimant:
    """The person at the claim page: the account their signed-in address is (or becomes),
    how they proved that address (`email_link`, `oidc:<issuer>`), and our issuer, the
    audience of a step-up's delegation (O-D)."""

    user_id: str
    auth_method: str
    issuer: str


def decide_open_attempt(
    state: Registration, new: NewCode, *, now: datetime, link_ttl: timedelta, code_ttl: timedelta
) -> Decision:
    """V2 (and the attempt of V1 service_auth and of a step-up, on the state just created):
    a new attempt with its code, superseding the live one. A step-up keeps the hint of the
    user its ID-JAG matched (O-I), whatever address the agent gives: the new attempt copies
    the current one's index and sealed address (sealed under that attempt's key; a command
    that wants it under the new attempt's key re-seals the same address, index unchanged)."""
    if state.dialect != "v06":
        raise ProtocolError("invalid_claim_token", V1_CLAIM)
    if state.status == "claimed":
        raise ProtocolError("claimed_or_in_flight", "this registration is already claimed")
    if state.ended(now):
        raise ProtocolError("claim_expired", "this registration ended; register again")
    current = state.attempt
    hint_index, hint_sealed = new.hint_index, new.hint_sealed
    if state.kind == "id_jag" and current is not None:
        if current.status == "void":  # its address was erased: no one may claim it now
            raise ProtocolError("claim_expired", "this registration ended; register again")
        hint_index, hint_sealed = current.email_index, current.email_sealed
    events: list[Event] = []
    if current is not None and current.live:
        events.append(
            ClaimAttemptSuperseded(attempt_id=current.attempt_id, superseded_by=new.attempt_id)
        )
    events += [
        ClaimAttemptStarted(
            attempt_id=new.attempt_id,
            attempt_token_hash=new.link_hash,
            email_sealed=hint_sealed,
            email_index=hint_index,
            link_expires_at=now + link_ttl,
            ceremony="user_code",
        ),
        OtpIssued(attempt_id=new.attempt_id, otp_hash=new.code_hash, expires_at=now + code_ttl),
    ]
    room_for(state, len(events))
    return Decision(tuple(events))


def decide_enter_code(
    state: Registration,
    *,
    link_hash: str,
    signed_in_index: str,
    code_matches: OtpCheck,
    now: datetime,
    limits: OtpLimits,
    claimant: Claimant,
    terms: DeliveryTerms,
    active: tuple[str, ...],
) -> Decision:
    """V5: the signed-in person types the code of the link's attempt. In order: the link is
    the current attempt's (404); the session's address is the hint, and for a step-up the
    user is the one it matched (403, O-J); claimed (409); ended or the link's window over
    (410); the code voided or past its end (410 `user_code_expired`); wrong (401, counted);
    right: the claim. `active`: the registration's active credentials, which the claim ends
    (O-F), and so does the lock at the registration's limit (as v1's lock ends its key)."""
    attempt = _page_attempt(state, link_hash)
    _signed_in_as_hint(attempt, signed_in_index)
    if state.step_up is not None and claimant.user_id != state.step_up.user_id:
        raise ProtocolError("wrong_account", "this claim is for another account")
    _not_claimed(state)
    if state.ended(now) or now >= attempt.link_expires_at:
        raise ProtocolError("claim_expired", "this claim expired; ask the agent for a new one")
    if attempt.otp_voided or attempt.otp_hash is None or not _fresh(attempt, now):
        raise ProtocolError("user_code_expired", "this code is no longer valid")
    if code_matches(attempt.attempt_id, attempt.otp_hash):
        return _claim(state, attempt, now=now, claimant=claimant, terms=terms, active=active)
    missed = code_missed(state, attempt, limits)
    locked = any(isinstance(e, RegistrationExpired) for e in missed)  # §6.4: it ends, so do
    ended = active if locked else ()  # its tokens (as E8's lock revokes v1's key)
    return Decision(missed, ProtocolError("user_code_invalid", "wrong code"), revoke=ended)


def decide_view(
    state: Registration, *, link_hash: str, signed_in_index: str, now: datetime
) -> Attempt:
    """V4: the attempt the claim page may offer the code form for; V5's checks before the
    code, in its order (404, 403, 409, 410). Nothing is written, whatever the answer."""
    attempt = _page_attempt(state, link_hash)
    _signed_in_as_hint(attempt, signed_in_index)
    _not_claimed(state)
    if state.ended(now) or now >= attempt.link_expires_at:
        raise ProtocolError("claim_expired", "this claim expired; ask the agent for a new one")
    return attempt


def decide_deny(
    state: Registration, *, link_hash: str, signed_in_index: str, now: datetime
) -> Decision:
    """The person whose address is the hint declines the link's attempt: V5's first checks,
    then `claim.attempt_denied`. An attempt already over has nothing to decline (410)."""
    attempt = _page_attempt(state, link_hash)
    _signed_in_as_hint(attempt, signed_in_index)
    _not_claimed(state)
    if state.ended(now) or not attempt.live:
        raise ProtocolError("claim_expired", "this claim is over")
    room_for(state, 1)
    return Decision((ClaimAttemptDenied(attempt_id=attempt.attempt_id),))


@dataclass(frozen=True, slots=True)
class Deliver:
    """V7 may mint: a post-claim access token (and assertion) for the user who claimed. The
    command appends `delivered(credential_id)` with that credential's `credential.issued`,
    at the version this was decided on, so the cap holds under concurrency."""

    registration_id: str
    user_id: str
    scopes: tuple[str, ...]

    def delivered(self, credential_id: str) -> ClaimDelivered:
        return ClaimDelivered(credential_id=credential_id)


@dataclass(frozen=True, slots=True)
class Refused:
    """V7's RFC 8628 / RFC 6749 answer: pending, slow down, denied, expired or refused."""

    error: ProtocolError

    @property
    def code(self) -> Code:
        return self.error.code


Poll = Deliver | Refused


def decide_poll(state: Registration | None, *, now: datetime, too_fast: bool) -> Poll:
    """V7, first match wins: unknown → `expired_token`; a v1 registration → `invalid_grant`;
    ended → `expired_token`; claimed → a delivery within O-E's allowance, else
    `invalid_grant`; polled too fast → `slow_down` (O-G); no attempt yet →
    `authorization_pending`; denied → `access_denied`; the code dead → `expired_token`
    (case 20); else `authorization_pending`."""
    if state is None:
        return _poll("expired_token", "unknown claim token")
    if state.dialect != "v06":
        return _poll("invalid_grant", V1_CLAIM)
    if state.ended(now):
        return _poll("expired_token", "this registration ended; register again")
    if state.status == "claimed":
        if (
            state.user_id is not None
            and state.deliveries < state.max_deliveries
            and state.deliver_until is not None
            and now < state.deliver_until
            and now < state.expires_at
        ):
            return Deliver(state.registration_id, state.user_id, state.post_claim_scopes)
        return _poll("invalid_grant", "this claim token has delivered what it may")
    if too_fast:
        return _poll("slow_down", "poll no faster than the interval")
    attempt = state.attempt
    if attempt is None:
        return _poll("authorization_pending", "no claim started yet")
    if attempt.status == "denied":
        return _poll("access_denied", "the person declined this claim")
    if not attempt.live or attempt.otp_voided or not _fresh(attempt, now):
        return _poll("expired_token", "the code expired; start a new claim")
    return _poll("authorization_pending", "waiting for the person to enter the code")


def _poll(code: Code, message: str) -> Refused:
    return Refused(ProtocolError(code, message))


def _claim(
    state: Registration,
    attempt: Attempt,
    *,
    now: datetime,
    claimant: Claimant,
    terms: DeliveryTerms,
    active: tuple[str, ...],
) -> Decision:
    """The design's claim row: claimed with the delivery allowance recorded as decided; the
    registration's active credentials end (O-F); a step-up's subject is linked."""
    claimed = RegistrationClaimed(
        attempt_id=attempt.attempt_id,
        user_id=claimant.user_id,
        credential_id=None,
        auth_method=claimant.auth_method,
        max_deliveries=terms.max_deliveries,
        deliver_until=terms.until(now, state.expires_at),
    )
    delegation: tuple[Event, ...] = ()
    if (step_up := state.step_up) is not None:
        delegation = (
            DelegationCreated(
                delegation_id=step_up.delegation_id,
                issuer=step_up.issuer,
                audience=claimant.issuer,
                subject_sealed=step_up.subject_sealed,
                user_id=step_up.user_id,
                matched_by="step_up",
            ),
        )
    return Decision((claimed,), revoke=active, delegation=delegation)


def _page_attempt(state: Registration, link_hash: str) -> Attempt:
    """The attempt the claim page's link names: the current one, of the v0.6 ceremony, not
    declined (a declined or replaced link is unknown: 404)."""
    attempt = state.attempt
    if attempt is None or not hmac.compare_digest(attempt.token_hash, link_hash):
        raise ProtocolError("not_found", "this link is not valid")
    if state.dialect != "v06" or attempt.ceremony != "user_code":
        raise ProtocolError("not_found", V1_LINK)
    if attempt.status in ("superseded", "denied"):
        raise ProtocolError("not_found", "this link is not valid")
    return attempt


def _signed_in_as_hint(attempt: Attempt, signed_in_index: str) -> None:
    """O-J: the signed-in address must be the hint (blind indexes: case-insensitive)."""
    if not hmac.compare_digest(attempt.email_index, signed_in_index):
        raise ProtocolError("wrong_account", "you are signed in as another address")


def _not_claimed(state: Registration) -> None:
    if state.status == "claimed":
        raise ProtocolError("previously_claimed", "this registration is already claimed")


def _fresh(attempt: Attempt, now: datetime) -> bool:
    return attempt.otp_expires_at is not None and now < attempt.otp_expires_at
