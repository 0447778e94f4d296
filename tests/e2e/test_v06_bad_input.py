"""Malformed requests at the v0.6 door's routes (V1, V6, V8; docs/design/v06-dialect.md,
section 5.1): each one a 4xx in its route family's shape (`{error, message,
error_description}` at /agent/identity, RFC 6749's `{error, error_description}` at /oauth2/*),
never cached, no stack trace, and no event written by the request (found by its correlation
id, which every answer echoes as X-Request-ID)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

import httpx
import pytest

from service.tenancy.config import CLAIM_GRANT, ID_JAG, JWT_BEARER
from tests.support.app_client import Service
from tests.support.backends import Backend
from tests.support.v06_door import (
    FORM,
    IDENTITY,
    REVOKE,
    TOKEN,
    assert_identity_error,
    assert_oauth_error,
    identify,
    token_for,
    v06_service,
    written_by,
)

JSON = {"content-type": "application/json"}
Check = Callable[[httpx.Response, int, str], None]
CLAIM = "/agent/identity/claim"
FAMILIES = [(IDENTITY, assert_identity_error), (TOKEN, assert_oauth_error),
            (REVOKE, assert_oauth_error), (CLAIM, assert_identity_error)]  # fmt: skip


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with v06_service(backend, database_url) as service:
        yield service


async def refused(svc: Service, response: httpx.Response, check: Check, status: int,
                  error: str = "invalid_request") -> None:  # fmt: skip
    """The family's refusal, and nothing recorded for it."""
    check(response, status, error)
    assert "Traceback" not in response.text
    assert await written_by(svc, response) == []


IDENTITY_BODIES = {
    "malformed JSON": b'{"type":"anonymous"',
    "not an object": b'["anonymous"]',
    "unknown field": b'{"type":"anonymous","admin":true}',
    "wrong field type": b'{"type":1}',
    "missing type": b"{}",
    "null type": b'{"type":null}',
    "invalid UTF-8": b'{"type":"\xffanonymous"}',
    "NUL escape": b'{"type":"anonymous\\u0000"}',
    "empty body": b"",
    "unknown type": b'{"type":"verified_email"}',
    "anonymous with a hint": b'{"type":"anonymous","login_hint":"a@example.net"}',
    "anonymous with an assertion": b'{"type":"anonymous","assertion":"a.b.c"}',
    "service_auth without a hint": b'{"type":"service_auth"}',
    "service_auth with an assertion": b'{"type":"service_auth","login_hint":"a@example.net",'
    b'"assertion":"a.b.c"}',
    "identity_assertion without one": b'{"type":"identity_assertion","assertion_type":"x"}',
    "v1's assertion type": b'{"type":"identity_assertion","assertion_type":"verified_email",'
    b'"assertion":"a@example.net"}',
    "refresh (AuthKit, not served)": b'{"type":"refresh","refresh_token":"rt_x"}',
    "v1's body": b'{"type":"anonymous","requested_credential_type":"api_key"}',
}


async def test_malformed_identity_bodies_are_400_in_the_identity_shape(svc: Service) -> None:
    """Every body V1 must refuse: 400 `invalid_request` with both texts, nothing written."""
    await identify(svc.client)  # something in the log, so "nothing written" means something
    head = await svc.head()
    for name, body in IDENTITY_BODIES.items():
        response = await svc.client.post(IDENTITY, content=body, headers=JSON)
        await refused(svc, response, assert_identity_error, 400)
        assert response.json()["message"], name
    for headers in ({"content-type": "text/plain"}, FORM, {}):
        response = await svc.client.post(IDENTITY, content=b'{"type":"anonymous"}', headers=headers)
        await refused(svc, response, assert_identity_error, 400)
    assert await svc.head() == head


async def test_identity_assertions_that_are_no_id_jag_are_400(svc: Service) -> None:
    """V1 identity_assertion with an assertion that cannot be an ID-JAG (no compact JWS, an
    empty or oversized one, not a string) or the service's own identity assertion sent back
    (O-C: our issuer is refused before any lookup): 400 in the identity shape, nothing
    written."""
    own = (await identify(svc.client))["identity_assertion"]
    head = await svc.head()
    for assertion, code in (
        ("a.b.c", "invalid_request"),
        ("not a jwt", "invalid_request"),
        ("", "invalid_request"),
        ("a" * 9000, "invalid_request"),
        (7, "invalid_request"),
        (["a.b.c"], "invalid_request"),
        (own, "invalid_issuer"),
    ):
        body = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": assertion}
        response = await svc.client.post(IDENTITY, json=body)
        await refused(svc, response, assert_identity_error, 400, code)
    assert await svc.head() == head


