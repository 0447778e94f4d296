"""The registration aggregate: state folded from its events, and the claim ceremony's rules.

`evolve` is the only way state changes; the `decide_*` functions are pure (time and
secrets' checks passed in) and return the events to append, plus the protocol error to answer
with. Only a try that changes state is an event: a wrong code against a live code (it counts
toward the §6.4 limits). A refusal that changes nothing (claimed, expired, no code, a voided
or expired code) writes nothing, so a stranger with a claim token cannot grow the log; the
command logs and counts it instead. A registration's stream is capped (STREAM_LIMIT): the
steps that can repeat (E5 attempts, E7 codes) stop at GROWTH_LIMIT, which leaves room for
every miss up to the lock, the claim, the expiry and the erasure.
Spec references: §6.1 state machine, §6.2 attempt states, §6.4 limits, §9 check order.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, assert_never

from events.catalogue import Event
from events.registration import (
    ClaimAttemptExpired,
    ClaimAttemptLocked,
    ClaimAttemptsErased,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    CredentialKind,
    OtpFailed,
    OtpFailure,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationErased,
    RegistrationEvent,
    RegistrationExpired,
    RegistrationKind,
)
from service.domain.errors import ProtocolError

Status = Literal["unclaimed", "pending_claim", "claimed", "expired"]
AttemptStatus = Literal[
    "initiated", "challenged", "link_expired", "superseded", "locked", "void", "completed"
]
# Not terminal (§6.2). In `link_expired` the link mints no more codes but the last code still
# completes, and a new attempt, expiry or lock still ends the attempt.
LIVE: tuple[AttemptStatus, ...] = ("initiated", "challenged", "link_expired")


STREAM_LIMIT = 256  # events a registration's stream can ever hold
# E5 and E7 stop here: 20 misses, the lock and its expiry, a claim, an erasure fit after it.
GROWTH_LIMIT = STREAM_LIMIT - 40


def _room_for(state: Registration, events: int) -> None:
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
class Attempt:
    attempt_id: str
    token_hash: str
    email_index: str
    email_sealed: str
    link_expires_at: datetime
    status: AttemptStatus = "initiated"
    otp_hash: str | None = None
    otp_expires_at: datetime | None = None
    otp_misses: int = 0
    otp_voided: bool = False
    mints: int = 0

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True, slots=True)
class Registration:
    registration_id: str
    kind: RegistrationKind
    requested_credential_type: CredentialKind
    claim_token_hash: str
    expires_at: datetime
    pre_claim_scopes: tuple[str, ...]
    post_claim_scopes: tuple[str, ...]
    credential_id: str | None
    status: Status
    attempt: Attempt | None = None
    misses: int = 0
    user_id: str | None = None
    version: int = 0

    def expired_at(self, now: datetime) -> bool:
        """Expired by event, or past its TTL while unclaimed (claimed ignores the TTL, R8)."""
        return self.status == "expired" or (self.status != "claimed" and now >= self.expires_at)


@dataclass(frozen=True, slots=True)
class Decision:
    """Events to append, and the refusal to answer with once they are recorded; `refused`
    names why a try was refused without an event (for the log line and the counter)."""

    events: tuple[Event, ...] = ()
    error: ProtocolError | None = None
    refused: OtpFailure | None = None


def evolve(state: Registration | None, event: RegistrationEvent) -> Registration:
    match event:
        case RegistrationCreated():
            return Registration(
                registration_id=event.registration_id,
                kind=event.kind,
                requested_credential_type=event.requested_credential_type,
                claim_token_hash=event.claim_token_hash,
                expires_at=event.expires_at,
                pre_claim_scopes=event.pre_claim_scopes,
                post_claim_scopes=event.post_claim_scopes,
                credential_id=event.credential_id,
                status="unclaimed" if event.kind == "anonymous" else "pending_claim",
                version=1,
            )
    current = _existing(state, event)
    match event:
        case ClaimAttemptStarted():
            attempt = Attempt(
                attempt_id=event.attempt_id,
                token_hash=event.attempt_token_hash,
                email_index=event.email_index,
                email_sealed=event.email_sealed,
                link_expires_at=event.link_expires_at,
            )
            return _next(current, attempt=attempt, status="pending_claim")
        case ClaimAttemptSuperseded():
            return _next(current, attempt=_attempt_as(current, event.attempt_id, "superseded"))
        case OtpIssued():
            attempt = _attempt(current, event.attempt_id)
            attempt = replace(
                attempt,
                status="challenged",
                otp_hash=event.otp_hash,
                otp_expires_at=event.expires_at,
                otp_misses=0,
                otp_voided=False,
                mints=attempt.mints + 1,
            )
            return _next(current, attempt=attempt)
        case OtpFailed():
            if event.reason != "mismatch" or event.attempt_id is None:
                return _next(current)
            attempt = _attempt(current, event.attempt_id)
            attempt = replace(
                attempt,
                otp_misses=attempt.otp_misses + 1,
                otp_voided=attempt.otp_voided or event.code_voided,
            )
            return _next(current, attempt=attempt, misses=current.misses + 1)
        case ClaimAttemptLocked():
            return _next(current, attempt=_attempt_as(current, event.attempt_id, "locked"))
        case ClaimAttemptExpired():
            return _next(current, attempt=_attempt_as(current, event.attempt_id, "link_expired"))
        case RegistrationClaimed():
            attempt = replace(
                _attempt(current, event.attempt_id),
                status="completed",
                otp_hash=None,
                otp_expires_at=None,
            )
            return _next(
                current,
                attempt=attempt,
                status="claimed",
                user_id=event.user_id,
                credential_id=event.credential_id,
            )
        case RegistrationExpired():
            return _next(current, attempt=_void(current.attempt), status="expired")
        case RegistrationErased() | ClaimAttemptsErased():
            return _next(current, attempt=_erased(current.attempt, event))
        case _:
            assert_never(event)


def _erased(
    attempt: Attempt | None, event: RegistrationErased | ClaimAttemptsErased
) -> Attempt | None:
    """The whole registration's erasure voids a live attempt; an erasure of some of its
    attempts (usually older ones) only when the current one is among them."""
    if isinstance(event, ClaimAttemptsErased) and (
        attempt is None or attempt.attempt_id not in event.attempt_ids
    ):
        return attempt
    return _void(attempt)


def _void(attempt: Attempt | None) -> Attempt | None:
    """A live attempt ends with its registration (expiry) or its data (erasure)."""
    if attempt is None or not attempt.live:
        return attempt
    return replace(attempt, status="void", otp_hash=None, otp_expires_at=None)


def fold(events: list[RegistrationEvent], state: Registration | None = None) -> Registration | None:
    """`state` (None: nothing yet) with `events` applied in order."""
    for event in events:
        state = evolve(state, event)
    return state


def _existing(state: Registration | None, event: Event) -> Registration:
    if state is None:
        raise ValueError(f"{type(event).__name__} before registration.created")
    return state


def _next(state: Registration, **changes: object) -> Registration:
    return replace(state, version=state.version + 1, **changes)  # type: ignore[arg-type]


def _attempt(state: Registration, attempt_id: str) -> Attempt:
    if state.attempt is None or state.attempt.attempt_id != attempt_id:
        raise ValueError(f"event names attempt {attempt_id}, not the registration's current one")
    return state.attempt


def _attempt_as(state: Registration, attempt_id: str, status: AttemptStatus) -> Attempt:
    return replace(_attempt(state, attempt_id), status=status)


# -- decisions --------------------------------------------------------------------------------


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
    _room_for(state, len(events))
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
    _room_for(state, 1)
    issued = OtpIssued(attempt_id=attempt.attempt_id, otp_hash=otp_hash, expires_at=now + otp_ttl)
    return Decision((issued,))


OtpCheck = Callable[[str, str], bool]  # (attempt_id, stored hash) -> does the offered code match


def decide_complete(
    state: Registration,
    *,
    otp_matches: OtpCheck,
    now: datetime,
    limits: OtpLimits,
    user_id: str,
    credential_id: str,
) -> Decision:
    """E8 (spec §9 order: claimed, expired, code exists, fresh, equal; §6.4 limits)."""
    attempt = state.attempt
    attempt_id = attempt.attempt_id if attempt is not None else None
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
        return Decision((claimed,))
    voided = attempt.otp_misses + 1 >= limits.max_code_misses
    events: list[Event] = [
        OtpFailed(attempt_id=attempt.attempt_id, reason="mismatch", code_voided=voided)
    ]
    if state.misses + 1 >= limits.max_registration_misses:
        events += [
            ClaimAttemptLocked(attempt_id=attempt.attempt_id),
            RegistrationExpired(reason="locked"),
        ]
    return Decision(tuple(events), ProtocolError("otp_invalid", "wrong code"))


def _refuse(
    attempt_id: str | None,
    reason: OtpFailure,
    code: Literal["previously_claimed", "claim_expired", "otp_not_generated", "otp_expired"],
    message: str,
) -> Decision:
    """A try that changes nothing: no event (the command logs it with `refused`)."""
    return Decision((), ProtocolError(code, message), refused=reason)
