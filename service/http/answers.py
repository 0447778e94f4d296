"""What the answers hold, for the OpenAPI document (service.http.openapi): documentation
types only. Each lists the fields an answer always has, with their types; an answer may grow
new fields later, so none forbids more. The handlers build their answers themselves, and
schemathesis (tests/fuzz) checks every answer against these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from subscriber.wire import Revocation

Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
Strings = list[str]


class Doc(msgspec.Struct, frozen=True):
    """An answer: these fields, maybe more."""


class ErrorBody(Doc, frozen=True):
    error: str
    message: str


class IdentityError(Doc, frozen=True):
    """A refusal at `/agent/identity` (V1): both texts, the same (O-Q)."""

    error: str
    message: str
    error_description: str


class OAuthError(Doc, frozen=True):
    """A refusal at `/oauth2/token` and `/oauth2/revoke` (V6, V8): RFC 6749 5.2's shape."""

    error: str
    error_description: str


class Health(Doc, frozen=True):
    status: Literal["ok"]


class Unready(Doc, frozen=True):
    """`/readyz` when not ready; the reasons only for the operator credential."""

    status: Literal["unavailable"]


class ResourceMetadata(Doc, frozen=True):
    resource: str
    resource_name: str
    authorization_servers: Strings
    scopes_supported: Strings
    bearer_methods_supported: Strings


class ServerMetadata(Doc, frozen=True):
    """The union of the open doors' keys (O-O); the v0.6 door adds the RFC 8414 ones."""

    issuer: str
    resource: str
    authorization_servers: Strings
    scopes_supported: Strings
    bearer_methods_supported: Strings
    jwks_uri: str
    introspection_endpoint: str
    agent_auth: dict[str, Any]
    token_endpoint: str | msgspec.UnsetType = msgspec.UNSET
    revocation_endpoint: str | msgspec.UnsetType = msgspec.UNSET
    grant_types_supported: Strings | msgspec.UnsetType = msgspec.UNSET
    token_endpoint_auth_methods_supported: Strings | msgspec.UnsetType = msgspec.UNSET
    revocation_endpoint_auth_methods_supported: Strings | msgspec.UnsetType = msgspec.UNSET


class KeySet(Doc, frozen=True):
    keys: list[dict[str, str]]


class AnonymousRegistered(Doc, frozen=True):
    """§5.1: the pre-claim key and the claim token."""

    registration_id: str
    registration_type: Literal["anonymous"]
    credential_type: str
    credential: str
    credential_expires: Timestamp | None
    scopes: Strings
    claim_url: str
    claim_token: str
    claim_token_expires: Timestamp
    post_claim_scopes: Strings


class EmailRegistered(Doc, frozen=True):
    """§5.2: no credential until the claim completes."""

    registration_id: str
    registration_type: Literal["email-verification"]
    claim_url: str
    claim_token: str
    claim_token_expires: Timestamp
    post_claim_scopes: Strings


class Delegated(Doc, frozen=True):
    """§5.3: an agent provider's ID-JAG; the credential at once."""

    registration_id: str
    registration_type: Literal["agent-provider"]
    credential_type: str
    credential: str
    credential_expires: Timestamp | None
    scopes: Strings


class AnonymousIdentity(Doc, frozen=True):
    """V1 anonymous: the service-signed assertion (no credential) and the claim token."""

    registration_id: str
    registration_type: Literal["anonymous"]
    identity_assertion: str
    assertion_expires: Timestamp
    pre_claim_scopes: Strings
    claim_url: str
    claim_token: str
    claim_token_expires: Timestamp
    post_claim_scopes: Strings


