"""The default tenant's protocol configuration, and the discovery documents derived from it.

Built once from validated Settings; everything the agent sees in discovery and in the auth.md
(URLs, enabled flows, credential types, scopes, lifetimes, limits) comes from here, so the two
can never disagree.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from service.crypto.tokens import API_KEY_PREFIX, TEST_API_KEY_PREFIX
from service.settings import Settings

Flow = Literal["anonymous", "verified_email", "id_jag"]
CredentialType = Literal["access_token", "api_key"]
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
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
_ASSERTION_TYPES: tuple[tuple[Flow, str], ...] = (
    ("id_jag", ID_JAG),
    ("verified_email", "verified_email"),
)


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
    contact_url: str | None = None
    terms_url: str | None = None
    privacy_url: str | None = None
    api_key_prefix: str = API_KEY_PREFIX  # `sk_test_` under `authledger dev`

    @classmethod
    def from_settings(cls, settings: Settings, tenant_id: str = "default") -> TenantConfig:
        issuer = settings.public_url.rstrip("/")
        offered = settings.credential_types
        flows: tuple[Flow, ...] = tuple(
            f for f in ("anonymous", "verified_email", "id_jag") if f in settings.flows
        )
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
            contact_url=settings.contact_url,
            terms_url=settings.terms_url,
            privacy_url=settings.privacy_url,
            api_key_prefix=TEST_API_KEY_PREFIX if settings.mode == "dev" else API_KEY_PREFIX,
        )

    def offers(self, flow: Flow) -> bool:
        return flow in self.flows

    @property
    def claimable(self) -> bool:
        """Whether any enabled flow has a claim ceremony (anonymous, verified_email)."""
        return self.offers("anonymous") or self.offers("verified_email")

    @property
    def identity_types_supported(self) -> tuple[str, ...]:
        kinds = ("anonymous",) if self.offers("anonymous") else ()
        return kinds + (("identity_assertion",) if self.assertion_types_supported else ())

    @property
    def assertion_types_supported(self) -> tuple[str, ...]:
        return tuple(name for flow, name in _ASSERTION_TYPES if self.offers(flow))

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
        """AS metadata with `agent_auth` (§3.3, O13), listing only what is enabled."""
        agent_auth: dict[str, Any] = {
            "skill": self.skill_url,
            "register_uri": self.register_uri,
            "claim_uri": self.claim_uri,
            "revocation_uri": self.revocation_uri,
            "identity_types_supported": list(self.identity_types_supported),
        }
        if self.offers("anonymous"):
            agent_auth["anonymous"] = {
                "credential_types_supported": list(self.anonymous_credential_types)
            }
        if self.assertion_types_supported:
            agent_auth["identity_assertion"] = {
                "assertion_types_supported": list(self.assertion_types_supported),
                "credential_types_supported": list(self.identity_credential_types),
            }
        agent_auth["events_supported"] = list(self.events_supported)
        return {
            "issuer": self.issuer,
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": list(self.scopes_supported),
            "bearer_methods_supported": ["header"],
            "jwks_uri": self.jwks_uri,
            "introspection_endpoint": self.introspection_endpoint,
            "agent_auth": agent_auth,
        }
