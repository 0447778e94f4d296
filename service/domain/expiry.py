"""Expiry: what is recorded when a deadline passes (spec §4 lifetimes, §6.1 R7, §6.2).

Pure: the state of a registration and of a credential (either may be absent) and the time
in, the events to append out. Nothing here decides whether a credential or a claim works:
every check already compares its deadline with the clock, so a credential is refused from
its `expires_at` on and a late E5/E7/E8 answers 410 whether or not anything was recorded.
These decisions turn what time decided into facts in the log, each dated (`Dated.at`, the
event's occurred-at) at the instant it became true, not when a worker got to it.

- An open registration past its TTL: `registration.expired` (ttl); its live attempt and code
  are voided by that event (R7).
- A live attempt past its link window: `claim.attempt_expired` (§6.2 `link_expired`), if the
  window ended before the registration did.
- An active credential past its own `expires_at`: `credential.expired`.
- The pre-claim key of an unclaimed registration that expires ends with it (§4: the key's
  lifetime is the registration's) as **`credential.revoked`, reason `registration_expired`**,
  in the same append as `registration.expired`. Revoked, not expired, because:
  the spec names it a revocation (R7 "revoke anonymous key"; [REF] revokes it too); the key
  ends because its registration ended, a fact about the registration rather than about the
  key's own lifetime; the same event then also fits a registration that ended early, locked
  after too many wrong codes (§6.4), whose key's own `expires_at` is still ahead, where
  "expired" would be false; and revocation subscribers (the revocations feed, webhooks) are
  told to drop it. (Until the worker records it, a check refuses the key as expired, by its
  `expires_at`; afterwards as revoked: a 401 either way.) A key whose own `expires_at` came
  first (were an unclaimed registration to hold an hour's access token) expired by itself, at
  its own deadline.
- A v0.6 registration holds no key but may hold many pre-claim access tokens (V6, each a
  credential of the registration, minted to end by the registration's end at the latest).
  They end with it by the same rule and the same events as v1's key, in the same append as
  `registration.expired`: `credential.revoked` (`registration_expired`), or
  `credential.expired` at its own deadline for one whose own end came first. Give them as
  `tokens`, every active one, beside the registration: it expires with them or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from events.catalogue import Event
from events.credential import CredentialExpired, CredentialRevoked
from events.registration import ClaimAttemptExpired, RegistrationExpired
from service.domain.credentials import REVOKED_WITH_REGISTRATION, Credential, evolve, fold
from service.domain.registration import Registration

OPEN = ("unclaimed", "pending_claim")
LINK_OPEN = ("initiated", "challenged")  # attempts whose link can still mint a code
OVERDUE = datetime.min.replace(tzinfo=UTC)  # due since an instant the state does not hold

# The credential aggregate (service.domain.credentials) under the names the expiry worker
# and its tests know: its state, and its fold of bare events (versions counted).
CredentialState = Credential
evolve_credential = evolve
fold_credential = fold


@dataclass(frozen=True, slots=True)
class Dated:
    """An event and the instant it became true: its occurred-at, the deadline that passed."""

    event: Event
    at: datetime


@dataclass(frozen=True, slots=True)
class ExpiryDecision:
    """Events for the registration's stream, for the credential's and for each token's (by
    credential id), in order."""

    registration: tuple[Dated, ...] = ()
    credential: tuple[Dated, ...] = ()
    tokens: tuple[tuple[str, tuple[Dated, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.registration and not self.credential and not self.tokens


def holds(registration: Registration | None, credential: CredentialState | None) -> bool:
    """Whether `credential` is the pre-claim key of `registration` (unclaimed, §5.1), or for
    a v0.6 registration one of its pre-claim access tokens (all it holds before the claim)."""
    return (
        registration is not None
        and credential is not None
        and registration.status != "claimed"
        and (
            registration.credential_id == credential.credential_id
            or (
                registration.dialect == "v06"
                and credential.registration_id == registration.registration_id
            )
        )
    )


def _decidable(
    registration: Registration | None, credential: CredentialState | None
) -> Registration | None:
    """The registration, if open and given with the key it holds (if it holds one): a
    registration and its key end together, in one append, or not at all."""
    if registration is None or registration.status not in OPEN:
        return None
    if registration.credential_id is not None and not holds(registration, credential):
        return None
    return registration


def _link_end(registration: Registration) -> tuple[str, datetime] | None:
    """The live attempt and when its link window ends, if before the registration does
    (after it, the registration's expiry voids the attempt first)."""
    attempt = registration.attempt
    if attempt is None or attempt.status not in LINK_OPEN:
        return None
    if attempt.link_expires_at >= registration.expires_at:
        return None
    return attempt.attempt_id, attempt.link_expires_at


def decide_expiry(
    registration: Registration | None,
    credential: CredentialState | None,
    now: datetime,
    tokens: Sequence[CredentialState] = (),
) -> ExpiryDecision:
    """Every deadline of this registration and credential (and tokens) that has passed at
    `now`, once, in the order they passed: a worker that was down records what one running
    all along would have, with the same dates.

    Give a registration with the key it holds, a credential with the registration it belongs
    to (if any): an open registration given without its key is left for that pair. A v0.6
    registration is given with every active token it holds (`tokens`).
    """
    ended_at: datetime | None = None  # when the registration ended, if it has
    registration_events: list[Dated] = []
    if (open_registration := _decidable(registration, credential)) is not None:
        link = _link_end(open_registration)
        if link is not None and now >= link[1]:
            attempt_id, link_end = link
            registration_events.append(Dated(ClaimAttemptExpired(attempt_id=attempt_id), link_end))
        if now >= open_registration.expires_at:  # R7; a claimed one ignores its TTL (R8)
            ended_at = open_registration.expires_at
            registration_events.append(Dated(RegistrationExpired(reason="ttl"), ended_at))
    elif _ended_holding(registration, credential) or any(
        _ended_holding(registration, token) for token in tokens
    ):
        ended_at = now  # ended before (locked, §6.4); when exactly, the state does not say
    ends = ((token.credential_id, _end(registration, token, ended_at, now)) for token in tokens)
    return ExpiryDecision(
        tuple(registration_events),
        _end(registration, credential, ended_at, now),
        tuple((credential_id, dated) for credential_id, dated in ends if dated),
    )


def _end(
    registration: Registration | None,
    credential: CredentialState | None,
    ended_at: datetime | None,
    now: datetime,
) -> tuple[Dated, ...]:
    """An active credential's end: with the registration that held it when that ended at
    `ended_at` (revoked, unless its own end came first), else at its own deadline."""
    if credential is None or credential.status != "active":
        return ()
    own = credential.expires_at
    if ended_at is not None and holds(registration, credential):
        if own is not None and own < ended_at:  # its own end came first
            return (Dated(CredentialExpired(), own),)
        return (Dated(CredentialRevoked(reason=REVOKED_WITH_REGISTRATION), ended_at),)
    if own is not None and now >= own:
        return (Dated(CredentialExpired(), own),)
    return ()


def _ended_holding(registration: Registration | None, credential: CredentialState | None) -> bool:
    """An expired registration whose pre-claim key is still active."""
    return (
        registration is not None
        and registration.status == "expired"
        and holds(registration, credential)
        and credential is not None
        and credential.status == "active"
    )


def due_at(
    registration: Registration | None,
    credential: CredentialState | None,
    tokens: Sequence[CredentialState] = (),
) -> datetime | None:
    """The first instant at which `decide_expiry` has something to record (OVERDUE: at any
    time), None when it never will. The worker's indexed queries mirror it, except OVERDUE:
    the key (or token) of a registration that ended early (locked) is found at its own
    `expires_at`."""
    deadlines: list[datetime] = []
    if (open_registration := _decidable(registration, credential)) is not None:
        deadlines.append(open_registration.expires_at)
        link = _link_end(open_registration)
        if link is not None:
            deadlines.append(link[1])
    for held in (credential, *tokens):
        if _ended_holding(registration, held):
            deadlines.append(OVERDUE)
        own = held.expires_at if held is not None else None
        if own is not None and held is not None and held.status == "active":
            deadlines.append(own)
    return min(deadlines, default=None)
