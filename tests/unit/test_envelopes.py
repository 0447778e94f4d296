"""The v0.6 door's route families answer every failure in their own shape (service/http/
envelopes.py; design section 5.1): refusals, rate limits, Litestar's own errors, crashes and
an unreachable database, never cached; a path outside the families keeps the house shape."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from litestar import Response
from litestar.exceptions import HTTPException, MethodNotAllowedException
from litestar.testing import RequestFactory

from service.domain.errors import ProtocolError
from service.http.bodies import BodyTooLarge
from service.http.envelopes import EVENTS, IDENTITY, OAUTH, Envelope, envelope_of, in_family
from service.ratelimit.limiter import RateLimited

SHAPES = {
    IDENTITY: {"error", "message", "error_description"},
    OAUTH: {"error", "error_description"},
    EVENTS: {"err", "description"},
}
# (code, text) members of each family's body
FIELDS = {IDENTITY: ("error", "error_description"), OAUTH: ("error", "error_description"),
          EVENTS: ("err", "description")}  # fmt: skip
REQUEST = RequestFactory().post("/oauth2/token")


def body(response: Response[bytes]) -> dict[str, str]:
    decoded: dict[str, str] = msgspec.json.decode(response.content)
    return decoded


def assert_family(envelope: Envelope, response: Response[bytes], status: int, code: str) -> None:
    assert response.status_code == status
    answer = body(response)
    assert set(answer) == SHAPES[envelope]
    code_field, text_field = FIELDS[envelope]
    assert answer[code_field] == code
    assert answer[text_field]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("envelope", [IDENTITY, OAUTH, EVENTS])
def test_each_failure_in_the_family_shape(envelope: Envelope) -> None:
    """A protocol refusal, a 429 with Retry-After, an oversized body, Litestar's 405 with its
    Allow and a 400, a crash (500) and an unreachable database (503 with Retry-After)."""
    assert_family(envelope, envelope.protocol_error(REQUEST, ProtocolError("not_found", "off")),
                  404, "not_found")  # fmt: skip
    limited = envelope.protocol_error(REQUEST, RateLimited(7, "slow down"))
    assert_family(envelope, limited, 429, "rate_limited")
    assert limited.headers["Retry-After"] == "7"
    assert_family(envelope, envelope.body_too_large(REQUEST, BodyTooLarge(16)), 413,
                  "invalid_request")  # fmt: skip
    not_allowed = envelope.http_error(
        REQUEST, MethodNotAllowedException(headers={"allow": "POST, OPTIONS"})
    )
    assert_family(envelope, not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["allow"] == "POST, OPTIONS"
    bad = envelope.http_error(REQUEST, HTTPException(status_code=400, detail="x"))
    assert_family(envelope, bad, 400, "invalid_request")
    crash = envelope.internal_error(REQUEST, ValueError("a bug"))
    assert_family(envelope, crash, 500, "internal_error")
    assert "a bug" not in crash.content.decode()
    down = envelope.internal_error(REQUEST, asyncpg.CannotConnectNowError("starting up"))
    assert_family(envelope, down, 503, envelope.unavailable)
    assert int(down.headers["Retry-After"]) > 0
    if envelope is IDENTITY:
        assert body(crash)["message"] == body(crash)["error_description"]


def test_the_oauth_family_says_temporarily_unavailable() -> None:
    """RFC 6749's code for a server that cannot answer now; the identity family keeps ours."""
    assert (OAUTH.unavailable, IDENTITY.unavailable) == ("temporarily_unavailable", "unavailable")


def test_paths_find_their_family() -> None:
    assert envelope_of("/agent/identity") is IDENTITY
    assert envelope_of("/agent/identity/") is IDENTITY
    assert envelope_of("/oauth2/token") is OAUTH
    assert envelope_of("/oauth2/revoke") is OAUTH
    assert envelope_of("/agent/event/notify") is EVENTS
    for other in ("/agent/auth", "/oauth2/introspect", "/api/me", "/", "/oauth2/token/x"):
        assert envelope_of(other) is None


def test_app_handlers_ask_the_family_first() -> None:
    """`in_family`: a family's path answers in its shape, another path by the default."""

    def default(_: object, exc: ProtocolError) -> Response[bytes]:
        return Response(b"default", status_code=exc.status)

    handle = in_family(default, lambda family: family.protocol_error)
    refusal = ProtocolError("invalid_request", "no")
    assert_family(OAUTH, handle(REQUEST, refusal), 400, "invalid_request")
    elsewhere = handle(RequestFactory().post("/agent/auth"), refusal)
    assert elsewhere.content == b"default"
