"""Malformed requests (spec O19, W14): every one is a 4xx JSON error with the spec's shape,
no stack trace, and nothing written to the log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.app_client import Service, running_service
from tests.support.backends import Backend

ENDPOINTS = [
    "/agent/auth",
    "/agent/auth/claim",
    "/agent/auth/claim/attempt/challenge",
    "/agent/auth/claim/complete",
]
VALID = {
    "/agent/auth": b'{"type":"anonymous","requested_credential_type":"api_key"}',
    "/agent/auth/claim": b'{"claim_token":"clm_x","email":"a@example.net"}',
    "/agent/auth/claim/attempt/challenge": b'{"claim_attempt_token":"cvt_x"}',
    "/agent/auth/claim/complete": b'{"claim_token":"clm_x","otp":"123456"}',
}
WRONG_TYPE = {
    "/agent/auth": b'{"type":1,"requested_credential_type":"api_key"}',
    "/agent/auth/claim": b'{"claim_token":["clm_x"],"email":"a@example.net"}',
    "/agent/auth/claim/attempt/challenge": b'{"claim_attempt_token":true}',
    "/agent/auth/claim/complete": b'{"claim_token":"clm_x","otp":123456}',
}
JSON = {"content-type": "application/json"}


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as service:
        yield service


def broken(path: str) -> dict[str, bytes]:
    """Bodies that must never reach a command, named by what is wrong with them."""
    valid = VALID[path]
    field = valid.split(b'"')[1]
    return {
        "malformed JSON": valid[:-1],
        "not an object": b'["anonymous"]',
        "unknown field": valid[:-1] + b',"admin":true}',
        "wrong field type": WRONG_TYPE[path],
        "missing field": b"{}",
        "null field": b'{"' + field + b'":null}',
        "invalid UTF-8": valid.replace(b'"', b'"\xff', 1),
        "empty body": b"",
    }


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "invalid_request"
    assert "Traceback" not in response.text
    assert "File " not in response.text


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_malformed_bodies_are_400_and_write_nothing(svc: Service, path: str) -> None:
    """Malformed JSON, a non-object, an unknown field, a wrong type, a missing or null field,
    invalid UTF-8 and an empty body: 400 invalid_request each, the log head unchanged."""
    await svc.anonymous()  # something in the log, so "unchanged" means something
    head = await svc.head()
    for name, body in broken(path).items():
        response = await svc.client.post(path, content=body, headers=JSON)
        assert_json_error(response, 400)
        assert response.json()["message"], name
    assert await svc.head() == head


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_oversized_bodies_are_413(svc: Service, path: str) -> None:
    """A 1 MB body, announced by Content-Length or streamed chunked, is refused with 413 JSON
    before it is read in full; nothing is written."""
    head = await svc.head()
    megabyte = b'{"type":"' + b"a" * (1 << 20) + b'"}'
    announced = await svc.client.post(path, content=megabyte, headers=JSON)
    assert_json_error(announced, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(megabyte), 64 * 1024):
            yield megabyte[start : start + 64 * 1024]

    streamed = await svc.client.post(path, content=chunks(), headers=JSON)
    assert_json_error(streamed, 413)
    assert await svc.head() == head


async def test_a_body_just_over_the_route_limit_is_413(svc: Service) -> None:
    """The routes' own cap (16 KiB) is tighter than the app's: 20 KB is already refused."""
    body = b'{"type":"' + b"a" * 20_000 + b'"}'
    assert_json_error(await svc.client.post("/agent/auth", content=body, headers=JSON), 413)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_other_content_types_are_refused(svc: Service, path: str) -> None:
    """A JSON body sent as text/plain (or with no Content-Type) is 400, as in the reference."""
    for headers in ({"content-type": "text/plain"}, {}):
        response = await svc.client.post(path, content=VALID[path], headers=headers)
        assert_json_error(response, 400)
    assert await svc.head() == 0


@pytest.mark.parametrize(
    "form",
    [
        b"",
        b"claim_attempt_token=",
        b"claim_attempt_token=a&claim_attempt_token=b",
        b"claim_attempt_token=cvt_x&extra=1",
        b"claim_attempt_token=cvt%20x",
        b"claim_attempt_token=\xff",
        b"%%%",
    ],
)
async def test_malformed_button_posts_get_a_400_page(svc: Service, form: bytes) -> None:
    """The claim page's form POST with a malformed body: a 400 HTML page, nothing written."""
    response = await svc.client.post(
        "/agent/auth/claim/attempt/challenge",
        content=form,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert await svc.head() == 0


async def test_bad_otp_and_email_shapes_are_schema_failures(svc: Service) -> None:
    """A code that is not 6 digits and an address that is not one: 400 invalid_request."""
    registered = await svc.anonymous()
    head = await svc.head()
    for otp in ("12345", "1234567", "12345a", "١٢٣٤٥٦", " 123456"):
        response = await svc.client.post(
            "/agent/auth/claim/complete",
            json={"claim_token": registered["claim_token"], "otp": otp},
        )
        assert_json_error(response, 400)
    for email in ("ana", "ana@", "@example.net", "ana@example", "a b@example.net",
                  "Ana <ana@example.net>", "ana@example.net\n", "ana..x@example.net"):  # fmt: skip
        response = await svc.client.post(
            "/agent/auth/claim", json={"claim_token": registered["claim_token"], "email": email}
        )
        assert_json_error(response, 400)
    assert await svc.head() == head
