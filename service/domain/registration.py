"""The registration aggregate: its state, folded from its events by `evolve`, the only way
it changes. The claim ceremony's rules that decide those events are in
service.domain.claim (v1; the v0.6 door's ceremony is docs/design/v06-dialect.md, section 3).

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
    Ceremony,
    ClaimAttemptDenied,
    ClaimAttemptExpired,
    ClaimAttemptLocked,
    ClaimAttemptsErased,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    ClaimDelivered,
    CredentialKind,
    Dialect,
    OtpFailed,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationErased,
    RegistrationEvent,
    RegistrationExpired,
    RegistrationKind,
    RegistrationRevoked,
    StepUp,
)

Status = Literal["unclaimed", "pending_claim", "claimed", "expired", "revoked"]
AttemptStatus = Literal[
    "initiated",
    "challenged",
    "link_expired",
    "superseded",
    "locked",
    "void",
    "completed",
    "denied",  # the signed-in person declined it (v0.6 Deny): terminal
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
    ceremony: Ceremony = "email"
    confirmed_by: str | None = None  # AuthKit: how the person who confirmed signed in

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
    # The v0.6 door (docs/design/v06-dialect.md, section 3.1); the defaults are what every v1
    # registration is, so snapshots saved before these fields existed decode right.
    dialect: Dialect = "v1"
    step_up: StepUp | None = None
    erased: bool = False
    max_deliveries: int = 0  # credentials its claim token may still fetch after the claim...
    deliveries: int = 0  # ...of which so many were fetched
    deliver_until: datetime | None = None

    def expired_at(self, now: datetime) -> bool:
        """Expired by event, or past its TTL while unclaimed (claimed ignores the TTL, R8)."""
        return self.status == "expired" or (self.status != "claimed" and now >= self.expires_at)

    def ended(self, now: datetime) -> bool:
        """Over for good at `now`: expired or revoked by event, erased, or past its TTL while
        unclaimed. Nothing more is minted or delivered for it."""
        return self.status == "revoked" or self.erased or self.expired_at(now)

    @property
    def ends_by(self) -> datetime | None:
        """When it ends by time, if it does: at its TTL while unclaimed (R7), never once
        claimed (R8). No credential minted for it outlives that (v0.6 V6, V7)."""
        return None if self.status == "claimed" else self.expires_at

    @property
    def stage(self) -> int:
        """0 before the claim, 1 after: the generation a v0.6 registration's service-signed
        assertion must carry, so one minted before the claim gains no post-claim scope."""
        return 1 if self.status == "claimed" else 0


# One case per event, so that assert_never names any event left out (hence the noqa).
def evolve(state: Registration | None, event: RegistrationEvent) -> Registration:  # noqa: PLR0912
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
                dialect=event.dialect,
                step_up=event.step_up,
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
                ceremony=event.ceremony,
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
                confirmed_by=event.confirmed_by,
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
                max_deliveries=event.max_deliveries,
                deliveries=0,
                deliver_until=event.deliver_until,
            )
        case ClaimDelivered():
            return _next(current, deliveries=current.deliveries + 1)
        case ClaimAttemptDenied():
            attempt = replace(
                _attempt(current, event.attempt_id),
                status="denied",
                otp_hash=None,
                otp_expires_at=None,
            )
            return _next(current, attempt=attempt)
        case RegistrationExpired():
            return _next(current, attempt=_void(current.attempt), status="expired")
        case RegistrationRevoked():
            return _next(current, attempt=_void(current.attempt), status="revoked")
        case RegistrationErased():
            return _next(current, attempt=_erased(current.attempt, event), erased=True)
        case ClaimAttemptsErased():
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
    """A live attempt ends with its registration (expiry, revocation) or its data (erasure)."""
    if attempt is None or not attempt.live:
        return attempt
    return replace(attempt, status="void", otp_hash=None, otp_expires_at=None)


def fold(events: list[RegistrationEvent], state: Registration | None = None) -> Registration | None:
    """`state` (None: nothing yet) with `events` applied in order."""
    for event in events:
        state = evolve(state, event)
    return state


def decide_revoke(
    state: Registration, *, reason: str, note: str | None, now: datetime
) -> list[Event]:
    """An operator's (O-R), a provider's or a newer step-up's end of a v0.6 registration:
    `registration.revoked`, after which its assertions stop exchanging and its claim token
    stops working. Nothing for a v1 registration (their keys are revoked as credentials, open
    question 6 of the design) or one that has already ended."""
    if state.dialect != "v06" or state.ended(now):
        return []
    return [RegistrationRevoked(reason=reason, note=note)]


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
