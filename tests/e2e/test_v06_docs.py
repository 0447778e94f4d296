"""The documents of the v0.6 door over HTTP (issue 14, item 8). `/auth.md` walks an agent
through both dialects. The OpenAPI document (`/schema/openapi.json`) covers every route the
contract names (V1, V2, V6/V7, V8, V9), the service's keys at `jwks_uri`, and the sign-in
pages a person is sent to through `verification_uri` (V3), each with the bodies and answers
of its family (docs/design/v06-dialect.md §5.1). The schemathesis runs (tests/fuzz) fuzz
whatever this document lists, so a route missing here goes unfuzzed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.http.authmd import render_auth_md
from tests.support.app_client import Service
from tests.support.backends import Backend
from tests.support.v06_door import v06_service

FORM = "application/x-www-form-urlencoded"
# (method, path) -> the tag its summary names
V06_ROUTES = {
    ("POST", "/agent/identity"): "V1",
    ("POST", "/agent/identity/claim"): "V2",
    ("POST", "/oauth2/token"): "V6",
    ("POST", "/oauth2/revoke"): "V8",
    ("POST", "/agent/event/notify"): "V9",
}
SIGN_IN_ROUTES = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/login/email"),
    ("POST", "/login/email"),
    ("POST", "/logout"),
    ("GET", "/login/oidc"),
    ("GET", "/login/oidc/callback"),
    ("GET", "/claim"),  # V4, V5 and Deny: the person's claim pages
    ("POST", "/claim"),
    ("POST", "/claim/deny"),
}
# The AuthKit profile's own routes (404 in the main profile, documented all the same).
AUTHKIT_ROUTES = {
    ("POST", "/agent/identity/claim/complete"),
    ("GET", "/claim/confirm"),
    ("POST", "/claim/confirm"),
}
GRANTS = {
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:workos:agent-auth:grant-type:claim",
}


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


@pytest.fixture
async def document(svc: Service) -> dict[str, Any]:
    response = await svc.client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    schema: dict[str, Any] = response.json()
    return schema


async def test_auth_md_walks_through_both_dialects(svc: Service) -> None:
    """With both doors open, `/auth.md` (the `skill`) is the generated walkthrough of both:
    the v1 steps and the 0.6.0 part, with this service's own endpoints."""
    response = await svc.client.get("/auth.md")
    assert response.status_code == 200
    assert response.text == render_auth_md(svc.tenant)
    assert "## Step 3: Register" in response.text
    part = response.text[response.text.index("## The 0.6.0 dialect") :]
    assert f"`POST {svc.tenant.identity_endpoint}`" in part
    assert f"`POST {svc.tenant.token_endpoint}`" in part


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }


async def test_every_v06_route_is_in_the_schema(document: dict[str, Any]) -> None:
    """The agent's routes, named by their contract tag, the JWKS, the sign-in pages and the
    AuthKit profile's routes are all operations of the document."""
    listed = operations(document)
    for key, tag in V06_ROUTES.items():
        assert key in listed, key
        assert listed[key]["summary"].startswith(f"{tag}:"), listed[key]["summary"]
    assert ("GET", "/.well-known/jwks.json") in listed
    assert set(listed) >= SIGN_IN_ROUTES, SIGN_IN_ROUTES - set(listed)
    for key in AUTHKIT_ROUTES:
        assert listed[key]["summary"].startswith("AuthKit:"), key


async def test_v06_bodies_and_answers_as_the_contract_has_them(document: dict[str, Any]) -> None:
    """V1's body is one of the three identity types; the token endpoint takes a form for both
    grants and answers RFC 6749 errors; V8 answers an empty 200; V9 a 202 and `{err,
    description}`; the identity family's refusals carry `error`, `message` and
    `error_description` (O-Q); the sign-in pages answer HTML."""
    listed = operations(document)
    identity = listed[("POST", "/agent/identity")]
    kinds = identity["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {k["properties"]["type"]["const"] for k in kinds} == {
        "anonymous", "service_auth", "identity_assertion",
    }  # fmt: skip
    refusal = identity["responses"]["400"]["content"]["application/json"]["schema"]
    assert {"error", "message", "error_description"} <= set(_properties(document, refusal))
    token = listed[("POST", "/oauth2/token")]
    grants = token["requestBody"]["content"][FORM]["schema"]["oneOf"]
    assert {g["properties"]["grant_type"]["enum"][0] for g in grants} == GRANTS
    oauth = token["responses"]["400"]["content"]["application/json"]["schema"]
    assert set(_properties(document, oauth)) == {"error", "error_description"}
    revoke = listed[("POST", "/oauth2/revoke")]["responses"]["200"]["content"]
    assert revoke["text/plain"]["schema"]["maxLength"] == 0
    notify = listed[("POST", "/agent/event/notify")]["responses"]
    assert "202" in notify
    events = notify["400"]["content"]["application/json"]["schema"]
    assert set(_properties(document, events)) == {"err", "description"}
    for key in SIGN_IN_ROUTES - {("GET", "/login/oidc"), ("GET", "/login/oidc/callback")}:
        answers = listed[key]["responses"]
        assert any("text/html" in a.get("content", {}) for a in answers.values()), key


def _properties(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema's properties, through one `$ref` to the components."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    properties: dict[str, Any] = schema["properties"]
    return properties
