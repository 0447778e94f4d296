"""Protocol refusals as HTTP answers: `{"error": <code>, "message": <text>}` (spec §1, §9).

The status comes from the code; a 429 carries `Retry-After`. Nothing here adds a traceback,
and the message is the one the command chose, which never holds a token, a code or an email.
A request that fails because Postgres does not answer (down, restarting, out of connections)
is not a bug: it gets 503 `unavailable` with `Retry-After`, never a 500.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, NamedTuple

import asyncpg
import structlog
from litestar import Request, Response

from service.domain.errors import ProtocolError
from service.http.bodies import NO_STORE, BodyTooLarge, json_reply
from service.observability.request_outcome import note_refusal

DEFAULT_RETRY_AFTER = 60  # seconds, when the refusal does not say how long to wait
UNAVAILABLE_RETRY_AFTER = 2  # seconds, when the database does not answer
# Postgres refusing or losing the session: connection failures (class 08), shutdown and
# start-up (57P01-57P03), no connection slot left (53300).
_DATABASE_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
log = structlog.get_logger("service.http")


def error_headers(exc: ProtocolError) -> dict[str, str]:
    """No-store always; `Retry-After` (whole seconds) on a 429."""
    headers = dict(NO_STORE)
    if exc.status == 429:
        wait = getattr(exc, "retry_after", None)
        seconds = wait if isinstance(wait, int) and wait > 0 else DEFAULT_RETRY_AFTER
        headers["Retry-After"] = str(seconds)
    return headers


class Reply(NamedTuple):
    """A JSON answer before it is a Response (service.http.hot_routes sends it itself)."""

    body: dict[str, Any]
    status: int
    headers: dict[str, str]


def refused(path: str, exc: ProtocolError) -> Reply:
    """A ProtocolError's answer, logged and counted."""
    log.info("http.refused", path=path, error=exc.code, status=exc.status)
    note_refusal(exc.code)
    return Reply({"error": exc.code, "message": exc.message}, exc.status, error_headers(exc))


def protocol_error(request: Request[Any, Any, Any], exc: ProtocolError) -> Response[bytes]:
    """A ProtocolError raised by a JSON route."""
    return json_reply(*refused(request.url.path, exc))


def body_too_large(request: Request[Any, Any, Any], exc: BodyTooLarge) -> Response[bytes]:
    """413 for an oversized body (O19); the code stays the schema failure's."""
    log.info("http.refused", path=request.url.path, error="invalid_request", status=413)
    note_refusal("invalid_request")
    return json_reply({"error": "invalid_request", "message": str(exc)}, 413)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means Postgres does not answer, rather than a bug: a connection failure
    asyncpg reports (or an OSError raised inside asyncpg: a refused or missing socket, a
    timeout), a session the server ended, or a connection asyncpg found closed or left
    mid-operation by the failure."""
    if isinstance(exc, _DATABASE_DOWN):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc) or "connection was closed" in str(exc)
    if isinstance(exc, asyncpg.InternalClientError):
        # a pooled connection whose last operation the outage cut short, handed out again
        # ("cannot switch to state …; another operation … is in progress")
        return "another operation" in str(exc)
    return isinstance(exc, OSError) and _raised_in_asyncpg(exc.__traceback__)


def _raised_in_asyncpg(tb: TracebackType | None) -> bool:
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg."):
            return True
        tb = tb.tb_next
    return False


def database_down(request: Request[Any, Any, Any], exc: BaseException) -> Response[bytes]:
    """503 `unavailable` with `Retry-After`: the database did not answer; nothing to fix here."""
    return json_reply(*unavailable(request.method, request.url.path, exc))


def unavailable(method: str, path: str, exc: BaseException) -> Reply:
    """database_down's answer, logged and counted."""
    log.warning(
        "http.database_unavailable",
        method=method,
        path=path,
        error=f"{type(exc).__name__}: {exc}",
    )
    note_refusal("unavailable")
    body = {"error": "unavailable", "message": "the database is unavailable; retry later"}
    return Reply(body, 503, {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})


def unhandled(method: str, path: str, exc: BaseException) -> Reply:
    """Anything unexpected: logged with its traceback, answered without one; Postgres not
    answering is no bug (`unavailable`)."""
    if database_unavailable(exc):
        return unavailable(method, path, exc)
    log.error("http.unhandled", method=method, path=path, exc_info=exc)
    note_refusal("internal_error")
    return Reply({"error": "internal_error", "message": "internal error"}, 500, {})
