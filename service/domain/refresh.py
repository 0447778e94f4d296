"""The AuthKit profile's rotating refresh tokens (contract [PR28]; docs/design/v06-dialect.md
section 12): which events a presented refresh token leads to. Pure: the rows and the time are
passed in.

A refresh token is a credential (`credential.issued`, kind `refresh_token`) of a claimed v0.6
registration; the claim issues the first (`claim/complete`), each refresh ends the presented
one (`credential.revoked`, reason `rotated`) and issues the next, in one append at the
presented token's version, so two refreshes with one token cannot both rotate it. A
registration's refresh tokens are one family (one claim, one chain of rotations).

A token ended by rotation that comes back was copied: whoever holds the family's live token
now may be the thief or the agent, so the live one ends too (`refresh_reuse`, the lead's answer
to open question 7; RFC 9700 section 4.14.2). Everything else that is not a live refresh token
of a live claimed registration is refused as `invalid_refresh_token`, writing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain.errors import ProtocolError
from service.domain.registration import Registration

ROTATED = "rotated"  # credential.revoked's reason: the token was traded for the next one
REUSED = "refresh_reuse"  # ...: a rotated token of its family came back
INVALID = "the refresh token is not valid; register again"


@dataclass(frozen=True, slots=True)
class Presented:
    """The credential a presented refresh token is (its row)."""

    credential_id: str
    kind: str
    registration_id: str | None
    status: str
    end_reason: str | None
    expires_at: datetime | None
    version: int


@dataclass(frozen=True, slots=True)
class Rotate:
    """End `credential_id` (at `version`) and issue the next token of its family."""

    credential_id: str
    version: int
    registration: Registration


@dataclass(frozen=True, slots=True)
class Reuse:
    """End every live token of the family (`(credential_id, version)`), then refuse."""

    family: tuple[tuple[str, int], ...]


def decide_refresh(
    presented: Presented | None,
    registration: Registration | None,
    *,
    family: tuple[tuple[str, int], ...],
    now: datetime,
) -> Rotate | Reuse:
    """`{type: refresh}` at V1. `family`: the registration's live refresh tokens."""
    if presented is None or presented.kind != "refresh_token":
        raise ProtocolError("invalid_refresh_token", INVALID)
    if presented.status == "revoked" and presented.end_reason == ROTATED:
        return Reuse(family)
    live = presented.status == "active" and (
        presented.expires_at is None or now < presented.expires_at
    )
    if not live or registration is None or registration.status != "claimed":
        raise ProtocolError("invalid_refresh_token", INVALID)
    if registration.ended(now) or registration.user_id is None:
        raise ProtocolError("invalid_refresh_token", INVALID)
    return Rotate(presented.credential_id, presented.version, registration)
