"""The default tenant's configuration from AUTHLEDGER_* variables, and its metadata documents."""

from __future__ import annotations

import pytest

from service.settings import ConfigError, Settings
from service.tenancy.config import (
    CLAIM_GRANT,
    ID_JAG,
    JWT_BEARER,
    REVOKED_EVENT,
    TenantConfig,
)

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
    assert t.flows == ("anonymous", "verified_email", "id_jag", "service_auth")
    assert t.doors == ("v1", "v06")  # both dialects (issue 14)
    assert t.identity_types_supported == ("anonymous", "identity_assertion", "service_auth")
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
    assert (t.v06_profile, t.assertion_ttl, t.claim_poll_interval) == ("main", 3_600, 5)
    assert (t.claim_deliveries, t.claim_delivery_window) == (3, 600)
    assert (t.sign_in, t.sign_in_link_ttl, t.session_ttl) == (("email",), 600, 86_400)


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
    assert tenant(FLOWS="service_auth ANONYMOUS").flows == ("anonymous", "service_auth")
    assert tenant(DOORS="v06 v1 v06").doors == ("v1", "v06")


def test_the_v06_settings_are_read() -> None:
    """The v0.6 door's per-tenant settings come from their variables."""
    t = tenant(
        DOORS="v06", V06_PROFILE="AuthKit", ASSERTION_TTL="7200", CLAIM_POLL_INTERVAL="10",
        CLAIM_DELIVERIES="1", CLAIM_DELIVERY_WINDOW="120", SIGN_IN="email", SIGN_IN_LINK_TTL="300",
        SESSION_TTL="3600",
    )  # fmt: skip
    assert (t.doors, t.v06_profile, t.assertion_ttl, t.claim_poll_interval) == (
        ("v06",), "authkit", 7_200, 10,
    )  # fmt: skip
    assert (t.claim_deliveries, t.claim_delivery_window) == (1, 120)
    assert (t.sign_in, t.sign_in_link_ttl, t.session_ttl) == (("email",), 300, 3_600)


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
        ("FLOWS", "service-auth"),
        ("DOORS", "v1 v2"),
        ("V06_PROFILE", "pr12"),
        ("ASSERTION_TTL", "59"),
        ("ASSERTION_TTL", "86401"),
        ("CLAIM_POLL_INTERVAL", "0"),
        ("CLAIM_POLL_INTERVAL", "61"),
        ("CLAIM_DELIVERIES", "0"),
        ("CLAIM_DELIVERY_WINDOW", "59"),
        ("SIGN_IN", "password"),
        ("SIGN_IN", "oidc"),  # no provider configured
        ("SIGN_IN_LINK_TTL", "3601"),
        ("SESSION_TTL", "299"),
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
    """At the v1 door `agent_auth` holds the §3.3 reference values, plus the O13 fields
    outside (both doors, the default: test_both_doors_publish_the_union_of_their_keys)."""
    document = tenant(
        SCOPES="api.read api.write files:read", DOORS="v1"
    ).authorization_server_metadata()
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


V06 = "https://auth.example.com"
MERGED_AGENT_AUTH = {
    "skill": f"{V06}/auth.md",
    "register_uri": f"{V06}/agent/auth",
    "claim_uri": f"{V06}/agent/auth/claim",
    "revocation_uri": f"{V06}/agent/auth/revoke",
    "identity_endpoint": f"{V06}/agent/identity",
    "claim_endpoint": f"{V06}/agent/identity/claim",
    "events_endpoint": f"{V06}/agent/event/notify",
    "identity_types_supported": ["anonymous", "identity_assertion", "service_auth"],
    "anonymous": {"credential_types_supported": ["api_key"]},
    "identity_assertion": {
        "assertion_types_supported": [ID_JAG, "verified_email"],
        "credential_types_supported": ["access_token", "api_key"],
    },
    "events_supported": [REVOKED_EVENT],
}


