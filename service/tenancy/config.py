"""The default tenant's protocol configuration, and the discovery documents derived from it.

Built once from validated Settings; everything the agent sees in discovery and in the auth.md
(URLs, enabled flows, credential types, scopes, lifetimes, limits) comes from here, so the two
can never disagree.

Two doors lead to the same ledger: `v1` (`/agent/auth`, auth.md 0.1.0) and `v06`
(`/agent/identity`, 0.6.0; docs/design/v06-dialect.md). The AS metadata is the union of what
each open door publishes (O-O): a key appears only when its door, and its flow, are on.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from service.crypto.tokens import API_KEY_PREFIX, TEST_API_KEY_PREFIX
from service.settings import Settings

Flow = Literal["anonymous", "verified_email", "id_jag", "service_auth"]
CredentialType = Literal["access_token", "api_key"]
Door = Literal["v1", "v06"]
V06Profile = Literal["main", "authkit"]
SignIn = Literal["email", "oidc"]
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523
CLAIM_GRANT = "urn:workos:agent-auth:grant-type:claim"  # V7, polled like RFC 8628
REVOKED_EVENT = "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked"
PRM_PATH = "/.well-known/oauth-protected-resource"
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTH_MD_PATH = "/auth.md"
REGISTER_PATH = "/agent/auth"
CLAIM_PATH = "/agent/auth/claim"
REVOKE_PATH = "/agent/auth/revoke"
JWKS_PATH = "/.well-known/jwks.json"
INTROSPECT_PATH = "/oauth2/introspect"
ME_PATH = "/api/me"  # the sample protected resource (E10)
# The v0.6 door's agent-facing paths (V1, V2, V6/V7, V8, V9).
IDENTITY_PATH = "/agent/identity"
IDENTITY_CLAIM_PATH = "/agent/identity/claim"
IDENTITY_COMPLETE_PATH = "/agent/identity/claim/complete"  # the AuthKit profile's
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path, not a secret)
TOKEN_REVOKE_PATH = "/oauth2/revoke"  # noqa: S105
EVENTS_PATH = "/agent/event/notify"
# (flow, assertion type, the doors that accept it)
_ASSERTION_TYPES: tuple[tuple[Flow, str, tuple[Door, ...]], ...] = (
    ("id_jag", ID_JAG, ("v1", "v06")),
    ("verified_email", "verified_email", ("v1",)),
)
# (flow, identity type, the doors that offer it)
_IDENTITY_TYPES: tuple[tuple[Flow, str, tuple[Door, ...]], ...] = (
    ("anonymous", "anonymous", ("v1", "v06")),
    ("service_auth", "service_auth", ("v06",)),
)
_V06_FLOWS: tuple[Flow, ...] = ("anonymous", "id_jag", "service_auth")


class TenantConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What one tenant offers agents; `from_settings` builds the default tenant."""

    tenant_id: str
    issuer: str  # no trailing slash (O1); the ID-JAG `aud`
    resource: str  # the API's resource identifier (RFC 9728), kept exactly
    resource_name: str
    resource_logo_uri: str | None = None
    scopes_supported: tuple[str, ...]
    pre_claim_scopes: tuple[str, ...]
    post_claim_scopes: tuple[str, ...]
    flows: tuple[Flow, ...]
    anonymous_credential_types: tuple[CredentialType, ...]
    identity_credential_types: tuple[CredentialType, ...]
    registration_ttl: int
    otp_ttl: int
    access_token_ttl: int
    claim_link_ttl: int
    otp_max_misses: int  # wrong codes before one code is voided (§6.4)
    otp_max_mints: int  # codes per claim attempt
    claim_max_misses: int  # wrong codes before the registration expires
    doors: tuple[Door, ...] = ("v1", "v06")
    v06_profile: V06Profile = "main"
    assertion_ttl: int = 3_600  # the service-signed identity assertion (v0.6)
    claim_poll_interval: int = 5  # V7's `interval`
    claim_deliveries: int = 3  # O-E: credentials a claimed claim token may still fetch,
    claim_delivery_window: int = 600  # within so many seconds of the claim
    sign_in: tuple[SignIn, ...] = ("email",)
    sign_in_link_ttl: int = 600
    session_ttl: int = 86_400
    contact_url: str | None = None
    terms_url: str | None = None
    privacy_url: str | None = None
    api_key_prefix: str = API_KEY_PREFIX  # `sk_test_` under `authledger dev`

    @classmethod
    def from_settings(cls, settings: Settings, tenant_id: str = "default") -> TenantConfig:
        issuer = settings.public_url.rstrip("/")
        offered = settings.credential_types
        flows: tuple[Flow, ...] = tuple(
            f
            for f in ("anonymous", "verified_email", "id_jag", "service_auth")
            if f in settings.flows
        )
        doors: tuple[Door, ...] = tuple(d for d in ("v1", "v06") if d in settings.doors)
        sign_in: tuple[SignIn, ...] = tuple(m for m in ("email", "oidc") if m in settings.sign_in)
        anonymous: tuple[CredentialType, ...] = ("api_key",) if "api_key" in offered else ()
        identity: tuple[CredentialType, ...] = tuple(
            t for t in ("access_token", "api_key") if t in offered
        )
        return cls(
            tenant_id=tenant_id,
            issuer=issuer,
            resource=settings.resource_url or f"{issuer}/api/",
            resource_name=settings.resource_name,
            resource_logo_uri=settings.resource_logo_uri,
            scopes_supported=settings.scopes,
            pre_claim_scopes=settings.pre_claim_scopes,
            post_claim_scopes=settings.post_claim_scopes,
            flows=flows,
            anonymous_credential_types=anonymous if "anonymous" in flows else (),
            identity_credential_types=identity if set(flows) - {"anonymous"} else (),
            registration_ttl=settings.registration_ttl,
            otp_ttl=settings.otp_ttl,
            access_token_ttl=settings.access_token_ttl,
            claim_link_ttl=settings.claim_link_ttl,
            otp_max_misses=settings.otp_max_misses,
            otp_max_mints=settings.otp_max_mints,
            claim_max_misses=settings.claim_max_misses,
            doors=doors,
            v06_profile=settings.v06_profile,
            assertion_ttl=settings.assertion_ttl,
            claim_poll_interval=settings.claim_poll_interval,
            claim_deliveries=settings.claim_deliveries,
            claim_delivery_window=settings.claim_delivery_window,
            sign_in=sign_in,
            sign_in_link_ttl=settings.sign_in_link_ttl,
            session_ttl=settings.session_ttl,
            contact_url=settings.contact_url,
            terms_url=settings.terms_url,
            privacy_url=settings.privacy_url,
            api_key_prefix=TEST_API_KEY_PREFIX if settings.mode == "dev" else API_KEY_PREFIX,
        )

    def offers(self, flow: Flow) -> bool:
        return flow in self.flows

    def opens(self, door: Door) -> bool:
        """Whether the door's routes answer (and its discovery keys are published)."""
        return door in self.doors

    @property
    def claimable(self) -> bool:
        """Whether any enabled flow has a v1 claim ceremony (anonymous, verified_email)."""
        return self.offers("anonymous") or self.offers("verified_email")

    @property
    def v06_offered(self) -> bool:
        """The v0.6 door is open and offers at least one of its flows."""
        return self.opens("v06") and any(self.offers(flow) for flow in _V06_FLOWS)

    def _on(self, flow: Flow, doors: tuple[Door, ...]) -> bool:
        return self.offers(flow) and any(self.opens(door) for door in doors)

    @property
    def identity_types_supported(self) -> tuple[str, ...]:
        """The union over the open doors (O-O): anonymous, identity_assertion, service_auth."""
        kinds = [name for flow, name, doors in _IDENTITY_TYPES if self._on(flow, doors)]
        if self.assertion_types_supported:
            kinds.insert(1 if "anonymous" in kinds else 0, "identity_assertion")
        return tuple(kinds)

    @property
    def assertion_types_supported(self) -> tuple[str, ...]:
        """The union over the open doors: the ID-JAG URN at either, verified_email at v1."""
        return tuple(name for flow, name, doors in _ASSERTION_TYPES if self._on(flow, doors))

    @property
    def grant_types_supported(self) -> tuple[str, ...]:
        """The v0.6 token endpoint's grants; the AuthKit profile has no claim grant."""
        if not self.v06_offered:
            return ()
        return (JWT_BEARER,) if self.v06_profile == "authkit" else (JWT_BEARER, CLAIM_GRANT)

    @property
    def longest_token_ttl(self) -> int:
        """The longest any token this tenant signs lives (access tokens, and at the v0.6 door
        identity assertions): how long a retired key stays in the JWKS, plus the skew."""
        return max(self.access_token_ttl, self.assertion_ttl)

    @property
    def resource_path(self) -> str:
        """The resource's path, inserted after the well-known prefix (RFC 9728 §3.1)."""
        path = urlsplit(self.resource).path
        return "" if path in ("", "/") else path

    @property
    def resource_metadata_url(self) -> str:
        """The PRM URL for the 401 challenge: path-inserted, so `resource` matches (O14)."""
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}{PRM_PATH}{self.resource_path}"

    @property
    def root_resource_metadata_url(self) -> str:
        return self.issuer + PRM_PATH

    @property
    def as_metadata_url(self) -> str:
        return self.issuer + AS_METADATA_PATH

    @property
    def skill_url(self) -> str:
        return self.issuer + AUTH_MD_PATH

    @property
    def register_uri(self) -> str:
        return self.issuer + REGISTER_PATH

    @property
    def claim_uri(self) -> str:
        return self.issuer + CLAIM_PATH

    @property
    def claim_complete_uri(self) -> str:
        return self.claim_uri + "/complete"

    @property
    def revocation_uri(self) -> str:
        return self.issuer + REVOKE_PATH

    @property
    def jwks_uri(self) -> str:
        return self.issuer + JWKS_PATH

    @property
    def identity_endpoint(self) -> str:
        return self.issuer + IDENTITY_PATH

    @property
    def claim_endpoint(self) -> str:
        return self.issuer + IDENTITY_CLAIM_PATH

    @property
    def token_endpoint(self) -> str:
        return self.issuer + TOKEN_PATH

    @property
    def revocation_endpoint(self) -> str:
        return self.issuer + TOKEN_REVOKE_PATH

    @property
    def events_endpoint(self) -> str:
        return self.issuer + EVENTS_PATH

    @property
    def introspection_endpoint(self) -> str:
        return self.issuer + INTROSPECT_PATH

    @property
    def events_supported(self) -> tuple[str, ...]:
        return (REVOKED_EVENT,)

    def protected_resource_metadata(self) -> dict[str, Any]:
        """RFC 9728 metadata (§3.2); optional fields only when configured."""
        document: dict[str, Any] = {"resource": self.resource, "resource_name": self.resource_name}
        if self.resource_logo_uri:
            document["resource_logo_uri"] = self.resource_logo_uri
        document |= {
            "authorization_servers": [self.issuer],
            "scopes_supported": list(self.scopes_supported),
            "bearer_methods_supported": ["header"],
        }
        if self.privacy_url:
            document["resource_policy_uri"] = self.privacy_url
        if self.terms_url:
            document["resource_tos_uri"] = self.terms_url
        return document

    def authorization_server_metadata(self) -> dict[str, Any]:
        """AS metadata with `agent_auth` (§3.3, O13), listing only what is enabled: the union
        of the open doors' keys (O-O), no name used by both with two meanings. v1 adds
        `register_uri`, `claim_uri`, `revocation_uri` and the credential types; v0.6 adds the
        token and revocation endpoints with their grants (top level, RFC 8414) and
        `identity_endpoint`, `claim_endpoint`, `events_endpoint`. The type lists merge."""
        v1, v06 = self.opens("v1"), self.v06_offered
        agent_auth: dict[str, Any] = {"skill": self.skill_url}
        if v1:
            agent_auth |= {
                "register_uri": self.register_uri,
                "claim_uri": self.claim_uri,
                "revocation_uri": self.revocation_uri,
            }
        if v06:
            agent_auth |= {
                "identity_endpoint": self.identity_endpoint,
                "claim_endpoint": self.claim_endpoint,
                "events_endpoint": self.events_endpoint,
            }
        agent_auth["identity_types_supported"] = list(self.identity_types_supported)
        if v1 and self.offers("anonymous"):
            agent_auth["anonymous"] = {
                "credential_types_supported": list(self.anonymous_credential_types)
            }
        if self.assertion_types_supported:
            block: dict[str, Any] = {
                "assertion_types_supported": list(self.assertion_types_supported)
            }
            if v1:
                block["credential_types_supported"] = list(self.identity_credential_types)
            agent_auth["identity_assertion"] = block
        agent_auth["events_supported"] = list(self.events_supported)
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": list(self.scopes_supported),
            "bearer_methods_supported": ["header"],
            "jwks_uri": self.jwks_uri,
            "introspection_endpoint": self.introspection_endpoint,
        }
        if v06:
            # RFC 8414's default for both would be client_secret_basic: no client authenticates
            document |= {
                "token_endpoint": self.token_endpoint,
                "revocation_endpoint": self.revocation_endpoint,
                "grant_types_supported": list(self.grant_types_supported),
                "token_endpoint_auth_methods_supported": ["none"],
                "revocation_endpoint_auth_methods_supported": ["none"],
            }
        return document | {"agent_auth": agent_auth}
