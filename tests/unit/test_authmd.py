"""The generated auth.md: the enabled methods only, the real URLs, every error code, in order."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from service.http.authmd import render_auth_md
from service.settings import Settings
from service.tenancy.config import ID_JAG, TenantConfig

# spec §9 (both `*_not_enabled` codes spelled out), with their HTTP status; + O11.
SPEC_ERRORS = {
    "invalid_request": 400,
    "invalid_issuer": 400,
    "invalid_signature": 400,
    "expired": 400,
    "invalid_audience": 400,
    "replay_detected": 400,
    "missing_verified_email": 400,
    "invalid_client_id": 400,
    "unsupported_credential_type": 400,
    "insufficient_user_authentication": 400,
    "anonymous_not_enabled": 400,
    "verified_email_not_enabled": 400,
    "rate_limited": 429,
    "invalid_claim_token": 401,
    "claimed_or_in_flight": 409,
    "claim_expired": 410,
    "claim_superseded": 410,
    "claim_completed": 409,
    "otp_not_generated": 400,
    "otp_expired": 410,
    "otp_invalid": 401,
    "previously_claimed": 409,
    "unauthorized": 401,
    "insufficient_scope": 403,
    "internal_error": 500,
}
STEPS = [
    "# ",
    "## Step 1: Discover",
    "### 1a.",
    "### 1b.",
    "## Step 2: Pick a method",
    "## Step 3: Register",
    "## Step 4: Claim",
    "### 4a.",
    "### 4b.",
    "### 4c.",
    "## Step 5: Use",
    "## Errors",
    "## Revocation",
]


def tenant(**changes: Any) -> TenantConfig:
    """A tenant with the v1 door alone: this file reads the v1 walkthrough (the v0.6 part is
    tests/unit/test_authmd_v06.py's)."""
    settings = Settings(database_url="", nats_url="", public_url="https://auth.example.com")
    changes.setdefault("doors", ("v1",))
    return msgspec.structs.replace(TenantConfig.from_settings(settings), **changes)


def section(document: str, start: str, end: str) -> str:
    return document[document.index(start) : document.index(end)]


def json_blocks(document: str) -> list[object]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", document, re.S)]


def test_sections_come_in_the_protocol_order() -> None:
    """Preamble, Steps 1 to 5 with their sub-steps, then Errors and Revocation, in order."""
    document = render_auth_md(tenant())
    positions = [document.index(heading) for heading in STEPS]
    assert positions == sorted(positions)
    assert document.startswith("# authledger")


def test_every_error_code_appears_with_its_status() -> None:
    """The error table lists each §9 code once, with the HTTP status the spec gives it."""
    document = render_auth_md(tenant())
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", document, re.M)
    assert {code: int(status) for code, status in rows} == SPEC_ERRORS
    assert len(rows) == len(SPEC_ERRORS)
    retry = section(document, "Retry policy", "## Revocation")
    for rule in ("`5xx`", "`4xx`", "`401`", "`429`", "Retry-After"):
        assert rule in retry


def test_real_urls_scopes_and_lifetimes_appear() -> None:
    """The document carries the configured URLs, scopes, lifetimes and limits, not placeholders."""
    t = tenant(
        resource_name="Acme Files",
        scopes_supported=("files:read", "files:write"),
        pre_claim_scopes=("files:read",),
        post_claim_scopes=("files:read", "files:write"),
        registration_ttl=7_200,
        otp_ttl=120,
        access_token_ttl=900,
        claim_link_ttl=300,
        otp_max_misses=3,
    )
    document = render_auth_md(t)
    assert document.startswith("# Acme Files")
    header = 'WWW-Authenticate: Bearer resource_metadata="https://auth.example.com/.well-known/oauth-protected-resource/api/"'
    assert header in document
    for url in (
        "https://auth.example.com/api/",
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/agent/auth",
        "https://auth.example.com/agent/auth/claim",
        "https://auth.example.com/agent/auth/claim/complete",
        "https://auth.example.com/agent/auth/revoke",
    ):
        assert url in document
    assert "`files:read`, `files:write`" in document
    assert "lives 7200 s" in document
    assert "a code lives 120 s" in document
    assert "expires 900 s after issue" in document
    assert "link works 300 s" in document
    assert "3 wrong tries void a code" in document


def test_embedded_metadata_and_examples_are_valid_json_from_the_config() -> None:
    """Every JSON block parses; 1a and 1b show exactly the documents the service serves."""
    t = tenant()
    blocks = json_blocks(render_auth_md(t))
    assert blocks[0] == t.protected_resource_metadata()
    assert blocks[1] == t.authorization_server_metadata()
    requests = [b for b in blocks if isinstance(b, dict) and "requested_credential_type" in b]
    assert [r["type"] for r in requests] == ["identity_assertion"] * 2 + ["anonymous"]


def test_default_document_offers_all_three_methods() -> None:
    """With every flow on, Step 2 lists all three methods and Step 3 has an example for each."""
    document = render_auth_md(tenant())
    pick = section(document, "## Step 2", "## Step 3")
    assert re.findall(r"^(\d)\. ", pick, re.M) == ["1", "2", "3"]
    for method in ("**agent provider (ID-JAG)**", "**verified email**", "**anonymous start**"):
        assert method in pick
    for heading in ("### Agent provider (ID-JAG)", "### Verified email", "### Anonymous start"):
        assert heading in document


def test_disabled_anonymous_is_not_offered() -> None:
    """Without anonymous: no anonymous method, example, trigger step or metadata block."""
    document = render_auth_md(
        tenant(flows=("verified_email", "id_jag"), anonymous_credential_types=())
    )
    steps = section(document, "## Step 2", "## Errors")
    assert "anonymous" not in steps.lower()
    assert '"type": "anonymous"' not in document
    assert "### 4a." not in document
    assert "Methods offered: agent provider (ID-JAG), verified email\n" in document
    pick = section(document, "## Step 2", "## Step 3")
    assert re.findall(r"^(\d)\. ", pick, re.M) == ["1", "2"]
    assert "### 4b." in document


def test_disabled_id_jag_is_not_offered() -> None:
    """Without ID-JAG: no ID-JAG method or assertion type, no provider revocation."""
    document = render_auth_md(tenant(flows=("anonymous", "verified_email")))
    assert ID_JAG not in document
    assert "### Agent provider" not in document
    assert "ID-JAG" not in section(document, "## Step 2", "## Step 4")
    assert "logout token" not in document
    assert "Operators of authledger can revoke any credential" in document


def test_disabled_verified_email_is_not_offered() -> None:
    """Without verified email: no email registration example and no email success shape."""
    document = render_auth_md(tenant(flows=("anonymous", "id_jag")))
    assert '"assertion_type": "verified_email"' not in document
    assert "email-verification" not in document
    assert "**verified email**" not in document
    assert "### Verified email" not in document
    assert '"status": "claimed"' in document  # the anonymous success shape stays


def test_id_jag_only_has_no_claim_ceremony() -> None:
    """With only ID-JAG, Step 4 says there is nothing to claim and no claim token appears."""
    t = tenant(flows=("id_jag",), anonymous_credential_types=())
    document = render_auth_md(t)
    assert "Not needed" in section(document, "## Step 4", "## Step 5")
    assert '"claim_token"' not in document
    assert "### 4a." not in document
    assert "### 4c." not in document


def test_both_claim_success_shapes_are_shown() -> None:
    """4c shows the anonymous re-scope shape and the verified_email credential shape."""
    blocks = json_blocks(section(render_auth_md(tenant()), "### 4c.", "## Step 5"))
    claimed = [b for b in blocks if isinstance(b, dict) and b.get("status") == "claimed"]
    assert {"registration_id", "status"} == set(claimed[0])
    assert {"credential_type", "credential", "credential_expires", "scopes"} <= set(claimed[1])


@pytest.mark.parametrize(
    ("types", "present", "absent"),
    [(("api_key",), "`api_key`", "access_token"), (("access_token",), "`access_token`", "api_key")],
)
def test_only_enabled_credential_types_are_described(
    types: tuple[str, ...], present: str, absent: str
) -> None:
    """A credential type switched off appears nowhere, not even in Step 5's lifetimes."""
    document = render_auth_md(
        tenant(
            flows=("verified_email", "id_jag"),
            anonymous_credential_types=(),
            identity_credential_types=types,
        )
    )
    assert present in section(document, "## Step 5", "## Errors")
    assert absent not in document


def test_trust_list_and_contact_are_mentioned() -> None:
    """The ID-JAG section says only trusted providers work and whom to ask; links are listed."""
    t = tenant(
        contact_url="mailto:ops@example.com",
        terms_url="https://example.com/terms",
        privacy_url="https://example.com/privacy",
    )
    document = render_auth_md(t)
    assert "accepted only from trusted providers" in document
    assert "ask the\noperator (mailto:ops@example.com)" in document
    assert "- Terms: <https://example.com/terms>" in document
    assert "- Privacy: <https://example.com/privacy>" in document


def test_output_is_deterministic() -> None:
    """The same configuration renders the same text, ending in exactly one newline."""
    first, second = render_auth_md(tenant()), render_auth_md(tenant())
    assert first == second
    assert first.endswith("\n")
    assert not first.endswith("\n\n")


def test_step_5_names_the_sample_resource() -> None:
    """Where it says to call the API, auth.md names /api/me to try a credential on; a tenant
    without `api.read` (the scope /api/me needs) is not sent there."""
    use = section(render_auth_md(tenant()), "## Step 5", "## Errors")
    assert "`GET https://auth.example.com/api/me` (scope `api.read`)" in use
    other = tenant(
        scopes_supported=("files:read",),
        pre_claim_scopes=("files:read",),
        post_claim_scopes=("files:read",),
    )
    assert "/api/me" not in render_auth_md(other)
