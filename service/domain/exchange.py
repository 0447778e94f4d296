"""V6: what a service-signed assertion may be exchanged for at the token endpoint (pure).

An assertion (service/crypto/assertions.py) says only who it is for (`sub`) and at which
generation (`gen`); whether it still exchanges, and for which scopes, is decided here from the
log's state at the moment of the exchange (O-F), so nothing about an assertion is ever stored:

- a registration of the v0.6 door (`sub` = its id): not ended, not erased, and `gen` equal to
  its stage (0 before the claim, 1 after). Stage 0 exchanges only for an anonymous
  registration (service_auth and step-up registrations never hold a pre-claim assertion);
  a step-up registration's assertions go through its delegation, never its own id. Scopes:
  the pre-claim ones at stage 0, the post-claim ones at 1, both as recorded at creation.
  Before the claim the token ends by the registration's end (`not_after`);
- a delegation (`sub` = the deterministic `reg_…` of an ID-JAG subject): `gen` equal to how
  many times it was revoked, its user not erased. Scopes: every supported one (as v1 gives an
  ID-JAG credential).

Every refusal is `invalid_grant` (contract cases 7, 18, 29); only the message says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from events.credential import IssuedVia
from service.domain.errors import ProtocolError
from service.domain.registration import Registration

# The deterministic id of an ID-JAG subject (service.crypto.tokens.registration_id_for_identity)
# shares its 22 hex characters with the subject's delegation id.
_SUBJECT_ID = re.compile(r"reg_([0-9a-f]{22})")


@dataclass(frozen=True, slots=True)
class DelegationSubject:
    """An ID-JAG subject as V6 needs it: its delegation's row and its user's erasure."""

    delegation_id: str
    version: int  # the delegation stream's version the decision was made on
    revocations: int  # the generation its assertions must carry
    user_id: str
    user_erased: bool
    issuer: str


@dataclass(frozen=True, slots=True)
class Grant:
    """What the access token is minted with, and the stream version it was decided on (the
    command re-reads it under the append lock: a claim or revocation in between retries)."""

    stream_id: str
    version: int
    scopes: tuple[str, ...]
    issued_via: IssuedVia
    registration_id: str
    user_id: str | None
    issuer: str | None = None
    delegation_id: str | None = None
    not_after: datetime | None = None  # the token ends by then: its registration does


def delegation_of(subject: str) -> str | None:
    """The delegation id an assertion's `sub` names when it is an ID-JAG subject's
    deterministic registration id; None for any other id."""
    found = _SUBJECT_ID.fullmatch(subject)
    return None if found is None else "dlg_" + found.group(1)


def decide_exchange(
    subject: Registration | DelegationSubject | None,
    *,
    sub: str,
    gen: int,
    scopes_supported: tuple[str, ...],
    now: datetime,
) -> Grant:
    """V6: the grant for an assertion of `sub` at `gen`, or ProtocolError `invalid_grant`."""
    if isinstance(subject, Registration):
        return _registration_grant(subject, gen=gen, now=now)
    if isinstance(subject, DelegationSubject):
        if subject.user_erased or gen != subject.revocations:
            raise _refused("the assertion's subject was revoked")
        return Grant(
            stream_id=subject.delegation_id,
            version=subject.version,
            scopes=scopes_supported,
            issued_via="id_jag",
            registration_id=sub,
            user_id=subject.user_id,
            issuer=subject.issuer,
            delegation_id=subject.delegation_id,
        )
    raise _refused("the assertion's subject is unknown")


def _registration_grant(state: Registration, *, gen: int, now: datetime) -> Grant:
    if state.dialect != "v06" or state.kind == "id_jag":
        raise _refused("the assertion's subject is not exchanged here")
    if state.ended(now):
        raise _refused("the registration has ended")
    if gen != state.stage:
        raise _refused("the assertion was minted before the registration was claimed")
    if state.stage == 0 and state.kind != "anonymous":
        raise _refused("the registration is not claimed yet")
    return Grant(
        stream_id=state.registration_id,
        version=state.version,
        scopes=state.pre_claim_scopes if state.stage == 0 else state.post_claim_scopes,
        issued_via=state.kind,
        registration_id=state.registration_id,
        user_id=state.user_id,
        not_after=state.ends_by,
    )


def _refused(why: str) -> ProtocolError:
    return ProtocolError("invalid_grant", f"the assertion is not valid: {why}")
