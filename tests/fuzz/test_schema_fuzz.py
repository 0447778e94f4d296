"""Schemathesis against a real `authledger serve`, small enough for every `make test` (the big
run is `make fuzz`): no 5xx, every answer as documented (status, content type, headers,
schema), schema-violating requests refused, and no event written by a refused request."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fuzz.run import run_fuzz
from tests.support.app_client import running_service
from tests.support.backends import Backend

FORM = "application/x-www-form-urlencoded"

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # per operation and phase
SEED = int(os.environ.get("FUZZ_SEED", "20261128"))


async def test_schema_fuzz_run_is_clean(
    backend: Backend, database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """Every phase (coverage, fuzzing, stateful) passes every check, and the server, which
    answered every request with less than a 500, then stops cleanly on SIGTERM."""
    result = await run_fuzz(
        database_url,
        backend.nats_url,
        examples=EXAMPLES,
        phases="coverage,fuzzing,stateful",
        seed=SEED,
        report_dir=tmp_path,
        owner_url=owner_database_url,
    )
    assert result.exit_code == 0, result.output
    assert result.server_status == 0, result.server_log.read_text()
    assert result.requests["5xx"] == 0, result.summary()
    assert result.requests["2xx"] >= 50, result.summary()  # it got past the refusals too
    assert result.total >= 20 * EXAMPLES, result.summary()


async def test_schema_fuzz_run_of_an_authkit_tenant_is_clean(
    backend: Backend, database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """The v0.6 door's operations again, the tenant in the AuthKit profile (its nested V1/V2
    answers, refresh, complete, the confirm page): every check passes, no 5xx, a clean stop."""
    result = await run_fuzz(
        database_url,
        backend.nats_url,
        examples=EXAMPLES,
        phases="coverage,fuzzing,stateful",
        seed=SEED,
        report_dir=tmp_path,
        owner_url=owner_database_url,
        profile="authkit",
    )
    assert result.exit_code == 0, result.output
    assert result.server_status == 0, result.server_log.read_text()
    assert result.requests["5xx"] == 0, result.summary()
    assert result.requests["2xx"] >= 20, result.summary()  # anonymous, service_auth, V2, pages
    assert result.operations >= 15, result.summary()  # V1, V2, complete, tokens, the pages
    assert result.total >= 10 * EXAMPLES, result.summary()


def scopes_of(method: str, path: str) -> list[str]:
    """The scoped credentials each operator route accepts (security finding 2)."""
    if path in ("/admin/credentials", "/admin/credentials/{credential_id}", "/admin/audit/verify"):
        return ["operator"]
    if path == "/metrics":
        return ["operator", "metrics"]
    if path == "/oauth2/introspect":
        return ["operator", "introspection"]
    if (method, path) == ("GET", "/admin/revocations"):
        return ["operator", "tenant_admin", "revocation_feed"]
    return ["operator", "tenant_admin"]


async def test_every_operation_is_documented(backend: Backend, database_url: str) -> None:
    """Each route of /schema declares its answers (with X-Request-ID) and refusals, its body
    and content types, and the bearer token it needs: a route added without a declaration
    (service.http.openapi) fails here before schemathesis sees it."""
    async with running_service(backend, database_url) as service:
        document = (await service.client.get("/schema/openapi.json")).json()
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert len(operations) >= 35
    for (method, path), operation in operations.items():
        where = f"{method} {path}"
        answers = operation["responses"]
        # a success, or (the sign-in pages' posts and the OpenID routes) a redirect
        assert any(status.startswith(("2", "3")) for status in answers), where
        for status, answer in answers.items():
            assert answer["headers"]["X-Request-ID"]["required"], (where, status)
            assert answer.get("content"), (where, status)
        secured = path.startswith("/admin/") or path in {"/metrics", "/oauth2/introspect"}
        if secured:
            [requirement] = operation["security"]
            assert requirement == {"adminToken": scopes_of(method, path)}, where
            assert "WWW-Authenticate" in answers["401"]["headers"], where
            assert "403" in answers, where
        if method in {"POST", "PATCH"}:
            assert operation["requestBody"]["content"], where
    media = {
        ("POST", "/agent/auth/revoke"): {"application/logout+jwt", FORM},
        ("POST", "/agent/auth/claim/attempt/challenge"): {"application/json", FORM},
        ("POST", "/oauth2/introspect"): {FORM},
        ("POST", "/oauth2/token"): {FORM},
        ("POST", "/oauth2/revoke"): {FORM},
        ("POST", "/agent/identity"): {"application/json"},
        ("POST", "/agent/event/notify"): {"application/secevent+jwt"},
    }
    for key, expected in media.items():
        assert set(operations[key]["requestBody"]["content"]) == expected, key
    challenge = operations[("POST", "/agent/auth/claim/attempt/challenge")]["responses"]
    assert set(challenge["200"]["content"]) == {"application/json", "text/html"}
    view = operations[("GET", "/agent/auth/claim/view")]["responses"]
    assert set(view["404"]["content"]) == {"text/html"}
    assert set(view["409"]["content"]) == {"text/html"}  # the link that claimed, reopened
    assert set(operations[("GET", "/auth.md")]["responses"]["200"]["content"]) == {"text/markdown"}
    index = operations[("GET", "/")]["responses"]["200"]["content"]
    assert set(index) == {"text/html", "application/json"}
    assert operations[("GET", "/api/me")]["security"] == [{"agentCredential": []}]
    register = operations[("POST", "/agent/auth")]["requestBody"]["content"]["application/json"]
    assert len(register["schema"]["oneOf"]) == 3  # anonymous, verified_email, ID-JAG
    identity = operations[("POST", "/agent/identity")]["requestBody"]["content"]
    assert (
        len(identity["application/json"]["schema"]["oneOf"]) == 4
    )  # the v0.6 door's types + refresh
    for path in ("/agent/identity", "/oauth2/token", "/oauth2/revoke"):  # the family's shape
        refusal = operations[("POST", path)]["responses"]["400"]["content"]["application/json"]
        assert "error_description" in str(refusal["schema"]), path
    notify = operations[("POST", "/agent/event/notify")]["responses"]
    assert set(notify["202"]["content"]) == {"text/plain"}
    assert "description" in str(notify["400"]["content"]["application/json"]["schema"])
    assert set(document["components"]["securitySchemes"]) == {"adminToken", "agentCredential"}
