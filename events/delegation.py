"""Events of delegations (stream type `delegation`, id `dlg_…` derived from iss, sub and aud).

A delegation says that an agent provider's subject `(iss, sub)`, asserting to this service
(`aud`), acts for one of our users. It is created the first time an ID-JAG for that subject is
accepted, used on every later one, and revoked by the provider's logout token (spec §8) or by
an operator. The provider's `sub` is an identifier of a person, so it is sealed under the
user's key like any other personal field.
"""

from __future__ import annotations

from typing import Literal

from events.catalogue import Event

STREAM_TYPE = "delegation"
# `step_up`: the v0.6 door, when the account's owner signed in and typed the code (the
# address or phone only proposed the account).
MatchedBy = Literal["email", "phone", "provisioned", "step_up"]


class DelegationCreated(Event, frozen=True, kw_only=True, tag="delegation.created"):
    delegation_id: str
    issuer: str
    audience: str
    subject_sealed: str
    user_id: str
    matched_by: MatchedBy  # how the user was found (spec §7.5 steps 2-4)


class DelegationUsed(Event, frozen=True, kw_only=True, tag="delegation.used"):
    """An ID-JAG for this subject was accepted and `credential_id` issued on it (v1), or a
    service-signed assertion answered for it (v0.6: no credential, None). `audience` is the
    `aud` the ID-JAG named when it was not our issuer (the resource, v0.6 only)."""

    credential_id: str | None = None
    jti: str
    client_id: str
    agent_platform: str | None = None
    agent_context_id: str | None = None
    audience: str | None = None


class DelegationRevoked(Event, frozen=True, kw_only=True, tag="delegation.revoked"):
    """Every credential issued through it was revoked (one `credential.revoked` each, in the
    same transaction); for a logout, every one issued before the token's `iat`. The delegation
    itself stays: a later ID-JAG is accepted again (O9)."""

    reason: str
    jti: str | None = None  # the logout token's, when the provider asked
    credential_ids: tuple[str, ...] = ()


DELEGATION_EVENTS: tuple[type[DelegationEvent], ...] = (
    DelegationCreated,
    DelegationUsed,
    DelegationRevoked,
)
DelegationEvent = DelegationCreated | DelegationUsed | DelegationRevoked
