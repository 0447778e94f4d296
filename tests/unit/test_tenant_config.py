"""The default tenant's configuration from AUTHLEDGER_* variables, and its metadata documents."""

from __future__ import annotations

import pytest

from service.settings import ConfigError, Settings
from service.tenancy.config import ID_JAG, REVOKED_EVENT, TenantConfig

GOOD = {
    "AUTHLEDGER_DATABASE_URL": "postgresql://app@db.internal:5432/authledger",
    "AUTHLEDGER_NATS_URL": "nats://nats.internal:4222",
    "AUTHLEDGER_ADMIN_TOKEN": "a" * 24,
    "AUTHLEDGER_SECRET_KEY": "s" * 40,
    "AUTHLEDGER_PUBLIC_URL": "https://auth.example.com/",
}


def tenant(**variables: str) -> TenantConfig:
    env = {**GOOD, **{f"AUTHLEDGER_{name}": value for name, value in variables.items()}}
    return TenantConfig.from_settings(Settings.from_env(env, "serve"))


def test_defaults_follow_the_reference_and_spec() -> None:
    """With nothing optional set, the tenant offers every flow with the spec's numbers."""
    t = tenant()
    assert (t.tenant_id, t.issuer, t.resource) == (
        "default",
        "https://auth.example.com",
        "https://auth.example.com/api/",
    )
    assert (t.resource_name, t.resource_logo_uri) == ("authledger", None)
    assert t.flows == ("anonymous", "verified_email", "id_jag")
    assert t.identity_types_supported == ("anonymous", "identity_assertion")
    assert t.assertion_types_supported == (ID_JAG, "verified_email")
    assert t.anonymous_credential_types == ("api_key",)
    assert t.identity_credential_types == ("access_token", "api_key")
    assert (t.registration_ttl, t.otp_ttl, t.access_token_ttl, t.claim_link_ttl) == (
        86_400,
        600,
        3_600,
        600,
    )
    assert (t.otp_max_misses, t.otp_max_mints, t.claim_max_misses) == (5, 10, 20)
    assert (t.contact_url, t.terms_url, t.privacy_url) == (None, None, None)
    assert t.claimable


def test_urls_are_absolute_and_derived_from_the_issuer() -> None:
    """Every advertised URL is absolute under the issuer; the PRM URL is path-inserted."""
    t = tenant()
    assert t.register_uri == "https://auth.example.com/agent/auth"
    assert t.claim_uri == "https://auth.example.com/agent/auth/claim"
    assert t.claim_complete_uri == "https://auth.example.com/agent/auth/claim/complete"
    assert t.revocation_uri == "https://auth.example.com/agent/auth/revoke"
    assert t.skill_url == "https://auth.example.com/auth.md"
    assert t.jwks_uri == "https://auth.example.com/.well-known/jwks.json"
    assert t.introspection_endpoint == "https://auth.example.com/oauth2/introspect"
    assert t.resource_path == "/api/"
    assert (
        t.resource_metadata_url
        == "https://auth.example.com/.well-known/oauth-protected-resource/api/"
    )
    assert t.root_resource_metadata_url == (
        "https://auth.example.com/.well-known/oauth-protected-resource"
    )


def test_resource_url_is_kept_exactly_and_drives_the_metadata_url() -> None:
    """AUTHLEDGER_RESOURCE_URL is used verbatim; a root resource has no path to insert."""
    own = tenant(RESOURCE_URL="https://api.example.com/v2/")
    assert own.resource == "https://api.example.com/v2/"
    assert own.resource_metadata_url == (
        "https://api.example.com/.well-known/oauth-protected-resource/v2/"
    )
    root = tenant(RESOURCE_URL="https://api.example.com")
    assert root.resource_path == ""
    assert (
        root.resource_metadata_url == "https://api.example.com/.well-known/oauth-protected-resource"
    )


