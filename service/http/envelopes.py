"""The answers of the v0.6 door's route families, errors included (design section 5.1).

The contract copies each family's shape from the reference, so a v0.6 agent parses every
answer of a route the same way, Litestar's own refusals included:

- identity: V1, V2, AuthKit's complete: `{error, message, error_description}`, both
  texts the same (O-Q); 503 `unavailable`;
- oauth: V6, V7, V8: RFC 6749's `{error, error_description}`; 503
  `temporarily_unavailable`;
- events: V9: `{err, description}`; 503 `unavailable`.

Every answer of each (200 too) is `Cache-Control: no-store` with `Pragma: no-cache`
(`json_reply`); a 429 adds `Retry-After`. A family's router carries its `handlers()`, so a
ProtocolError (a door that is off: 404 `not_found`), an oversized body, a Litestar
HTTPException and a crash (500 `internal_error`; 503 while Postgres does not answer) are
answered in its shape. Failures raised before routing (405: a path of the family, another
method) reach the app's handlers, which ask `envelope_of(path)` first (`in_family`).

Later slices add a family here (pages: HTML) and name its paths in FAMILY_PATHS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.domain.errors import ProtocolError
from service.http.bodies import BodyTooLarge, json_reply
from service.http.errors import (
    UNAVAILABLE_RETRY_AFTER,
    database_unavailable,
    error_headers,
)
from service.observability.request_outcome import note_refusal
from service.tenancy.config import (
    EVENTS_PATH,
    IDENTITY_CLAIM_PATH,
    IDENTITY_COMPLETE_PATH,
    IDENTITY_PATH,
    TOKEN_PATH,
    TOKEN_REVOKE_PATH,
)

E = TypeVar("E", bound=Exception)
AnyRequest = Request[Any, Any, Any]
Handler = Callable[[AnyRequest, E], Response[Any]]
# A client error Litestar raises itself, by the code the families know it as (RFC 6749 5.2:
# a malformed request, whatever is wrong with it, is `invalid_request`).
_HTTP_CODES = {400: "invalid_request", 404: "not_found", 413: "invalid_request",
               415: "invalid_request"}  # fmt: skip
log = structlog.get_logger("service.http")


@dataclass(frozen=True)
class Envelope:
    """One family's error body and the code of its 503."""

    family: str
    shape: Callable[[str, str], dict[str, Any]]
    unavailable: str

    def reply(
        self,
        code: str,
        message: str,
        status: int,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> Response[bytes]:
        """An error in this family's shape, never cached; `extra` fields beside it."""
        return json_reply(self.shape(code, message) | extra, status, dict(headers or {}))

    def protocol_error(self, request: AnyRequest, exc: ProtocolError) -> Response[bytes]:
        log.info("http.refused", path=request.url.path, error=exc.code, status=exc.status)
        note_refusal(exc.code)
        return self.reply(exc.code, exc.message, exc.status, error_headers(exc))

    def body_too_large(self, request: AnyRequest, exc: BodyTooLarge) -> Response[bytes]:
        log.info("http.refused", path=request.url.path, error="invalid_request", status=413)
        note_refusal("invalid_request")
        return self.reply("invalid_request", str(exc), 413)

    def http_error(self, request: AnyRequest, exc: HTTPException) -> Response[bytes]:
        """Litestar's own refusals (405 with its Allow, 400, 415 …) in this family's shape."""
        status = exc.status_code
        if status >= 500:
            return self.internal_error(request, exc)
        phrase = HTTPStatus(status).phrase
        code = _HTTP_CODES.get(status, phrase.lower().replace(" ", "_").replace("-", "_"))
        log.info("http.refused", path=request.url.path, error=code, status=status)
        note_refusal(code)
        return self.reply(code, phrase, status, exc.headers)

    def internal_error(self, request: AnyRequest, exc: Exception) -> Response[bytes]:
        """500 `internal_error`, logged with its traceback; 503 with Retry-After when the
        database does not answer (no bug)."""
        if database_unavailable(exc):
            log.warning("http.database_unavailable", method=request.method,
                        path=request.url.path, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            note_refusal(self.unavailable)
            return self.reply(
                self.unavailable,
                "the database is unavailable; retry later",
                503,
                {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
            )
        log.error("http.unhandled", method=request.method, path=request.url.path, exc_info=exc)
        note_refusal("internal_error")
        return self.reply("internal_error", "internal error", 500)

    def handlers(self) -> dict[int | type[Exception], Handler[Any]]:
        """The exception handlers of a router of this family."""
        return {
            ProtocolError: self.protocol_error,
            BodyTooLarge: self.body_too_large,
            HTTPException: self.http_error,
            Exception: self.internal_error,
        }


IDENTITY = Envelope(
    "identity",
    lambda code, message: {"error": code, "message": message, "error_description": message},
    "unavailable",
)
OAUTH = Envelope(
    "oauth",
    lambda code, message: {"error": code, "error_description": message},
    "temporarily_unavailable",
)
EVENTS = Envelope(
    "events",
    lambda code, message: {"err": code, "description": message},
    "unavailable",
)
FAMILY_PATHS: Mapping[str, Envelope] = {
    IDENTITY_PATH: IDENTITY,
    IDENTITY_CLAIM_PATH: IDENTITY,
    IDENTITY_COMPLETE_PATH: IDENTITY,
    TOKEN_PATH: OAUTH,
    TOKEN_REVOKE_PATH: OAUTH,
    EVENTS_PATH: EVENTS,
}


def envelope_of(path: str) -> Envelope | None:
    """The family of a request's path (one trailing slash ignored), if it has one."""
    return FAMILY_PATHS.get(path.rstrip("/") or "/")


def in_family(default: Handler[E], of: Callable[[Envelope], Handler[E]]) -> Handler[E]:
    """An app-level handler: the path's family answers (`of` picks its handler), else
    `default` does."""

    def handle(request: AnyRequest, exc: E) -> Response[Any]:
        envelope = envelope_of(request.url.path)
        return default(request, exc) if envelope is None else of(envelope)(request, exc)

    return handle