class TokenIssued(Doc, frozen=True):
    """V6 (RFC 6749 5.1): a bearer access token and its space-separated scopes."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class UserCodeHandout(Doc, frozen=True):
    """The v0.6 attempt as the agent gets it: the code it passes on to the person, where the
    person goes (sign-in first), and how often to poll the claim grant."""

    user_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
    expires_in: int
    verification_uri: str
    interval: int


class ServiceAuthIdentity(Doc, frozen=True):
    """V1 service_auth: the claim handles and the attempt; no assertion before the claim."""

    registration_id: str
    registration_type: Literal["service_auth"]
    claim_url: str
    claim_token: str
    claim_token_expires: Timestamp
    post_claim_scopes: Strings
    claim: UserCodeHandout


class ClaimAttemptOpened(Doc, frozen=True):
    """V2: a new attempt (the previous one's link and code are dead)."""

    registration_id: str
    claim_attempt_id: str
    status: Literal["initiated"]
    expires_at: Timestamp
    claim_attempt: UserCodeHandout


class ClaimGrantIssued(TokenIssued, frozen=True):
    """V7's 200: the token answer plus an assertion for later exchanges (jwt-bearer)."""

    identity_assertion: str
    assertion_expires: Timestamp


class ClaimStarted(Doc, frozen=True):
    registration_id: str
    claim_attempt_id: str
    status: Literal["initiated"]
    expires_at: Timestamp


class Challenge(Doc, frozen=True):
    type: Literal["otp"]
    challenge: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
    expires_at: Timestamp


class Claimed(Doc, frozen=True):
    """E8; the verified_email flow adds its credential (sent once)."""

    registration_id: str
    status: Literal["claimed"]
    credential_type: str | msgspec.UnsetType = msgspec.UNSET
    credential: str | msgspec.UnsetType = msgspec.UNSET
    credential_expires: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    scopes: Strings | msgspec.UnsetType = msgspec.UNSET


class Revoked(Doc, frozen=True):
    revoked: int


class Me(Doc, frozen=True):
    credential_id: str
    credential_type: str
    scopes: Strings
    registration_id: str | None
    user_id: str | None
    claim_state: str | None
    expires_at: Timestamp | None


class Introspection(Doc, frozen=True):
    """RFC 7662: only `active` when the token is not live."""

    active: bool
    scope: str | msgspec.UnsetType = msgspec.UNSET
    client_id: str | msgspec.UnsetType = msgspec.UNSET
    sub: str | msgspec.UnsetType = msgspec.UNSET
    token_type: str | msgspec.UnsetType = msgspec.UNSET
    iat: int | msgspec.UnsetType = msgspec.UNSET
    exp: int | msgspec.UnsetType = msgspec.UNSET
    iss: str | msgspec.UnsetType = msgspec.UNSET
    aud: str | msgspec.UnsetType = msgspec.UNSET


class TrustEntry(Doc, frozen=True):
    issuer: str
    jwks_uri: str | None
    algorithms: Strings
    display_name: str | None
    link_by_verified_email: bool
    client_ids: Strings
    required_amr: Strings


class TrustChange(TrustEntry, frozen=True):
    outcome: Literal["trusted", "updated", "unchanged"]


class ListedIssuer(TrustEntry, frozen=True):
    version: int
    updated_at: Timestamp


class TrustList(Doc, frozen=True):
    trusted_issuers: list[ListedIssuer]


class Distrusted(Doc, frozen=True):
    issuer: str
    outcome: Literal["removed"]


class OperatorRevoked(Doc, frozen=True):
    """The target named (one of credential, registration, user, issuer) and what ended."""

    revoked: int
    credential_ids: Strings
    registration_ids: Strings  # the v0.6 registrations it ended (O-R)
    credential: str | msgspec.UnsetType = msgspec.UNSET
    registration: str | msgspec.UnsetType = msgspec.UNSET
    user: str | msgspec.UnsetType = msgspec.UNSET
    issuer: str | msgspec.UnsetType = msgspec.UNSET


class Erased(Doc, frozen=True):
    users: Strings
    registrations: Strings  # erased as a whole
    attempts: Strings  # claim attempts whose own keys were destroyed (security issue 12.4)
    sign_in_links: Strings  # the v0.6 pages' sign-in links: deleted, their keys destroyed
    revoked: Strings


class RevocationEntry(Revocation, Doc, frozen=True, kw_only=True):
    """An entry of the authoritative list: the claims of the feed's message (the wire format,
    `subscriber.wire.Revocation`), the optional ones always present (null when absent, as
    `to_json` gives them), and `signed`, the message itself."""

    jti: str | None
    registration_id: str | None
    user_id: str | None
    signed: str


class RevocationPage(Doc, frozen=True):
    tenant: str
    after: int
    through: int
    head: int
    more: bool
    revocations: list[RevocationEntry]


class Retrying(Doc, frozen=True):
    position: int
    attempts: int
    since: Timestamp | None
    next_attempt_at: Timestamp | None


class DeadLetter(Doc, frozen=True):
    position: int | None
    attempts: int
    cause: str | None
    error: str | None
    at: Timestamp | None


class Subscription(Doc, frozen=True):
    subscription_id: str
    url: str
    audience: str
    has_secret: bool
    event_types: Strings
    reasons: Strings
    status: str
    cursor: int
    next_position: int | None
    retrying: Retrying | None
    dead_letter: DeadLetter | None
    delivered: int
    failed_attempts: int
    last_delivered_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status: int | None
    last_error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    version: int


class Subscriptions(Doc, frozen=True):
    subscriptions: list[Subscription]


class IndexLink(Doc, frozen=True):
    rel: str
    title: str
    href: str


class Index(Doc, frozen=True):
    """`GET /` as JSON: where to start."""

    service: str
    links: list[IndexLink]


PAGE: dict[str, Any] = {"type": "string", "description": "an HTML page (no scripts)"}
MARKDOWN_TEXT: dict[str, Any] = {"type": "string", "description": "Markdown"}
PROMETHEUS_TEXT: dict[str, Any] = {
    "type": "string",
    "description": "Prometheus text exposition format",
}
COMPACT_JWT: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$",
    "description": "a logout token (compact JWS, spec §8)",
}


