"""The lean paths of E4 and E10 (service.http.hot_routes) answer exactly as the framework's
routes do.

The same requests go to two apps over the same Resources: the service as served (the lean
path in front of Litestar) and Litestar alone (`hot_paths=False`). Status, headers (all but
the request id's value) and body must match; a success differs only in its fresh ids and
secrets; a refusal writes nothing. A third app puts a stand-in behind the lean path to show
which requests it takes and which it passes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.http.app import HOT_ROUTES, create_app, route_handlers
from service.http.hot_routes import hot_routes
from service.http.tenancy import tenant_middleware
from tests.support.app_client import (
    PUBLIC_URL,
    Service,
    asgi_client,
    running_service,
    settings_for,
)
from tests.support.backends import Backend

JSON = {"content-type": "application/json"}
ME = "/api/me"
ANONYMOUS = b'{"type":"anonymous","requested_credential_type":"api_key"}'
# Fresh on every success: compared by presence and shape, not by value.
FRESH = {"registration_id", "credential", "claim_token", "claim_token_expires"}
REFUSED = {
    "malformed JSON": ANONYMOUS[:-1],
    "unknown field": ANONYMOUS[:-1] + b',"admin":true}',
    "wrong field type": b'{"type":1,"requested_credential_type":"api_key"}',
    "empty body": b"",
    "invalid UTF-8": ANONYMOUS.replace(b'"', b'"\xff', 1),
    "a NUL escape": b'{"type":"anonymous\\u0000","requested_credential_type":"api_key"}',
    "unknown type": b'{"type":"person","requested_credential_type":"api_key"}',
    "anonymous with an assertion": (
        b'{"type":"anonymous","requested_credential_type":"api_key",'
        b'"assertion_type":"verified_email","assertion":"a@example.net"}'
    ),
    "unsupported credential": b'{"type":"anonymous","requested_credential_type":"cookie"}',
    "assertion missing": b'{"type":"identity_assertion","requested_credential_type":"api_key"}',
    "unknown assertion type": (
        b'{"type":"identity_assertion","requested_credential_type":"api_key",'
        b'"assertion_type":"saml","assertion":"x"}'
    ),
    "not an email": (
        b'{"type":"identity_assertion","requested_credential_type":"api_key",'
        b'"assertion_type":"verified_email","assertion":"not-an-address"}'
    ),
    "an ID-JAG that is no JWT": (
        b'{"type":"identity_assertion","requested_credential_type":"api_key",'
        b'"assertion_type":"urn:ietf:params:oauth:token-type:id-jag","assertion":"abc"}'
    ),
}


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as service:
        yield service


@pytest.fixture
async def framework(
    svc: Service, backend: Backend, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Litestar alone, on the served app's Resources."""
    app = create_app(settings_for(backend, database_url), resources=svc.resources, hot_paths=False)
    async with asgi_client(app) as client:
        yield client


def headers_of(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, "<id>" if k == "x-request-id" else v) for k, v in response.headers.items())


async def chunks() -> AsyncIterator[bytes]:
    yield ANONYMOUS[:10]
    yield ANONYMOUS[10:]


async def test_a_registration_answers_as_the_framework_does(
    svc: Service, framework: httpx.AsyncClient
) -> None:
    for media in ("application/json", "application/json; charset=utf-8", "application/x+json"):
        headers = {"content-type": media}
        lean = await svc.client.post("/agent/auth", content=ANONYMOUS, headers=headers)
        slow = await framework.post("/agent/auth", content=ANONYMOUS, headers=headers)
        assert lean.status_code == slow.status_code == 200, (lean.text, slow.text)
        assert headers_of(lean) == headers_of(slow)
        assert lean.headers["cache-control"] == "no-store"
        ours, theirs = lean.json(), slow.json()
        assert list(ours) == list(theirs)  # the spec's order
        assert {k: v for k, v in ours.items() if k not in FRESH} == {
            k: v for k, v in theirs.items() if k not in FRESH
        }
        assert ours["registration_id"] != theirs["registration_id"]
        assert ours["credential"].startswith("sk_")
        assert theirs["credential"].startswith("sk_")
    assert await svc.count("registration.created") == 6


async def test_every_refusal_answers_as_the_framework_does_and_writes_nothing(
    svc: Service, framework: httpx.AsyncClient
) -> None:
    head = await svc.head()
    for name, body in REFUSED.items():
        lean = await svc.client.post("/agent/auth", content=body, headers=JSON)
        slow = await framework.post("/agent/auth", content=body, headers=JSON)
        assert lean.status_code == slow.status_code, name
        assert 400 <= lean.status_code < 500, (name, lean.text)
        assert lean.json() == slow.json(), name
        assert lean.json()["error"] in {"invalid_request", "unsupported_credential_type"}, name
        assert headers_of(lean) == headers_of(slow), name
    assert await svc.head() == head


