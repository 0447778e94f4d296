"""The pages family (docs/design/v06-dialect.md, section 5.1): how the person's pages of the
v0.6 door answer, refusals included.

Every answer is HTML with `PAGE_HEADERS` (no-store, the CSP, unframeable, no referrer). A
refusal is a page saying what happened and what to do, with the status of its code; a 429
carries `Retry-After`; a body past 16 KiB is a 413 page; a Litestar refusal (a 405, say) keeps
its status and headers, also when raised before routing (`pages_first`, at the app); Postgres
not answering is a 503 page with `Retry-After`; anything else a 500 page, logged with its
traceback and answered without one. Form bodies are urlencoded,
strict: each field exactly once, no field the page does not send.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import structlog
from litestar import MediaType, Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from service.domain.errors import ProtocolError
from service.http.answers import PAGE
from service.http.bodies import FORM, BodyTooLarge, media_type, read_raw
from service.http.errors import UNAVAILABLE_RETRY_AFTER, database_unavailable, error_headers
from service.http.page_templates import PAGE_HEADERS, problem_view
from service.observability.request_outcome import note_refusal

AnyRequest = Request[Any, Any, Any]
log = structlog.get_logger("service.http")
# What the OpenAPI document says the pages answer (service.http.openapi `documented`).
PAGE_CONTENT: dict[str, Any] = {"text/html": PAGE}
REDIRECT_CONTENT: dict[str, Any] = {
    "text/html": {"type": "string", "maxLength": 0, "description": "empty: follow Location"}
}

# What a person is told, per code: (title, what to do).
_PROBLEMS: dict[str, tuple[str, str]] = {
    "not_found": ("Not found", "There is no such page here."),
    "rate_limited": ("Too many tries", "Too many tries from here. Wait a while, then try again."),
    "invalid_request": (
        "This request is malformed",
        "Go back, reload the page and try again.",
    ),
}


def html_reply(
    page: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[Cookie] = (),
) -> Response[str]:
    """A page of the family."""
    return Response(
        page, status_code=status, media_type=MediaType.HTML,
        headers={**PAGE_HEADERS, **(headers or {})}, cookies=list(cookies),
    )  # fmt: skip


def problem_page(
    status: int,
    title: str,
    advice: str,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[Cookie] = (),
) -> Response[str]:
    """A refusal page, no-store like every other."""
    return html_reply(problem_view(title, advice), status, headers, cookies)


def refused(_: AnyRequest, exc: ProtocolError) -> Response[str]:
    """A ProtocolError raised on a page (a guard's 404, a 429, a malformed form)."""
    title, advice = _PROBLEMS.get(exc.code, ("This did not work", exc.message))
    log.info("http.refused", error=exc.code, status=exc.status)
    note_refusal(exc.code)
    return problem_page(exc.status, title, advice, error_headers(exc))


def too_large(_: AnyRequest, exc: BodyTooLarge) -> Response[str]:
    log.info("http.refused", error="invalid_request", status=413)
    note_refusal("invalid_request")
    return problem_page(413, "This request is too large", str(exc))


def http_refusal(_: AnyRequest, exc: HTTPException) -> Response[str]:
    """Litestar's own refusals (405, 400 …) as pages, with their status and headers."""
    status = exc.status_code
    phrase = HTTPStatus(status).phrase
    note_refusal(phrase.lower().replace(" ", "_").replace("-", "_"))
    if status >= 500:
        log.error("http.page_error", status=status, detail=exc.detail)
    return problem_page(status, phrase, "Go back and try again.", exc.headers or {})


def failed(request: AnyRequest, exc: Exception) -> Response[str]:
    """Anything unexpected: 503 when Postgres does not answer, else 500, never a traceback."""
    if database_unavailable(exc):
        log.warning("http.database_unavailable", path=request.url.path, error=type(exc).__name__)
        note_refusal("unavailable")
        retry = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
        return problem_page(503, "Unavailable", "Please try again in a moment.", retry)
    log.error("http.unhandled", method=request.method, path=request.url.path, exc_info=exc)
    note_refusal("internal_error")
    return problem_page(500, "Something went wrong", "Please try again later.")


def pages_first(
    paths: Collection[str], default: Callable[[AnyRequest, HTTPException], Response[Any]]
) -> Callable[[AnyRequest, HTTPException], Response[Any]]:
    """The app's handler of Litestar's refusals raised before routing (a 405: a page's path,
    another method), which a router's handlers never see: on one of the pages' `paths` (one
    trailing slash ignored) the family's page, elsewhere `default`'s answer."""

    def handle(request: AnyRequest, exc: HTTPException) -> Response[Any]:
        if (request.url.path.rstrip("/") or "/") in paths:
            return http_refusal(request, exc)
        return default(request, exc)

    return handle


PAGE_HANDLERS: ExceptionHandlersMap = {
    ProtocolError: refused,
    BodyTooLarge: too_large,
    HTTPException: http_refusal,
    Exception: failed,
}


async def read_form(request: AnyRequest, fields: tuple[str, ...]) -> dict[str, str]:
    """An urlencoded form holding exactly `fields`, each once (a page sends nothing else);
    ProtocolError `invalid_request` otherwise. Values are free text: the caller checks them."""
    if media_type(request) != FORM:
        raise ProtocolError("invalid_request", "send the form as " + FORM)
    raw = await read_raw(request)
    try:
        parsed = parse_qs(
            raw.decode("utf-8"), strict_parsing=bool(raw), keep_blank_values=True,
            max_num_fields=len(fields) + 1,
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("invalid_request", "the form is malformed") from None
    if set(parsed) != set(fields) or any(len(values) != 1 for values in parsed.values()):
        raise ProtocolError("invalid_request", "the form's fields are not this page's")
    values = {name: values[0] for name, values in parsed.items()}
    if any("\x00" in value for value in values.values()):
        raise ProtocolError("invalid_request", "the form holds a NUL character")
    return values