class AuditTimeline(Doc, frozen=True):
    subject: dict[str, Any]
    bound: dict[str, Any]
    entries: list[dict[str, Any]]
    next_after: int | None


class ChainReport(Doc, frozen=True):
    ok: bool  # no break found
    verdict: str  # verified | unvouched (holds, but not against pinned, published anchors) | broken
    head: int
    checked: int
    first_break: dict[str, Any] | None
    problems: list[dict[str, Any]]
    published: dict[str, Any] | None  # the newest checkpoint published off the database
    not_vouched: list[str]  # why it cannot vouch (empty when verified)


class AssertedIdentity(Doc, frozen=True):
    """V1 identity_assertion, a clean or just-in-time subject: its deterministic id and a
    service-signed assertion for it (no credential)."""

    registration_id: str
    registration_type: Literal["identity_assertion"]
    identity_assertion: str
    assertion_expires: Timestamp
    scopes: Strings


class StepUpCeremony(Doc, frozen=True):
    """The ceremony's fields of a step-up: the code for the agent to pass on to the person,
    who signs in at `verification_uri` and types it."""

    user_code: str
    expires_in: int
    verification_uri: str
    interval: int


class StepUpRequired(Doc, frozen=True):
    """V1 identity_assertion, 401: `interaction_required` (the ID-JAG's address matched an
    account; its owner must finish the ceremony) with the step-up's handles, or
    `login_required` (`auth_time` not fresh) with `max_age`. Both with an `AgentAuth`
    challenge in `WWW-Authenticate`."""

    error: Literal["interaction_required", "login_required"]
    message: str
    error_description: str
    registration_id: str | msgspec.UnsetType = msgspec.UNSET
    registration_type: Literal["identity_assertion"] | msgspec.UnsetType = msgspec.UNSET
    claim_url: str | msgspec.UnsetType = msgspec.UNSET
    claim_token: str | msgspec.UnsetType = msgspec.UNSET
    claim_token_expires: Timestamp | msgspec.UnsetType = msgspec.UNSET
    post_claim_scopes: Strings | msgspec.UnsetType = msgspec.UNSET
    claim: StepUpCeremony | msgspec.UnsetType = msgspec.UNSET
    max_age: int | msgspec.UnsetType = msgspec.UNSET