async def test_identity_assertion_off_says_so(backend: Backend, database_url: str) -> None:
    """A tenant whose flows leave out id_jag answers a well-formed ID-JAG registration 400
    `identity_assertion_not_enabled` (O-M), nothing written."""
    async with v06_service(backend, database_url, FLOWS="anonymous verified_email") as service:
        body = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": "a.b.c"}
        response = await service.client.post(IDENTITY, json=body)
        await refused(service, response, assert_identity_error, 400,
                      "identity_assertion_not_enabled")  # fmt: skip
        assert await service.head() == 0


async def test_service_auth_off_says_so(backend: Backend, database_url: str) -> None:
    """A tenant whose flows leave out service_auth: 400 `service_auth_not_enabled` (O-M) for
    a well-formed body, nothing written."""
    async with v06_service(backend, database_url, FLOWS="anonymous id_jag") as svc:
        body = {"type": "service_auth", "login_hint": "ana@example.net"}
        response = await svc.client.post(IDENTITY, json=body)
        await refused(svc, response, assert_identity_error, 400, "service_auth_not_enabled")
        assert await svc.head() == 0


CLAIM_BODIES = {
    "malformed JSON": b'{"claim_token":"clm_x"',
    "not an object": b'["clm_x"]',
    "unknown field": b'{"claim_token":"%(t)s","email":"a@example.net","admin":true}',
    "no address": b'{"claim_token":"%(t)s"}',
    "both addresses": b'{"claim_token":"%(t)s","email":"a@example.net",'
    b'"login_hint":"a@example.net"}',
    "not an address": b'{"claim_token":"%(t)s","email":"ana"}',
    "null address": b'{"claim_token":"%(t)s","email":null}',
    "unknown type": b'{"claim_token":"%(t)s","email":"a@example.net","type":"identity_assertion"}',
    "no claim token": b'{"email":"a@example.net"}',
    "claim token of another alphabet": b'{"claim_token":"clm x","email":"a@example.net"}',
    "wrong field type": b'{"claim_token":1,"email":"a@example.net"}',
    "NUL escape": b'{"claim_token":"%(t)s","email":"a@example.net\\u0000"}',
    "invalid UTF-8": b'{"claim_token":"%(t)s","email":"\xffa@example.net"}',
    "empty body": b"",
}


async def test_malformed_claim_bodies_are_400_in_the_identity_shape(svc: Service) -> None:
    """V2 (O-P): every body it must refuse, with a live claim token where one is named, so a
    body read too leniently would open an attempt: 400 `invalid_request`, nothing written."""
    claim_token = (await identify(svc.client))["claim_token"]
    head = await svc.head()
    for name, body in CLAIM_BODIES.items():
        content = body.replace(b"%(t)s", claim_token.encode())
        response = await svc.client.post(CLAIM, content=content, headers=JSON)
        await refused(svc, response, assert_identity_error, 400)
        assert response.json()["message"], name
    valid = json.dumps({"claim_token": claim_token, "email": "a@example.net"}).encode()
    for headers in ({"content-type": "text/plain"}, FORM, {}):
        response = await svc.client.post(CLAIM, content=valid, headers=headers)
        await refused(svc, response, assert_identity_error, 400)
    assert await svc.head() == head


def forms(valid: dict[str, str], required: str) -> dict[str, bytes]:
    """Form bodies the oauth routes must refuse, named by what is wrong with them."""
    encoded = urlencode(valid).encode()
    return {
        "empty body": b"",
        "required missing": urlencode({k: v for k, v in valid.items() if k != required}).encode(),
        "required empty": urlencode({**valid, required: ""}).encode(),
        "required repeated": encoded + b"&" + urlencode({required: valid[required]}).encode(),
        "another repeated": encoded + b"&junk=1&junk=2",
        "no equals sign": encoded + b"&flag",
        "double ampersand": encoded + b"&&x=1",
        "bad percent-escape": encoded + b"&x=%ff%fe",
        "invalid UTF-8": encoded + b"&x=\xff",
        "NUL": encoded + b"&x=%00",
        "too many fields": encoded + b"".join(b"&f%d=1" % n for n in range(20)),
    }