def test_a_disabled_anonymous_flow_disappears_from_the_tenant() -> None:
    """Without anonymous, no anonymous identity type and no anonymous credential types."""
    t = tenant(FLOWS="verified_email id_jag")
    assert t.flows == ("verified_email", "id_jag")
    assert t.identity_types_supported == ("identity_assertion",)
    assert t.anonymous_credential_types == ()
    assert not t.offers("anonymous")


def test_anonymous_only_has_no_identity_assertion() -> None:
    """Only anonymous: no assertion types and no identity credential types."""
    t = tenant(FLOWS="anonymous")
    assert t.identity_types_supported == ("anonymous",)
    assert t.assertion_types_supported == ()
    assert t.identity_credential_types == ()
    assert t.claimable


def test_id_jag_only_has_nothing_to_claim() -> None:
    """Only ID-JAG: one assertion type and no claim ceremony."""
    t = tenant(FLOWS="ID_JAG")
    assert t.identity_types_supported == ("identity_assertion",)
    assert t.assertion_types_supported == (ID_JAG,)
    assert not t.claimable


def test_flows_are_normalised_to_a_fixed_order() -> None:
    """Order and repetition in AUTHLEDGER_FLOWS do not matter."""
    assert tenant(FLOWS="id_jag anonymous id_jag").flows == ("anonymous", "id_jag")


@pytest.mark.parametrize(
    ("flows", "types", "expected"),
    [
        ("verified_email id_jag", "access_token", ("access_token",)),
        ("anonymous verified_email", "api_key", ("api_key",)),
        ("id_jag", "api_key access_token", ("access_token", "api_key")),
    ],
)
def test_credential_types_restrict_what_identity_assertions_may_request(
    flows: str, types: str, expected: tuple[str, ...]
) -> None:
    """AUTHLEDGER_CREDENTIAL_TYPES narrows the identity assertion credential types."""
    assert tenant(FLOWS=flows, CREDENTIAL_TYPES=types).identity_credential_types == expected


def test_optional_values_are_read() -> None:
    """Name, logo, lifetimes, limits and the operator's links come from their variables."""
    t = tenant(
        RESOURCE_NAME="Acme Files",
        RESOURCE_LOGO_URI="https://cdn.example.com/logo.png",
        CLAIM_LINK_TTL="900",
        OTP_MAX_MISSES="3",
        OTP_MAX_MINTS="4",
        CLAIM_MAX_MISSES="12",
        CONTACT_URL="mailto:security@example.com",
        TERMS_URL="https://example.com/terms",
        PRIVACY_URL="https://example.com/privacy?lang=en",
    )
    assert (t.resource_name, t.resource_logo_uri) == (
        "Acme Files",
        "https://cdn.example.com/logo.png",
    )
    assert (t.claim_link_ttl, t.otp_max_misses, t.otp_max_mints, t.claim_max_misses) == (
        900,
        3,
        4,
        12,
    )
    assert t.contact_url == "mailto:security@example.com"
    assert (t.terms_url, t.privacy_url) == (
        "https://example.com/terms",
        "https://example.com/privacy?lang=en",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLOWS", "anonymous magic_link"),
        ("CREDENTIAL_TYPES", "refresh_token"),
        ("RESOURCE_URL", "ftp://files.example.com/"),
        ("RESOURCE_URL", "https://api.example.com/v1/?tenant=a"),
        ("RESOURCE_URL", "https://api.example.com/{version}/"),
        ("RESOURCE_NAME", "Acme\tFiles"),
        ("RESOURCE_NAME", "x" * 101),
        ("RESOURCE_LOGO_URI", "logo.png"),
        ("CLAIM_LINK_TTL", "59"),
        ("OTP_MAX_MISSES", "0"),
        ("OTP_MAX_MINTS", "lots"),
        ("CLAIM_MAX_MISSES", "-1"),
        ("CONTACT_URL", "security at example.com"),
        ("TERMS_URL", "example.com/terms"),
        ("PRIVACY_URL", "javascript:alert(1)"),
    ],
)
def test_each_bad_value_names_its_variable(name: str, value: str) -> None:
    """A bad tenant variable stops start-up with one line starting with its name."""
    with pytest.raises(ConfigError) as caught:
        tenant(**{name: value})
    assert str(caught.value).startswith(f"AUTHLEDGER_{name}: ")
    assert "\n" not in str(caught.value)


