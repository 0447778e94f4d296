"""The AuthKit profile's claim ceremony (contract [PR28], docs/design/v06-dialect.md sections
5.2 and 12): pure decisions on a registration, time and the secrets' checks passed in.

The code runs the other way than in the main profile: page → person → agent. An attempt of
ceremony `confirm` starts without a code (V1 service_auth, V2); the signed-in person whose
address is the hint presses Authorize on the page, which mints the code and shows it to
them (`claim.otp_issued` with `confirmed_by`); they read it to the agent, which completes
the claim itself at `POST /agent/identity/claim/complete`.

- `decide_open_confirm`: main's `decide_open_attempt`, its attempt of ceremony `confirm`
  and without its code.
- `decide_confirm`: the page's Authorize (the link, the hint, the state; the §6.4 cap on
  codes per attempt).
- `decide_complete_confirmed`: the agent's code. Refusals before the code is looked at
  write nothing; a wrong code that could have matched counts (§6.4 through
  `claim.otp_failed`, as V5); the right one claims, binding the refresh token the command
  mints (`credential_id`), ending the pre-claim tokens (O-F) and linking a step-up's subject.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import msgspec

from events.catalogue import Event
from events.registration import (
    ClaimAttemptStarted,
    OtpIssued,
    RegistrationClaimed,
    RegistrationExpired,
)
from service.domain.claim import Decision, OtpCheck, OtpLimits, code_missed, room_for
from service.domain.errors import ProtocolError
from service.domain.registration import Attempt, Registration
from service.domain.user_code import Claimant, DeliveryTerms, NewCode, decide_open_attempt
from service.domain.user_code import _claim as claim

NOT_CONFIRMED = "the person has not confirmed this claim yet: they sign in at verification_uri"
# The claim completes once: the refresh token is the agent's from then on, no later delivery.
NO_DELIVERIES = DeliveryTerms(max_deliveries=0, window=timedelta(0))


def decide_open_confirm(
    state: Registration, new: NewCode, *, now: datetime, link_ttl: timedelta
) -> Decision:
    """V1 service_auth and V2 in the AuthKit profile: a new attempt (superseding the live
    one) whose code waits for the person's confirmation. `new.code_hash` is not used."""
    opened = decide_open_attempt(state, new, now=now, link_ttl=link_ttl, code_ttl=link_ttl)
    return Decision(as_confirm(opened.events))


def as_confirm(events: Sequence[Event]) -> tuple[Event, ...]:
    """Main's events that open an attempt (its `decide_open_attempt`, a step-up's `open`),
    made this profile's: the attempt's ceremony `confirm`, its code left to the person's
    confirmation."""
    return tuple(
        msgspec.structs.replace(e, ceremony="confirm") if isinstance(e, ClaimAttemptStarted) else e
        for e in events
        if not isinstance(e, OtpIssued)
    )


def decide_confirm(
    state: Registration,
    *,
    link_hash: str,
    signed_in_index: str,
    code_hash: str,
    auth_method: str,
    now: datetime,
    code_ttl: timedelta,
    limits: OtpLimits,
) -> Decision:
    """POST `/claim/confirm`: the link is the current attempt's, of ceremony `confirm` (404);
    the session's address is the hint (403, O-J); not claimed (409); not ended, the link's
    window not over (410); fewer codes than §6.4 allows (429). Then a (new) code, whose
    HMAC is `code_hash`, replacing any earlier one."""
    attempt = confirmable(state, link_hash=link_hash, signed_in_index=signed_in_index, now=now)
    if attempt.mints >= limits.max_mints:
        raise ProtocolError("rate_limited", "too many codes for this link")
    room_for(state, 1)
    issued = OtpIssued(
        attempt_id=attempt.attempt_id,
        otp_hash=code_hash,
        expires_at=now + code_ttl,
        confirmed_by=auth_method,
    )
    return Decision((issued,))


