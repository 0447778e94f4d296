"""The registration aggregate: its state, folded from its events by `evolve`, the only way
it changes. The claim ceremony's rules that decide those events are in
service.domain.claim.

A registration's stream is capped (STREAM_LIMIT): the steps that can repeat (E5 attempts, E7
codes) stop at GROWTH_LIMIT, which leaves room for every miss up to the lock, the claim, the
expiry and the erasure.
Spec references: §6.1 state machine, §6.2 attempt states.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
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
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationErased,
    RegistrationEvent,
    RegistrationExpired,
    RegistrationKind,
)

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
