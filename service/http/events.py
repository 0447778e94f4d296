"""V9 `POST /agent/event/notify`: a provider's Security Event Token (RFC 8417, RFC 8935) at
the v0.6 door (design section 5.2; contract section 6, cases 29-33).

The body is the compact SET itself, sent as `application/secevent+jwt` (any other media type,
an empty or non-JWT body, or more than 8 KiB of token → `invalid_request`; more than 16 KiB of
body → 413). The command (`receive_set`, service/commands/revocation.py) verifies it and
revokes its subject through the core E9 shares; success is 202 with an empty body. Answers
and refusals are the events family's: `{err, description}`, never cached
(service/http/envelopes.py). Limit: `revoke_per_issuer`, E9's budget, spent only once the SET
is verified (a forged one names a trusted issuer for nothing).
"""

from __future__ import annotations

import re
from typing import Any

from litestar import MediaType, Request, Response, Router, post
from litestar.di import NamedDependency

from service.commands.context import Context
from service.commands.revocation import receive_set
from service.domain.errors import ProtocolError
from service.http.answers import Doc
from service.http.bodies import BODY_LIMIT, NO_STORE, media_type, read_raw, v06_caller
from service.http.envelopes import EVENTS
from service.http.openapi import documented, ok
from service.http.tenancy import door_guard
from service.providers.jwt_parts import MAX_TOKEN_BYTES
from service.runtime.resources import Resources
from service.tenancy.config import EVENTS_PATH

SECEVENT_JWT = "application/secevent+jwt"
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class EventsError(Doc, frozen=True):
    """A refusal at `/agent/event/notify` (V9): the reference's `{err, description}`."""

    err: str
    description: str


NOTIFY_DOC = documented(
    body={
        SECEVENT_JWT: {
            "type": "string",
            "maxLength": MAX_TOKEN_BYTES,
            "pattern": _COMPACT.pattern.join("^$"),
            "description": "a Security Event Token (compact JWS, typ secevent+jwt)",
        }
    },
    answers={
        202: ok(
            {"text/plain": {"type": "string", "maxLength": 0}},
            "Accepted: the subject's credentials, assertions and step-ups are revoked (or, "
            "when the SET carries no event this service acts on, nothing but its jti is kept)",
        )
    },
    refusals=(400, 404, 413, 429),
    operation_id="notifyEvent",
    error_body=EventsError,
)


async def read_set_token(request: Request[Any, Any, Any]) -> str:
    """V9's body: one compact JWT as `application/secevent+jwt`, else `invalid_request`."""
    if media_type(request) != SECEVENT_JWT:
        raise ProtocolError("invalid_request", f"send the SET as {SECEVENT_JWT}")
    raw = await read_raw(request)
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ProtocolError("invalid_request", "the body is not valid UTF-8") from None
    if not token:
        raise ProtocolError("invalid_request", "the body is empty; a SET is required")
    if len(token) > MAX_TOKEN_BYTES or not _COMPACT.fullmatch(token):
        raise ProtocolError(
            "invalid_request", f"the body is not a compact JWT of at most {MAX_TOKEN_BYTES} bytes"
        )
    return token


@post(EVENTS_PATH, summary="V9: a provider's Security Event Token (RFC 8935 push)",
      request_max_body_size=BODY_LIMIT, operation_class=NOTIFY_DOC)  # fmt: skip
async def notify(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[Context],
    resources: NamedDependency[Resources],
) -> Response[bytes]:
    token = await read_set_token(request)

    async def admit(issuer: str) -> None:  # E9's budget per verified issuer
        await resources.limiter.revocation(ctx.tenant.tenant_id, issuer)

    await receive_set(ctx, token, v06_caller(request), admit)
    return Response(b"", status_code=202, media_type=MediaType.TEXT, headers=NO_STORE)


def events_router() -> Router:
    return Router(
        "/",
        route_handlers=[notify],
        tags=["revocation (v0.6)"],
        guards=[door_guard("v06")],
        exception_handlers=EVENTS.handlers(),
    )
