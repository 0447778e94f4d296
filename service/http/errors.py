"""Protocol refusals as HTTP answers: `{"error": <code>, "message": <text>}` (spec §1, §9).

The status comes from the code; a 429 carries `Retry-After`. Nothing here adds a traceback,
and the message is the one the command chose, which never holds a token, a code or an email.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response

from service.domain.errors import ProtocolError
from service.http.bodies import NO_STORE, BodyTooLarge, json_reply
from service.metrics import note_refusal

DEFAULT_RETRY_AFTER = 60  # seconds, when the refusal does not say how long to wait
log = structlog.get_logger("service.http")


def error_headers(exc: ProtocolError) -> dict[str, str]:
    """No-store always; `Retry-After` (whole seconds) on a 429."""
    headers = dict(NO_STORE)
    if exc.status == 429:
        wait = getattr(exc, "retry_after", None)
        seconds = wait if isinstance(wait, int) and wait > 0 else DEFAULT_RETRY_AFTER
        headers["Retry-After"] = str(seconds)
    return headers


def protocol_error(request: Request[Any, Any, Any], exc: ProtocolError) -> Response[bytes]:
    """A ProtocolError raised by a JSON route."""
    log.info("http.refused", path=request.url.path, error=exc.code, status=exc.status)
    note_refusal(exc.code)
    return json_reply({"error": exc.code, "message": exc.message}, exc.status, error_headers(exc))


def body_too_large(request: Request[Any, Any, Any], exc: BodyTooLarge) -> Response[bytes]:
    """413 for an oversized body (O19); the code stays the schema failure's."""
    log.info("http.refused", path=request.url.path, error="invalid_request", status=413)
    note_refusal("invalid_request")
    return json_reply({"error": "invalid_request", "message": str(exc)}, 413)
