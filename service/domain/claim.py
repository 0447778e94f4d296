"""The claim ceremony's rules (E5 start, E7 code, E8 complete): pure decisions on a
registration (service.domain.registration), time and the secrets' checks passed in.

Each `decide_*` returns the events to append, plus the protocol error to answer with. Only a
try that changes state is an event: a wrong code against a live code (it counts toward the
§6.4 limits). A refusal that changes nothing (claimed, expired, no code, a voided or expired
code) writes nothing, so a stranger with a claim token cannot grow the log; the command logs
and counts it instead.

E8 also decides what happens to the registration's pre-claim key (the anonymous flow's), as
`Decision.credential`, the events of that key's stream: a claim that binds it re-scopes it in
place (post-claim scopes, bound to the user); a lock after too many wrong codes ends the
registration and revokes the key with it (R7, reason `registration_expired`), as expiry
does (service.domain.expiry). A claim that binds another credential leaves the minting of it
to the command, once the code was right.

A claim token is honoured only at the door that made its registration
(docs/design/v06-dialect.md, section 3.4): E5, E7 and E8 refuse a registration made at
`/agent/identity`, saying where to claim it; its ceremony is service.domain.user_code.
Spec references: §6.1 state machine, §6.2 attempt states, §6.4 limits, §9 check order.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from events.catalogue import Event
from events.credential import CredentialRescoped, CredentialRevoked
from events.registration import (
    ClaimAttemptLocked,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    OtpFailed,
    OtpFailure,
    OtpIssued,
    RegistrationClaimed,
    RegistrationExpired,
)
from service.domain.credentials import REVOKED_WITH_REGISTRATION
from service.domain.errors import ProtocolError
from service.domain.registration import GROWTH_LIMIT, Attempt, Registration

# What E5, E7 and E8 answer for a registration made at the v0.6 door (design section 3.4).
V06_CLAIM = (
    "this registration was made through /agent/identity; claim it there "
    "(POST /agent/identity/claim, then poll POST /oauth2/token)"
)
V06_LINK = "this link belongs to a claim made through /agent/identity; open it as given"


def room_for(state: Registration, events: int) -> None:
    """Refuse a step that would take the stream past GROWTH_LIMIT (security issue 12.1)."""
    if state.version + events > GROWTH_LIMIT:
        raise ProtocolError(
            "rate_limited", "this registration has taken all the claim tries it may; register again"
        )


@dataclass(frozen=True, slots=True)
class OtpLimits:
    """Spec §6.4: misses per code, codes per attempt, misses per registration."""

    max_code_misses: int = 5
    max_mints: int = 10
    max_registration_misses: int = 20


@dataclass(frozen=True, slots=True)
class Decision:
    """Events to append, and the refusal to answer with once they are recorded; `refused`
    names why a try was refused without an event (for the log line and the counter).
    `events` go to the registration's stream, `credential` (E8 only) to the stream of its
    pre-claim key (`Registration.credential_id`), at any version: a key already ended stays
    ended (service.domain.credentials).

    The v0.6 claim (service.domain.user_code) adds two: `revoke`, the credentials its claim
    ends (each gets `credential.revoked` with REVOKED_BY_CLAIM) or its lock ends (with
    REVOKED_WITH_REGISTRATION, as a v1 lock ends the pre-claim key), and
    `delegation`, the events of the step-up's delegation stream (`delegation.created`, from
    version 0)."""

    events: tuple[Event, ...] = ()
    error: ProtocolError | None = None
    refused: OtpFailure | None = None
    credential: tuple[Event, ...] = ()
    revoke: tuple[str, ...] = ()
    delegation: tuple[Event, ...] = ()

    @property
    def claimed(self) -> RegistrationClaimed | None:
        """The claim this decision records, if it does."""
        return next((e for e in self.events if isinstance(e, RegistrationClaimed)), None)


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """What the caller minted for a possible new attempt (used only when one starts)."""

    attempt_id: str
    token_hash: str
    email_index: str
    email_sealed: str


def decide_start_claim(
    state: Registration, new: NewAttempt, *, now: datetime, link_ttl: timedelta
) -> Decision:
    """E5 (spec §6.1 R3/R4, O4, O6): start an attempt, or echo the current one."""
    if state.dialect != "v1":
        raise ProtocolError("invalid_claim_token", V06_CLAIM)
    if state.kind == "verified_email":
        current = state.attempt
        same_email = current is not None and current.email_index == new.email_index
        window_over = current is None or now >= current.link_expires_at or not current.live
        if state.status == "claimed" or not (same_email and window_over):
            raise ProtocolError(
                "claimed_or_in_flight",
                "this registration is claimed through the code sent by email; submit it",
            )
    if state.status == "claimed":
        raise ProtocolError("claimed_or_in_flight", "this registration is already claimed")
    if state.expired_at(now):
        raise ProtocolError("claim_expired", "this registration expired; register again")
    current = state.attempt
    if (
        current is not None
        and current.live
        and current.email_index == new.email_index
        and now < current.link_expires_at
    ):
        return Decision()  # R4: the same email inside the window gets the current attempt
    events: list[Event] = []
    if current is not None and current.live:
        events.append(
            ClaimAttemptSuperseded(attempt_id=current.attempt_id, superseded_by=new.attempt_id)
        )
    events.append(
        ClaimAttemptStarted(
            attempt_id=new.attempt_id,
            attempt_token_hash=new.token_hash,
            email_sealed=new.email_sealed,
            email_index=new.email_index,
            link_expires_at=now + link_ttl,
        )
    )
    room_for(state, len(events))
    return Decision(tuple(events))


def decide_issue_otp(
    state: Registration,
    *,
    token_hash: str,
    otp_hash: str,
    now: datetime,
    otp_ttl: timedelta,
    limits: OtpLimits,
) -> Decision:
    """E7 (spec §6.3): mint a code for the current attempt's link, replacing any previous."""
    attempt = state.attempt
    if attempt is None or not hmac.compare_digest(attempt.token_hash, token_hash):
        raise ProtocolError("claim_superseded", "this link was replaced by a newer one")
    if state.dialect != "v1" or attempt.ceremony != "email":
        # A v0.6 link (inside the agent's `verification_uri`) must not mint a code here: it
        # would replace the code the agent holds and the person types at the v0.6 page.
        raise ProtocolError("claim_superseded", V06_LINK)
    if attempt.status == "completed" or state.status == "claimed":
        raise ProtocolError("claim_completed", "this registration is already claimed")
    if state.expired_at(now):
        raise ProtocolError("claim_expired", "this registration expired")
    if not attempt.live:
        raise ProtocolError("claim_superseded", "this link is no longer valid")
    if now >= attempt.link_expires_at or attempt.status == "link_expired":
        raise ProtocolError("claim_expired", "this link expired; ask the agent for a new one")
    if attempt.mints >= limits.max_mints:
        raise ProtocolError("rate_limited", "too many codes for this link")
    room_for(state, 1)
    issued = OtpIssued(attempt_id=attempt.attempt_id, otp_hash=otp_hash, expires_at=now + otp_ttl)
    return Decision((issued,))