def test_both_doors_publish_the_union_of_their_keys() -> None:
    """O-O: every v1 key stays as it was; v0.6 adds its endpoints (RFC 8414 top level and in
    `agent_auth`), its grants, `service_auth` and no client authentication; the type lists
    merge, in the contract's order."""
    both = tenant().authorization_server_metadata()  # the default
    assert both == tenant(DOORS="v1 v06").authorization_server_metadata()
    v1_only = tenant(DOORS="v1").authorization_server_metadata()
    assert both == {
        **{k: v for k, v in v1_only.items() if k != "agent_auth"},
        "token_endpoint": f"{V06}/oauth2/token",
        "revocation_endpoint": f"{V06}/oauth2/revoke",
        "grant_types_supported": [JWT_BEARER, CLAIM_GRANT],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "agent_auth": MERGED_AGENT_AUTH,
    }
    for key, value in v1_only["agent_auth"].items():  # case 34: v1 agents find theirs
        if key != "identity_types_supported":
            assert both["agent_auth"][key] == value, key
    assert set(v1_only["agent_auth"]["identity_types_supported"]) < set(
        both["agent_auth"]["identity_types_supported"]
    )
    assert list(both)[-1] == "agent_auth"


def test_the_v06_door_alone_publishes_only_its_keys() -> None:
    """Without v1: no register/claim/revocation URIs, no credential types, no verified_email
    (a v1 assertion type); the ID-JAG URN only, as the contract's discovery has it."""
    document = tenant(DOORS="v06").authorization_server_metadata()
    agent_auth = document["agent_auth"]
    assert agent_auth == {
        "skill": f"{V06}/auth.md",
        "identity_endpoint": f"{V06}/agent/identity",
        "claim_endpoint": f"{V06}/agent/identity/claim",
        "events_endpoint": f"{V06}/agent/event/notify",
        "identity_types_supported": ["anonymous", "identity_assertion", "service_auth"],
        "identity_assertion": {"assertion_types_supported": [ID_JAG]},
        "events_supported": [REVOKED_EVENT],
    }
    assert document["grant_types_supported"] == [JWT_BEARER, CLAIM_GRANT]


@pytest.mark.parametrize(
    ("flows", "types", "assertions"),
    [
        ("anonymous", ["anonymous"], None),
        ("service_auth", ["service_auth"], None),
        ("id_jag", ["identity_assertion"], [ID_JAG]),
        ("verified_email service_auth", ["identity_assertion", "service_auth"], ["verified_email"]),
        ("anonymous verified_email id_jag", ["anonymous", "identity_assertion"],
         [ID_JAG, "verified_email"]),
    ],
)  # fmt: skip
def test_each_merged_part_appears_only_with_its_flow(
    flows: str, types: list[str], assertions: list[str] | None
) -> None:
    """A flow off is missing at both doors; an explicit flows list is kept as given (no
    `service_auth` unless listed); `anonymous` blocks only with the flow and the v1 door."""
    agent_auth = tenant(DOORS="v1 v06", FLOWS=flows).authorization_server_metadata()["agent_auth"]
    assert agent_auth["identity_types_supported"] == types
    block = agent_auth.get("identity_assertion")
    assert (block["assertion_types_supported"] if block else None) == assertions
    assert ("anonymous" in agent_auth) == ("anonymous" in flows.split())


def test_a_v06_door_with_none_of_its_flows_publishes_nothing_of_it() -> None:
    """Flows the v0.6 door does not serve (verified_email): the document is v1's alone."""
    only_email = tenant(FLOWS="verified_email", DOORS="v1 v06").authorization_server_metadata()
    assert only_email == tenant(FLOWS="verified_email").authorization_server_metadata()
    assert "token_endpoint" not in only_email


def test_the_authkit_profile_has_no_claim_grant() -> None:
    """AuthKit (the contract's PR28 shape) completes claims directly: jwt-bearer only."""
    document = tenant(DOORS="v06", V06_PROFILE="authkit").authorization_server_metadata()
    assert document["grant_types_supported"] == [JWT_BEARER]


def test_the_jwks_window_covers_the_longer_token() -> None:
    """Retired keys stay published for the longest-lived token signed with them."""
    assert tenant().longest_token_ttl == 3_600
    assert tenant(ASSERTION_TTL="7200").longest_token_ttl == 7_200
    assert tenant(ACCESS_TOKEN_TTL="9000", ASSERTION_TTL="600").longest_token_ttl == 9_000
