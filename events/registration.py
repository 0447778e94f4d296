"""Events of the registration aggregate (stream type `registration`, id `reg_…`).

A registration is an agent's sign-up by the anonymous or the verified-email flow, with its
claim attempts. Secrets appear only as hashes (SHA-256 for tokens, a keyed HMAC for codes);
email addresses only sealed (`pii1.…`) and as a blind index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from events.catalogue import Event

RegistrationKind = Literal["anonymous", "verified_email"]
CredentialKind = Literal["api_key", "access_token"]
STREAM_TYPE = "registration"


class RegistrationCreated(Event, frozen=True, kw_only=True, tag="registration.created"):
    registration_id: str
    kind: RegistrationKind
    requested_credential_type: CredentialKind
    claim_token_hash: str
    expires_at: datetime
    pre_claim_scopes: tuple[str, ...]
    post_claim_scopes: tuple[str, ...]
    credential_id: str | None = None  # the anonymous flow's pre-claim key


class ClaimAttemptStarted(Event, frozen=True, kw_only=True, tag="claim.attempt_started"):
    attempt_id: str
    attempt_token_hash: str
    email_sealed: str
    email_index: str
    link_expires_at: datetime


class ClaimAttemptSuperseded(Event, frozen=True, kw_only=True, tag="claim.attempt_superseded"):
    attempt_id: str
    superseded_by: str


class OtpIssued(Event, frozen=True, kw_only=True, tag="claim.otp_issued"):
    attempt_id: str
    otp_hash: str
    expires_at: datetime


OtpFailure = Literal[
    "mismatch", "expired", "voided", "not_generated", "claimed", "registration_expired"
]


class OtpFailed(Event, frozen=True, kw_only=True, tag="claim.otp_failed"):
    """A code try that did not claim. Only a `mismatch` counts toward the limits; the limits
    in force when it was decided are recorded as their outcome (`code_voided`), so a replay
    under other settings gives the same state."""

    attempt_id: str | None
    reason: OtpFailure
    code_voided: bool = False


class ClaimAttemptLocked(Event, frozen=True, kw_only=True, tag="claim.attempt_locked"):
    attempt_id: str


class ClaimAttemptExpired(Event, frozen=True, kw_only=True, tag="claim.attempt_expired"):
    """The attempt's link window ended (spec §6.2 `link_expired`): the link mints no more
    codes, while a code minted before still completes until its own end."""

    attempt_id: str


class RegistrationClaimed(Event, frozen=True, kw_only=True, tag="registration.claimed"):
    attempt_id: str
    user_id: str
    credential_id: str  # the key re-scoped (anonymous) or the credential issued (email)


class RegistrationExpired(Event, frozen=True, kw_only=True, tag="registration.expired"):
    reason: Literal["ttl", "locked"]


class RegistrationErased(Event, frozen=True, kw_only=True, tag="registration.erased"):
    """The registration's data key was destroyed (erasure of the person who claimed it or
    whom its current attempt named): its sealed fields are unreadable, a live attempt is void.
    `attempts`: the claim attempts whose own keys went with it (those that named the person;
    attempts started since 2026-12-06 seal their address under their own id)."""

    reason: str | None = None
    attempts: tuple[str, ...] = ()


class ClaimAttemptsErased(Event, frozen=True, kw_only=True, tag="claim.attempts_erased"):
    """The data keys of these claim attempts were destroyed (erasure of the person they
    named), the registration's own key kept: their address, their mail and the client
    addresses of the calls that started them or asked for their codes are unreadable, the
    registration and its other attempts untouched (security issue 12, finding 4). An attempt
    named here that is still the current one is void."""

    attempt_ids: tuple[str, ...]
    reason: str | None = None


REGISTRATION_EVENTS: tuple[type[RegistrationEvent], ...] = (
    RegistrationCreated,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    OtpIssued,
    OtpFailed,
    ClaimAttemptLocked,
    ClaimAttemptExpired,
    RegistrationClaimed,
    RegistrationExpired,
    RegistrationErased,
    ClaimAttemptsErased,
)

RegistrationEvent = (
    RegistrationCreated
    | ClaimAttemptStarted
    | ClaimAttemptSuperseded
    | OtpIssued
    | OtpFailed
    | ClaimAttemptLocked
    | ClaimAttemptExpired
    | RegistrationClaimed
    | RegistrationExpired
    | RegistrationErased
    | ClaimAttemptsErased
)