OtpCheck = Callable[[str, str], bool]  # (attempt_id, stored hash) -> does the offered code match


def kept_key(state: Registration) -> str | None:
    """The credential a claim of `state` binds in place: the anonymous flow's pre-claim key
    (re-scoped, R6). None: the claim binds a credential minted for it."""
    return state.credential_id if state.kind == "anonymous" else None


def decide_complete(
    state: Registration,
    *,
    otp_matches: OtpCheck,
    now: datetime,
    limits: OtpLimits,
    user_id: str,
    credential_id: str,
) -> Decision:
    """E8 (spec §9 order: claimed, expired, code exists, fresh, equal; §6.4 limits): the
    right code claims the registration for `user_id`, bound to `credential_id` (its kept key,
    re-scoped, or the id of the credential the command mints once this decided the claim); a
    wrong one counts, and the miss that reaches the registration's limit locks it, which
    revokes its pre-claim key with it."""
    attempt = state.attempt
    attempt_id = attempt.attempt_id if attempt is not None else None
    if state.dialect != "v1":  # its code is the agent's: only the signed-in person may type it
        return Decision((), ProtocolError("invalid_claim_token", V06_CLAIM))
    if state.status == "claimed":
        return _refuse(attempt_id, "claimed", "previously_claimed", "already claimed")
    if state.expired_at(now):
        return _refuse(attempt_id, "registration_expired", "claim_expired", "registration expired")
    if attempt is None or attempt.otp_hash is None or not attempt.live:
        return _refuse(attempt_id, "not_generated", "otp_not_generated", "no code minted yet")
    if attempt.otp_voided:
        return _refuse(attempt_id, "voided", "otp_expired", "too many attempts; mint a new code")
    if attempt.otp_expires_at is None or now >= attempt.otp_expires_at:
        return _refuse(attempt_id, "expired", "otp_expired", "code expired; mint a new one")
    if otp_matches(attempt.attempt_id, attempt.otp_hash):
        claimed = RegistrationClaimed(
            attempt_id=attempt.attempt_id, user_id=user_id, credential_id=credential_id
        )
        key: tuple[Event, ...] = ()
        if credential_id == kept_key(state):
            key = (CredentialRescoped(scopes=state.post_claim_scopes, user_id=user_id),)
        return Decision((claimed,), credential=key)
    voided = attempt.otp_misses + 1 >= limits.max_code_misses
    events: list[Event] = [
        OtpFailed(attempt_id=attempt.attempt_id, reason="mismatch", code_voided=voided)
    ]
    key = ()
    if state.misses + 1 >= limits.max_registration_misses:
        events += [
            ClaimAttemptLocked(attempt_id=attempt.attempt_id),
            RegistrationExpired(reason="locked"),
        ]
        if state.credential_id is not None:  # the pre-claim key ends with it (R7)
            key = (CredentialRevoked(reason=REVOKED_WITH_REGISTRATION),)
    return Decision(tuple(events), ProtocolError("otp_invalid", "wrong code"), credential=key)


def code_missed(state: Registration, attempt: Attempt, limits: OtpLimits) -> tuple[Event, ...]:
    """A wrong code that could have matched (§6.4): counted, the code voided at its limit,
    the attempt locked and the registration ended at the registration's."""
    voided = attempt.otp_misses + 1 >= limits.max_code_misses
    events: list[Event] = [
        OtpFailed(attempt_id=attempt.attempt_id, reason="mismatch", code_voided=voided)
    ]
    if state.misses + 1 >= limits.max_registration_misses:
        events += [
            ClaimAttemptLocked(attempt_id=attempt.attempt_id),
            RegistrationExpired(reason="locked"),
        ]
    return tuple(events)


def _refuse(
    attempt_id: str | None,
    reason: OtpFailure,
    code: Literal["previously_claimed", "claim_expired", "otp_not_generated", "otp_expired"],
    message: str,
) -> Decision:
    """A try that changes nothing: no event (the command logs it with `refused`)."""
    return Decision((), ProtocolError(code, message), refused=reason)