@pytest.mark.parametrize(
    ("path", "required"), [(TOKEN, "assertion"), (REVOKE, "token"), (TOKEN, "claim_token")]
)
async def test_malformed_forms_are_400_in_the_oauth_shape(
    svc: Service, path: str, required: str
) -> None:
    """Broken forms, repeated parameters (RFC 6749 3.2), a JSON body or another media type,
    an oversized value: 400 `invalid_request` in RFC 6749's shape, nothing written; the
    token a live one, so a form read too leniently would revoke or mint (the claim token a
    v0.6 registration's, so it would pace or deliver)."""
    registered = await identify(svc.client)
    assertion = registered["identity_assertion"]
    token = await token_for(svc.client, assertion)
    valid = {
        "assertion": {"grant_type": JWT_BEARER, "assertion": assertion},
        "token": {"token": token},
        "claim_token": {"grant_type": CLAIM_GRANT, "claim_token": registered["claim_token"]},
    }[required]
    head = await svc.head()
    for name, body in forms(valid, required).items():
        response = await svc.client.post(path, content=body, headers=FORM)
        await refused(svc, response, assert_oauth_error, 400)
        assert response.json()["error_description"], name
    for headers, body in (
        (JSON, json.dumps(valid).encode()),
        ({"content-type": "text/plain"}, urlencode(valid).encode()),
        ({}, urlencode(valid).encode()),
    ):
        response = await svc.client.post(path, content=body, headers=headers)
        await refused(svc, response, assert_oauth_error, 400)
    huge = await svc.client.post(path, data={**valid, required: "a" * 9000})
    await refused(svc, huge, assert_oauth_error, 400)
    assert await svc.head() == head
    assert await svc.resources.pool.fetchval("SELECT count(*) FROM claim_polls") == 0


async def test_token_endpoint_refuses_a_resource_that_is_no_absolute_url(svc: Service) -> None:
    """`resource` (optional, RFC 8707) must be an absolute URL without a fragment; one that
    is passes and is ignored."""
    assertion = (await identify(svc.client))["identity_assertion"]
    head = await svc.head()
    for resource in ("api", "/api/", "https://", "https://x.example/#frag", "urn:x",
                     "https://x .example/", "https://x.example/" + "a" * 2100):  # fmt: skip
        form = {"grant_type": JWT_BEARER, "assertion": assertion, "resource": resource}
        response = await svc.client.post(TOKEN, data=form)
        await refused(svc, response, assert_oauth_error, 400)
    assert await svc.head() == head
    form = {"grant_type": JWT_BEARER, "assertion": assertion,
            "resource": "https://auth.example.test/api/", "unknown": "ignored"}  # fmt: skip
    assert (await svc.client.post(TOKEN, data=form)).status_code == 200


@pytest.mark.parametrize(("path", "check"), FAMILIES)
async def test_oversized_bodies_are_413_in_the_family_shape(
    svc: Service, path: str, check: Check
) -> None:
    """A body past the routes' 16 KiB, announced or streamed chunked: 413 in the family's
    shape, before it is read in full; nothing written."""
    megabyte = b"a=" + b"b" * (1 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(megabyte), 64 * 1024):
            yield megabyte[start : start + 64 * 1024]

    headers = JSON if path in (IDENTITY, CLAIM) else FORM
    for body in (megabyte, b"x=" + b"y" * 20_000):
        await refused(svc, await svc.client.post(path, content=body, headers=headers), check, 413)
    streamed = await svc.client.post(path, content=chunks(), headers=headers)
    await refused(svc, streamed, check, 413)
    assert await svc.head() == 0


@pytest.mark.parametrize(("path", "check"), FAMILIES)
async def test_other_methods_are_405_in_the_family_shape(
    svc: Service, path: str, check: Check
) -> None:
    """Litestar's own refusal before routing, answered in the family's shape with its
    `Allow`; nothing written."""
    for method in ("GET", "PUT", "DELETE"):
        response = await svc.client.request(method, path)
        await refused(svc, response, check, 405, "method_not_allowed")
        assert "POST" in response.headers["allow"]
    assert await svc.head() == 0
