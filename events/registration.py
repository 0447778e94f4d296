"""Events of the registration aggregate (stream type `registration`, id `reg_…`).

A registration is an agent's sign-up, with its claim attempts: at the v1 door (`/agent/auth`)
by the anonymous or the verified-email flow; at the v0.6 door (`/agent/identity`,
docs/design/v06-dialect.md) anonymous, `service_auth` (a login hint) or an ID-JAG step-up
(`id_jag`). Secrets appear only as hashes (SHA-256 for tokens, a keyed HMAC for codes);
email addresses and a provider's subject only sealed (`pii1.…`) and as a blind index.

Fields added for the v0.6 dialect all have defaults that say what a row written before meant
(a v1 registration, an e-mailed code, a claim that bound a credential), so older rows read as
they always did without a schema version bump.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from events.catalogue import Event

RegistrationKind = Literal["anonymous", "verified_email", "service_auth", "id_jag"]
# `refresh_token`: the AuthKit profile's rotating refresh tokens (never a bearer at a resource).
CredentialKind = Literal["api_key", "access_token", "refresh_token"]
Dialect = Literal["v1", "v06"]
# Who sees and who types the code: `email` (v1: the code is shown on the mailed link's page,
# the agent types it at E8), `user_code` (v0.6: the agent gets the code, the signed-in person
# types it), `confirm` (the AuthKit profile: the signed-in person confirms, the page shows the
# code, the agent types it).
Ceremony = Literal["email", "user_code", "confirm"]
STREAM_TYPE = "registration"


class StepUp(msgspec.Struct, frozen=True, kw_only=True):
    """An ID-JAG whose verified address (or phone) matched an existing user, presented at the
    v0.6 door where no delegation existed yet: the account's owner must sign in and type the
    code before the subject is linked. Everything the claim needs to create the delegation,
    so the claim does not need the ID-JAG again.

    `delegation_id` is the delegation of iss, sub and our issuer whatever `aud` form the
    ID-JAG used; `audience` is None when that was our issuer, else the resource it named.
    `subject_sealed` is the provider's `sub` sealed under `user_id`'s key, as in
    `delegation.created`."""

    delegation_id: str
    issuer: str
    subject_sealed: str
    user_id: str
    matched_by: Literal["email", "phone"]
    jti: str
    client_id: str
    audience: str | None = None


class RegistrationCreated(Event, frozen=True, kw_only=True, tag="registration.created"):
    registration_id: str
    kind: RegistrationKind
    requested_credential_type: CredentialKind
    claim_token_hash: str
    expires_at: datetime
    pre_claim_scopes: tuple[str, ...]
    post_claim_scopes: tuple[str, ...]
    credential_id: str | None = None  # the anonymous flow's pre-claim key (v1 only)
    dialect: Dialect = "v1"  # the door it was made at; its claim token works only there
    step_up: StepUp | None = None  # kind `id_jag` only


class ClaimAttemptStarted(Event, frozen=True, kw_only=True, tag="claim.attempt_started"):
    attempt_id: str
    attempt_token_hash: str
    email_sealed: str
    email_index: str
    link_expires_at: datetime
    # `user_code`: email_sealed/email_index hold the hint the signed-in person must match,
    # and attempt_token_hash is the `cvt_…` token inside `verification_uri`.
    ceremony: Ceremony = "email"


class ClaimAttemptSuperseded(Event, frozen=True, kw_only=True, tag="claim.attempt_superseded"):
    attempt_id: str
    superseded_by: str


class OtpIssued(Event, frozen=True, kw_only=True, tag="claim.otp_issued"):
    """`confirmed_by`: in the AuthKit profile (ceremony `confirm`) the code is minted when the
    signed-in person confirms on the page, which shows it to them; how they proved their
    address (`email_link`, `oidc:<issuer>`), for the claim the agent completes with it. None
    elsewhere (v1's code and v0.6 main's are minted without a person)."""

    attempt_id: str
    otp_hash: str
    expires_at: datetime
    confirmed_by: str | None = None


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


class ClaimAttemptDenied(Event, frozen=True, kw_only=True, tag="claim.attempt_denied"):
    """The signed-in person whose address is the attempt's hint declined it (v0.6 claim
    page's Deny): the attempt is over, and the agent's next poll answers `access_denied`."""

    attempt_id: str


class RegistrationClaimed(Event, frozen=True, kw_only=True, tag="registration.claimed"):
    """v1: `credential_id` is the key re-scoped (anonymous) or the credential issued (email).
    v0.6: no credential is bound at the claim (None); `auth_method` says how the person proved
    the account (`email_link`, `oidc:<issuer>`), and the token endpoint may deliver up to
    `max_deliveries` credentials before `deliver_until` (recorded as decided, so a replay
    under other settings folds the same state)."""

    attempt_id: str
    user_id: str
    credential_id: str | None = None
    auth_method: str | None = None
    max_deliveries: int = 0
    deliver_until: datetime | None = None


class ClaimDelivered(Event, frozen=True, kw_only=True, tag="claim.delivered"):
    """A claimed v0.6 registration's claim token gave the agent `credential_id` (the token
    endpoint's claim grant), in one append with that credential's `credential.issued`:
    counted on the registration's stream, so the delivery cap holds under concurrency."""

    credential_id: str


class RegistrationExpired(Event, frozen=True, kw_only=True, tag="registration.expired"):
    reason: Literal["ttl", "locked"]


class RegistrationRevoked(Event, frozen=True, kw_only=True, tag="registration.revoked"):
    """Someone ended a v0.6 registration, claimed or not: an operator (`operator`), the
    provider's revocation of the subject (`logout`), or a newer step-up for the same subject
    (`superseded`). Its claim token and assertions stop working; a live attempt is void."""

    reason: str
    note: str | None = None


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
    RegistrationRevoked,
    ClaimAttemptDenied,
    ClaimDelivered,
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
    | RegistrationRevoked
    | ClaimAttemptDenied
    | ClaimDelivered
)
