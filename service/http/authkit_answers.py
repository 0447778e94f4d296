"""What the AuthKit profile's agent answers hold (contract [PR28]; service/http/authkit.py),
for the OpenAPI document: documentation types only, as service/http/answers.py's. V1 and V2
answer in this nested shape at the main profile's paths on a tenant whose `V06_PROFILE` is
`authkit`, so their documents (service/http/v06_docs.py) list these beside main's; the
complete route (service/http/authkit_docs.py) answers only these."""

from __future__ import annotations

from typing import Literal

import msgspec

from service.http.answers import Doc, Strings, Timestamp


class RefreshToken(Doc, frozen=True):
    """Opaque (`rt_…`), 30 days, good for one refresh: the next one replaces it."""

    value: str
    expires_at: Timestamp


class NestedIdentity(Doc, frozen=True):
    """The service-signed assertion to exchange at the token endpoint, and its end."""

    assertion: str
    expires_at: Timestamp


class CompletedIdentity(NestedIdentity, frozen=True):
    """The claimed registration's assertion and its refresh token."""

    refresh_token: RefreshToken


class AttemptHandout(Doc, frozen=True):
    """Where the person goes (signing in first) to press Authorize and read the code to the
    agent; no code reaches the agent."""

    verification_uri: str
    expires_at: Timestamp


class ClaimHandles(Doc, frozen=True):
    """The claim token (shown once), its end and `url` (V2); `attempt` once one is open."""

    token: str
    expires_at: Timestamp
    url: str
    attempt: AttemptHandout | msgspec.UnsetType = msgspec.UNSET


class PhaseScopes(Doc, frozen=True):
    pre_claim: Strings
    post_claim: Strings


class PostClaimScopes(Doc, frozen=True):
    post_claim: Strings


class AnonymousNested(Doc, frozen=True):
    """V1 anonymous, AuthKit profile: an assertion at once, the claim handles (no attempt)."""

    id: str
    type: Literal["anonymous"]
    identity: NestedIdentity
    scopes: PhaseScopes
    claim: ClaimHandles


class ServiceAuthNested(Doc, frozen=True):
    """V1 service_auth, AuthKit profile: no assertion before the claim; `claim.attempt`."""

    id: str
    type: Literal["service_auth"]
    scopes: PhaseScopes
    claim: ClaimHandles


class AssertedNested(Doc, frozen=True):
    """V1 identity_assertion, AuthKit profile, a clean or new subject: a flat scope list."""

    id: str
    type: Literal["identity_assertion"]
    identity: NestedIdentity
    scopes: Strings


class Refreshed(Doc, frozen=True):
    """V1 refresh (AuthKit profile only): a fresh assertion and the next refresh token; the
    presented one is dead from now on."""

    id: str
    type: Literal["refresh"]
    identity: CompletedIdentity


class StepUpNested(Doc, frozen=True):
    """V1 identity_assertion, AuthKit profile, 401 `interaction_required`: the step-up's
    handles, nested; the account's owner presses Authorize at `claim.attempt`'s page and
    reads the code to the agent, which completes the claim."""

    error: Literal["interaction_required"]
    message: str
    error_description: str
    id: str
    type: Literal["identity_assertion"]
    scopes: PostClaimScopes
    claim: ClaimHandles


class AttemptOpenedNested(Doc, frozen=True):
    """V2, AuthKit profile: a new attempt (the previous one's link and code are dead)."""

    id: str
    type: Literal["service_auth"]
    attempt: AttemptHandout


class ClaimCompleted(Doc, frozen=True):
    """The claim, once: the registration's id and what the agent holds from now on."""

    id: str
    status: Literal["claimed"]
    identity: CompletedIdentity
