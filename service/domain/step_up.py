"""V1 with an ID-JAG at the v0.6 door (docs/design/v06-dialect.md, section 3.3): which
way the subject is served, and the events of each way. Pure; the verified ID-JAG, the
lookups and the secrets come in.

- The subject's delegation exists → `Clean`: one `delegation.used` (no credential: the
  answer is a service-signed assertion), whoever the delegation names.
- No delegation, and a user matched by verified e-mail, or by verified phone while that user
  has an address to sign in with → `StepUp`: the account's owner must sign in and type a
  code before the subject is linked (the design's step-up row). Always, whatever the
  issuer's `link_by_verified_email` (the lead's answer to open question 2): at this door an
  address proposes an account, it never links one silently.
- Else → `Provision`: a user made just in time, as at the v1 door, then as Clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from events.catalogue import Event
from events.delegation import DelegationCreated, DelegationUsed
from events.registration import RegistrationCreated, RegistrationRevoked
from events.registration import StepUp as StepUpFacts
from service.domain.registration import Registration, evolve
from service.domain.trust_list import DelegationState
from service.domain.user_code import NewCode, decide_open_attempt

# `registration.revoked`'s reason when a newer step-up of the same subject replaces it.
SUPERSEDED = "superseded"
# The ID-JAG's `auth_time` (the person's last sign-in at the provider) must be at most this
# many seconds old, with SKEW seconds either way (contract V1 identity_assertion).
MAX_AGE = 3_600
SKEW = 60


def login_fresh(auth_time: datetime | None, now: datetime) -> bool:
    """Whether an ID-JAG's `auth_time` allows V1 at the v0.6 door: present, at most
    MAX_AGE + SKEW seconds old and at most SKEW seconds ahead. When not, V1 answers 401
    `login_required` with `max_age` and writes nothing."""
    if auth_time is None:
        return False
    age = (now - auth_time).total_seconds()
    return -SKEW <= age <= MAX_AGE + SKEW


@dataclass(frozen=True, slots=True)
class Presented:
    """The verified ID-JAG, as far as the ledger keeps it. `delegation_id` is the one of
    iss, sub and our issuer, whatever `aud` form it used; `audience` is None when that was
    our issuer, else the resource it named (O-D)."""

    delegation_id: str
    issuer: str
    jti: str
    client_id: str
    audience: str | None = None
    agent_platform: str | None = None
    agent_context_id: str | None = None

    def used(self) -> DelegationUsed:
        return DelegationUsed(
            jti=self.jti,
            client_id=self.client_id,
            agent_platform=self.agent_platform,
            agent_context_id=self.agent_context_id,
            audience=self.audience,
        )


@dataclass(frozen=True, slots=True)
class UserMatch:
    """An existing user the ID-JAG's verified address (or phone) found. `email_index`: the
    blind index of that user's address, the hint a step-up's ceremony binds to (None: the
    user has none to sign in with)."""

    user_id: str
    matched_by: Literal["email", "phone"]
    email_index: str | None


@dataclass(frozen=True, slots=True)
class Clean:
    """The subject is known: its delegation's `delegation.used`, at its version."""

    delegation: DelegationState

    def events(self, presented: Presented) -> tuple[Event, ...]:
        return (presented.used(),)


@dataclass(frozen=True, slots=True)
class Provision:
    """No delegation and no account to step up to: the command makes the user (as at the
    v1 door), then the delegation is created and used in one append from version 0."""

    def events(
        self, presented: Presented, *, user_id: str, subject_sealed: str, issuer: str
    ) -> tuple[Event, ...]:
        created = DelegationCreated(
            delegation_id=presented.delegation_id,
            issuer=presented.issuer,
            audience=issuer,
            subject_sealed=subject_sealed,
            user_id=user_id,
            matched_by="provisioned",
        )
        return (created, presented.used())


@dataclass(frozen=True, slots=True)
class NewStepUp:
    """What the caller minted for a step-up's registration: a random `reg_…` id, the claim
    token's hash, the provider's `sub` sealed under the matched user's key, and the
    attempt's link and code with the matched user's address as the hint."""

    registration_id: str
    claim_token_hash: str
    subject_sealed: str
    code: NewCode


@dataclass(frozen=True, slots=True)
class StepUpTerms:
    registration_ttl: timedelta
    link_ttl: timedelta
    code_ttl: timedelta
    post_claim_scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Opened:
    """A step-up's events: `events` for the new registration's stream (from version 0);
    `superseded`, when not empty, for the stream of `superseded_id`, the subject's open
    step-up, at the version it was read at."""

    events: tuple[Event, ...]
    superseded: tuple[Event, ...] = ()
    superseded_id: str | None = None


@dataclass(frozen=True, slots=True)
class StepUp:
    """The matched account's owner must claim: a new registration (kind `id_jag`) with its
    ceremony, replacing the subject's open one (`supersede`), if any."""

    user: UserMatch
    supersede: Registration | None = None

    def open(
        self, presented: Presented, new: NewStepUp, *, now: datetime, terms: StepUpTerms
    ) -> Opened:
        """`registration.revoked` (superseded) for the open step-up still running, then
        `registration.created` with the StepUp facts, `claim.attempt_started` (the matched
        user's address as the hint) and `claim.otp_issued`."""
        if new.code.hint_index != self.user.email_index:
            raise ValueError("a step-up's hint is the address of the user its ID-JAG matched")
        old = self.supersede
        if old is not None and (
            old.step_up is None or old.step_up.delegation_id != presented.delegation_id
        ):
            raise ValueError("the step-up to supersede is another subject's")
        created = RegistrationCreated(
            registration_id=new.registration_id,
            kind="id_jag",
            requested_credential_type="access_token",
            claim_token_hash=new.claim_token_hash,
            expires_at=now + terms.registration_ttl,
            pre_claim_scopes=(),
            post_claim_scopes=terms.post_claim_scopes,
            dialect="v06",
            step_up=StepUpFacts(
                delegation_id=presented.delegation_id,
                issuer=presented.issuer,
                subject_sealed=new.subject_sealed,
                user_id=self.user.user_id,
                matched_by=self.user.matched_by,
                jti=presented.jti,
                client_id=presented.client_id,
                audience=presented.audience,
            ),
        )
        ceremony = decide_open_attempt(
            evolve(None, created),
            new.code,
            now=now,
            link_ttl=terms.link_ttl,
            code_ttl=terms.code_ttl,
        )
        if old is None or old.status == "claimed" or old.ended(now):
            return Opened((created, *ceremony.events))
        return Opened(
            (created, *ceremony.events),
            superseded=(RegistrationRevoked(reason=SUPERSEDED),),
            superseded_id=old.registration_id,
        )


Identity = Clean | StepUp | Provision


def decide_identity(
    delegation: DelegationState | None,
    match: UserMatch | None,
    open_step_up: Registration | None,
) -> Identity:
    """How V1 serves a verified ID-JAG's subject (this module's docstring). `match`: the
    user with the ID-JAG's verified address, else with its verified phone (never gated by
    the issuer's `link_by_verified_email` at this door); `open_step_up`: the subject's
    step-up registration not yet ended, if any."""
    if open_step_up is not None and open_step_up.step_up is None:
        raise ValueError("the open step-up given is not a step-up")
    if delegation is not None:
        return Clean(delegation)
    if match is not None and match.email_index is not None:
        return StepUp(match, open_step_up)
    return Provision()