def decide_complete_confirmed(
    state: Registration,
    *,
    code_matches: OtpCheck,
    now: datetime,
    limits: OtpLimits,
    claimant: Claimant,
    refresh_id: str,
    active: tuple[str, ...],
) -> Decision:
    """The agent's `claim/complete` (contract [PR28]): a v1 registration is not ours
    (`invalid_claim`); claimed (409 `already_claimed`); ended (410 `claim_expired`); no
    confirmed code (409 `claim_not_confirmed`); the code voided or past its end (410
    `user_code_expired`); wrong (401 `invalid_user_code`, counted; the lock ends `active` too,
    as V5's); right: the claim, with
    `refresh_id` as its credential. The claimant is the hint's account: the person who
    confirmed was signed in as it (`decide_confirm`)."""
    if state.dialect != "v06":
        raise ProtocolError("invalid_claim", "this registration was made through /agent/auth")
    if state.status == "claimed":
        raise ProtocolError("already_claimed", "this registration is already claimed")
    if state.ended(now):
        raise ProtocolError("claim_expired", "this registration ended; register again")
    attempt = state.attempt
    if attempt is None or attempt.ceremony != "confirm" or attempt.confirmed_by is None:
        raise ProtocolError("claim_not_confirmed", NOT_CONFIRMED)
    if not attempt.live:
        raise ProtocolError("claim_not_confirmed", NOT_CONFIRMED)
    if attempt.otp_voided or attempt.otp_expires_at is None or now >= attempt.otp_expires_at:
        raise ProtocolError("user_code_expired", "this code is no longer valid; confirm again")
    if state.step_up is not None and claimant.user_id != state.step_up.user_id:
        # the hint is the matched user's address: only an erased account gets here
        raise ProtocolError("claim_expired", "the account this claim was for is gone")
    if attempt.otp_hash is not None and code_matches(attempt.attempt_id, attempt.otp_hash):
        by = replace(claimant, auth_method=attempt.confirmed_by)
        decided = claim(state, attempt, now=now, claimant=by, terms=NO_DELIVERIES, active=active)
        events = tuple(
            msgspec.structs.replace(e, credential_id=refresh_id, deliver_until=None)
            if isinstance(e, RegistrationClaimed)
            else e
            for e in decided.events
        )
        return replace(decided, events=events)
    missed = code_missed(state, attempt, limits)
    locked = any(isinstance(e, RegistrationExpired) for e in missed)  # its tokens end with it
    ended = active if locked else ()
    return Decision(missed, ProtocolError("invalid_user_code", "wrong code"), revoke=ended)


def confirmable(
    state: Registration, *, link_hash: str, signed_in_index: str, now: datetime
) -> Attempt:
    """The page's checks (GET shows Authorize only when they pass; POST repeats them): the
    link's attempt (404), the session's address is the hint (403), not claimed (409), not
    ended and the link's window not over (410)."""
    attempt = confirm_attempt(state, link_hash)
    if not hmac.compare_digest(attempt.email_index, signed_in_index):
        raise ProtocolError("wrong_account", "you are signed in as another address")
    if state.status == "claimed":
        raise ProtocolError("already_claimed", "this registration is already claimed")
    if state.ended(now) or not attempt.live or now >= attempt.link_expires_at:
        raise ProtocolError("claim_expired", "this claim expired; ask the agent for a new one")
    return attempt


def confirm_attempt(state: Registration, link_hash: str) -> Attempt:
    """The attempt a confirm page's link names: the current one, of ceremony `confirm`, not
    superseded (404 otherwise, whatever the reason)."""
    attempt = state.attempt
    if attempt is None or not hmac.compare_digest(attempt.token_hash, link_hash):
        raise ProtocolError("not_found", "this link is not valid")
    if state.dialect != "v06" or attempt.ceremony != "confirm":
        raise ProtocolError("not_found", "this link is not valid")
    if attempt.status in ("superseded", "denied"):
        raise ProtocolError("not_found", "this link is not valid")
    return attempt