async def test_what_the_lean_path_passes_on_is_answered_as_before(
    svc: Service, framework: httpx.AsyncClient
) -> None:
    head = await svc.head()
    oversized = b'{"type":"anonymous","requested_credential_type":"' + b"a" * 20_000 + b'"}'
    cases = [
        ("GET", None, {}),
        ("POST", ANONYMOUS, {"content-type": "application/x-www-form-urlencoded"}),
        ("POST", ANONYMOUS, {"content-type": "text/plain"}),
        ("POST", ANONYMOUS, {}),
        ("POST", oversized, JSON),
    ]
    for method, body, headers in cases:
        lean = await svc.client.request(method, "/agent/auth", content=body, headers=headers)
        slow = await framework.request(method, "/agent/auth", content=body, headers=headers)
        assert lean.status_code == slow.status_code, (method, headers, lean.text)
        assert 400 <= lean.status_code < 500, lean.text
        assert lean.json() == slow.json()
    assert await svc.head() == head
    # a chunked body (no Content-Length) goes to the framework, which registers it
    chunked = await svc.client.post("/agent/auth", content=chunks(), headers=JSON)
    assert chunked.status_code == 200, chunked.text
    assert "content-length" not in chunked.request.headers


async def test_the_lean_path_takes_only_plain_json_posts_to_its_route(
    svc: Service, backend: Backend, database_url: str
) -> None:
    """A stand-in behind the lean path sees every request the lean path leaves alone."""
    passed_on: list[str] = []

    async def stand_in(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        passed_on.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    tenants = svc.resources.tenants
    assert tenants is not None
    framework = create_app(settings_for(backend, database_url), resources=svc.resources)
    lean = hot_routes(stand_in, svc.resources, (), route_handlers(framework, HOT_ROUTES))
    app = tenant_middleware(lean, tenants)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        taken = await client.post("/agent/auth", content=ANONYMOUS, headers=JSON)
        assert taken.status_code == 200
        assert passed_on == []
        refused = await client.post("/agent/auth", content=b"{}", headers=JSON)
        assert refused.status_code == 400
        key = taken.json()["credential"]
        assert (await client.get(ME, headers={"authorization": f"Bearer {key}"})).status_code == 200
        assert (await client.get(ME)).status_code == 401
        assert passed_on == []
        for method, path, body, headers in [
            ("GET", "/agent/auth", None, {}),
            ("POST", "/agent/auth/claim", ANONYMOUS, JSON),
            ("POST", "/agent/auth/", ANONYMOUS, JSON),
            ("POST", "/agent/auth", ANONYMOUS, {"content-type": "text/plain"}),
            ("POST", "/agent/auth", ANONYMOUS, {}),
            ("POST", "/agent/auth", chunks(), JSON),
            ("POST", "/agent/auth", b"{" + b" " * 17_000 + b"}", JSON),
            ("POST", ME, b"", {}),
            ("HEAD", ME, None, {}),
            ("GET", ME + "/", None, {}),
        ]:
            before = len(passed_on)
            answer = await client.request(method, path, content=body, headers=headers)
            assert answer.status_code == 299, (method, path, headers)
            assert len(passed_on) == before + 1
    # what the lean path registered is recorded as the v1 door's, from the client's address
    row = await svc.resources.pool.fetchrow(
        "SELECT metadata->>'door' AS door, metadata->>'dialect' AS dialect FROM events "
        "WHERE type = 'registration.created' ORDER BY position DESC LIMIT 1"
    )
    assert row is not None
    assert (row["door"], row["dialect"]) == ("v1", "0.1.0")


async def test_a_shut_v1_door_is_the_frameworks_404(backend: Backend, database_url: str) -> None:
    async with running_service(backend, database_url, DOORS="v06") as svc:
        answer = await svc.client.post("/agent/auth", content=ANONYMOUS, headers=JSON)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "not_found"
        assert await svc.count("registration.created") == 0


async def test_api_me_answers_as_the_framework_does(
    svc: Service, framework: httpx.AsyncClient
) -> None:
    key = (await svc.client.post("/agent/auth", content=ANONYMOUS, headers=JSON)).json()
    live = {"authorization": f"Bearer {key['credential']}"}
    cases = {
        "a live key": live,
        "no credential": {},
        "an unknown key": {"authorization": "Bearer sk_" + "x" * 40},
        "not a bearer": {"authorization": "Basic dXNlcjpwYXNz"},
        "an empty bearer": {"authorization": "Bearer "},
    }
    for name, headers in cases.items():
        lean = await svc.client.get(ME, headers=headers)
        slow = await framework.get(ME, headers=headers)
        assert lean.status_code == slow.status_code, name
        assert lean.json() == slow.json(), name
        assert headers_of(lean) == headers_of(slow), name
    assert (await svc.client.get(ME, headers=live)).json()["credential_id"]
    assert (await svc.client.get(ME)).headers["www-authenticate"].startswith("Bearer ")


async def test_api_me_without_its_scope_is_the_same_403(
    backend: Backend, database_url: str
) -> None:
    async with running_service(backend, database_url, PRE_CLAIM_SCOPES="api.write") as svc:
        app = create_app(
            settings_for(backend, database_url, PRE_CLAIM_SCOPES="api.write"),
            resources=svc.resources,
            hot_paths=False,
        )
        key = (await svc.client.post("/agent/auth", content=ANONYMOUS, headers=JSON)).json()
        live = {"authorization": f"Bearer {key['credential']}"}
        async with asgi_client(app) as framework:
            lean = await svc.client.get(ME, headers=live)
            slow = await framework.get(ME, headers=live)
        assert lean.status_code == slow.status_code == 403
        assert lean.json() == slow.json()
        assert lean.json()["error"] == "insufficient_scope"
        assert headers_of(lean) == headers_of(slow)