def test_anonymous_needs_api_keys() -> None:
    """Anonymous start can only issue API keys, so removing them while it is on is an error."""
    with pytest.raises(ConfigError) as caught:
        tenant(CREDENTIAL_TYPES="access_token")
    assert str(caught.value).startswith("AUTHLEDGER_CREDENTIAL_TYPES: ")
    assert "AUTHLEDGER_FLOWS" in str(caught.value)


def test_protected_resource_metadata_has_the_rfc_9728_fields() -> None:
    """PRM holds exactly the contract's fields by default; optional ones appear when set."""
    assert tenant().protected_resource_metadata() == {
        "resource": "https://auth.example.com/api/",
        "resource_name": "authledger",
        "authorization_servers": ["https://auth.example.com"],
        "scopes_supported": ["api.read", "api.write"],
        "bearer_methods_supported": ["header"],
    }
    full = tenant(
        RESOURCE_LOGO_URI="https://cdn.example.com/logo.png",
        TERMS_URL="https://example.com/terms",
        PRIVACY_URL="https://example.com/privacy",
    ).protected_resource_metadata()
    assert full["resource_logo_uri"] == "https://cdn.example.com/logo.png"
    assert full["resource_tos_uri"] == "https://example.com/terms"
    assert full["resource_policy_uri"] == "https://example.com/privacy"


def test_authorization_server_metadata_matches_the_reference_table() -> None:
    """By default `agent_auth` holds the §3.3 reference values, plus the O13 fields outside."""
    document = tenant(SCOPES="api.read api.write files:read").authorization_server_metadata()
    assert document["issuer"] == "https://auth.example.com"
    assert document["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"
    assert document["introspection_endpoint"] == "https://auth.example.com/oauth2/introspect"
    assert document["resource"] == "https://auth.example.com/api/"
    assert document["authorization_servers"] == ["https://auth.example.com"]
    assert document["scopes_supported"] == ["api.read", "api.write", "files:read"]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["agent_auth"] == {
        "skill": "https://auth.example.com/auth.md",
        "register_uri": "https://auth.example.com/agent/auth",
        "claim_uri": "https://auth.example.com/agent/auth/claim",
        "revocation_uri": "https://auth.example.com/agent/auth/revoke",
        "identity_types_supported": ["anonymous", "identity_assertion"],
        "anonymous": {"credential_types_supported": ["api_key"]},
        "identity_assertion": {
            "assertion_types_supported": [ID_JAG, "verified_email"],
            "credential_types_supported": ["access_token", "api_key"],
        },
        "events_supported": [REVOKED_EVENT],
    }


def test_authorization_server_metadata_lists_only_enabled_methods() -> None:
    """A disabled flow or credential type is missing from `agent_auth`, blocks included."""
    no_anonymous = tenant(FLOWS="verified_email id_jag").authorization_server_metadata()
    assert no_anonymous["agent_auth"]["identity_types_supported"] == ["identity_assertion"]
    assert "anonymous" not in no_anonymous["agent_auth"]
    only_anonymous = tenant(FLOWS="anonymous").authorization_server_metadata()
    assert only_anonymous["agent_auth"]["identity_types_supported"] == ["anonymous"]
    assert "identity_assertion" not in only_anonymous["agent_auth"]
    email_tokens = tenant(FLOWS="verified_email", CREDENTIAL_TYPES="access_token")
    assert email_tokens.authorization_server_metadata()["agent_auth"]["identity_assertion"] == {
        "assertion_types_supported": ["verified_email"],
        "credential_types_supported": ["access_token"],
    }
