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
    """V1's body is one of the three identity types or (AuthKit) refresh; the token endpoint
    takes a form for both grants and answers RFC 6749 errors; V8 answers an empty 200; V9 a
    202 and `{err, description}`; the identity family's refusals carry `error`, `message`
    and `error_description` (O-Q); the sign-in pages answer HTML."""
    listed = operations(document)
    identity = listed[("POST", "/agent/identity")]
    kinds = identity["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {k["properties"]["type"]["const"] for k in kinds} == {
        "anonymous", "service_auth", "identity_assertion", "refresh",
    }  # fmt: skip
    refusal = identity["responses"]["400"]["content"]["application/json"]["schema"]
    assert {"error", "message", "error_description"} <= set(_properties(document, refusal))
    token = listed[("POST", "/oauth2/token")]
    grants = token["requestBody"]["content"][FORM]["schema"]["oneOf"]
    assert {g["properties"]["grant_type"]["enum"][0] for g in grants} == GRANTS
    # an optional parameter sent without a value counts as omitted (RFC 6749 3.1): documented
    [bearer] = [g for g in grants if "assertion" in g["properties"]]
    blank = bearer["properties"]["resource"]["anyOf"]
    assert {"type": "null"} in blank
    assert {"type": "string", "maxLength": 0} in blank
    revoke_form = listed[("POST", "/oauth2/revoke")]["requestBody"]["content"][FORM]["schema"]
    assert {"type": "null"} in revoke_form["properties"]["token_type_hint"]["anyOf"]
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


def _answer(operation: dict[str, Any], status: str) -> list[dict[str, Any]]:
    """The alternatives an answer's JSON schema lists (each with its properties)."""
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    return list(schema.get("anyOf", [schema]))


def _links(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every link of every answer of the document."""
    return [
        link
        for operation in operations(document).values()
        for answer in operation["responses"].values()
        for link in answer.get("links", {}).values()
    ]


def _shape(alternatives: list[dict[str, Any]], **consts: str) -> dict[str, Any]:
    """The one alternative whose properties pin these values (`const`, or a one-value `enum`)."""

    def pinned(prop: dict[str, Any]) -> Any:
        return prop.get("const", (prop.get("enum") or [None])[0])

    [found] = [
        a for a in alternatives
        if all(pinned(a["properties"].get(k, {})) == v for k, v in consts.items())
    ]  # fmt: skip
    return found


async def test_both_profiles_bodies_at_the_shared_paths(document: dict[str, Any]) -> None:
    """A reader of the schema sees both profiles of the v0.6 door: V1 takes `refresh` (its
    token's syntax, AuthKit only) and answers main's flat bodies and AuthKit's nested ones
    (anonymous with `identity` and `claim` without a code, service_auth with
    `claim.attempt`, a clean ID-JAG with a flat `scopes`, refresh with the next refresh
    token); the step-up 401 and V2 list the nested variant too; complete answers `{id,
    status, identity{…, refresh_token}}` and links its tokens on to V6 and V1's refresh; no
    link leads to complete, which a main-profile tenant answers 404."""
    listed = operations(document)
    identity = listed[("POST", "/agent/identity")]
    kinds = identity["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    [refresh_kind] = [k for k in kinds if k["properties"]["type"]["const"] == "refresh"]
    assert refresh_kind["required"] == ["type", "refresh_token"]
    assert refresh_kind["properties"]["refresh_token"]["maxLength"] == 256
    assert "AuthKit" in refresh_kind["description"]
    answers = _answer(identity, "200")
    assert {"registration_id", "identity_assertion"} <= set(
        _shape(answers, registration_type="anonymous")["required"]
    )
    anonymous = _shape(answers, type="anonymous")
    assert set(anonymous["required"]) == {"id", "type", "identity", "scopes", "claim"}
    assert set(anonymous["properties"]["identity"]["required"]) == {"assertion", "expires_at"}
    claim = anonymous["properties"]["claim"]
    assert set(claim["required"]) == {"token", "expires_at", "url"}
    attempt = claim["properties"]["attempt"]
    assert set(attempt["required"]) == {"verification_uri", "expires_at"}
    assert "user_code" not in str(anonymous)  # no code reaches the agent in this profile
    service_auth = _shape(answers, type="service_auth")
    assert "identity" not in service_auth["properties"]  # no assertion before the claim
    assert set(service_auth["properties"]["scopes"]["required"]) == {"pre_claim", "post_claim"}
    asserted = _shape(answers, type="identity_assertion")
    assert asserted["properties"]["scopes"]["type"] == "array"
    refreshed = _shape(answers, type="refresh")
    rotated = refreshed["properties"]["identity"]["properties"]["refresh_token"]
    assert set(rotated["required"]) == {"value", "expires_at"}
    links = identity["responses"]["200"]["links"]
    assert links["exchange_nested"]["requestBody"]["assertion"] == (
        "$response.body#/identity/assertion"
    )
    assert (
        links["start_claim_nested"]["requestBody"]["claim_token"] == "$response.body#/claim/token"
    )
    # nothing links to complete: a main-profile tenant answers it 404
    assert all(link["operationId"] != "completeClaimAuthKit" for link in _links(document))
    assert links["refresh"]["requestBody"]["type"] == "refresh"
    step_ups = _answer(identity, "401")
    nested = _shape(step_ups, type="identity_assertion")
    assert set(nested["properties"]["scopes"]["required"]) == {"post_claim"}
    assert "attempt" in nested["properties"]["claim"]["properties"]
    started = _answer(listed[("POST", "/agent/identity/claim")], "200")
    assert {"registration_id", "claim_attempt"} <= set(
        _shape(started, status="initiated")["required"]
    )
    opened = _shape(started, type="service_auth")
    assert set(opened["required"]) == {"id", "type", "attempt"}
    complete = listed[("POST", "/agent/identity/claim/complete")]
    body = complete["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"claim_token", "user_code"}
    [done] = _answer(complete, "200")
    assert done["properties"]["status"]["enum"] == ["claimed"]
    held = done["properties"]["identity"]
    assert set(held["required"]) == {"assertion", "expires_at", "refresh_token"}
    assert set(complete["responses"]["200"]["links"]) == {"refresh", "exchange"}
    for status in ("400", "401", "409", "410"):  # the identity family's refusals
        refusal = complete["responses"][status]["content"]["application/json"]["schema"]
        assert {"error", "message", "error_description"} <= set(_properties(document, refusal))


async def test_the_confirm_page_is_documented(document: dict[str, Any]) -> None:
    """The AuthKit profile's page for the person: GET takes the link token in the query and
    answers the Authorize page or a redirect to sign in; POST takes the form's two fields and
    answers the code page; both refuse in HTML."""
    listed = operations(document)
    page = listed[("GET", "/claim/confirm")]
    [parameter] = [p for p in page["parameters"] if p["name"] == "claim_attempt_token"]
    assert parameter["in"] == "query"
    assert parameter["required"]
    assert {"200", "302", "403", "404", "409", "410"} <= set(page["responses"])
    confirm = listed[("POST", "/claim/confirm")]
    form = confirm["requestBody"]["content"][FORM]["schema"]
    assert set(form["required"]) == {"claim_attempt_token", "csrf"}
    for operation in (page, confirm):
        answers = operation["responses"]
        assert set(answers["200"]["content"]) == {"text/html"}
        assert set(answers["404"]["content"]) == {"text/html"}
