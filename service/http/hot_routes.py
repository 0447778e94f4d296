"""E4, `POST /agent/auth`, served in front of the framework: the busiest write route.

Litestar's routing, guard, dependency injection, Request and Response cost a registration
about as much CPU as the command itself (issue 11, docs/benchmarks.md). This layer sits inside
the request-id and tenant middlewares, so the request id, the access line, the metrics and the
tenant are those of every request, and in front of Litestar. It takes a request only when it
can answer it as the framework's route would:

- `POST` to the route's exact path, on a tenant that opens the v1 door;
- one Content-Length within the route's limit, no Transfer-Encoding, a JSON media type.

Anything else (another method or path, a shut door, a missing or oversized length, a chunked
body, another media type) goes to Litestar untouched and is answered there, as before. A taken
request's body is checked and decoded by the route's own function (`bodies.decode_json`), the
same code limits, registers and shapes the answer (`agent_auth.registration_answer`), and a
refusal has the same shape and the same log line and count (`errors.refused`,
`errors.unhandled`). The framework's route stays: for the requests passed on, and for the
OpenAPI document. `tests/e2e/test_hot_routes.py` sends the same requests to both.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from service.domain.errors import ProtocolError
from service.http.agent_auth import register, registration_answer
from service.http.bodies import (
    BODY_LIMIT,
    NO_STORE,
    V1_DIALECT,
    V1_DOOR,
    RegisterBody,
    decode_json,
    scope_caller,
)
from service.http.client_address import Network
from service.http.errors import Reply, refused, unhandled
from service.http.tenancy import TENANT_STATE
from service.runtime.resources import Resources
from service.tenancy.config import REGISTER_PATH, TenantConfig

_JSON = b"application/json"


def hot_routes(app: ASGIApp, resources: Resources, proxies: tuple[Network, ...]) -> ASGIApp:
    """`app` (the framework) behind E4's lean path."""

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        tenant = _taken(scope)
        if tenant is None:
            await app(scope, receive, send)
            return
        raw = await _body(receive)
        if raw is None:
            return  # the client left before its body arrived: nobody to answer
        # what the framework records of a routed request (the metrics' route label)
        scope["route_handler"] = register
        scope["path_template"] = REGISTER_PATH
        try:
            body = decode_json(raw, RegisterBody)
            ctx = await resources.context_for(tenant)
            who = scope_caller(scope, proxies, door=V1_DOOR, dialect=V1_DIALECT)
            reply = Reply(await registration_answer(ctx, resources, body, who), 200, {})
        except ProtocolError as exc:
            reply = refused(REGISTER_PATH, exc)
        except Exception as exc:  # answered as the framework's handler does
            reply = unhandled("POST", REGISTER_PATH, exc)
        await _send_json(send, reply)

    return route


def _taken(scope: Scope) -> TenantConfig | None:
    """The tenant, when this layer answers the request; None when the framework does."""
    if scope["type"] != ScopeType.HTTP or scope["path"] != REGISTER_PATH:
        return None
    if scope["method"] != "POST" or not _plain_json(scope["headers"]):
        return None
    tenant = scope.get("state", {}).get(TENANT_STATE)
    return tenant if isinstance(tenant, TenantConfig) and tenant.opens("v1") else None


def _plain_json(headers: Any) -> bool:
    """One Content-Length within the limit, no Transfer-Encoding, and a JSON media type (the
    first Content-Type, as the framework reads it)."""
    length: bytes | None = None
    media: bytes | None = None
    for name, value in headers:
        if name == b"content-length":
            if length is not None:
                return False
            length = value
        elif name == b"content-type":
            if media is None:
                media = value
        elif name == b"transfer-encoding":
            return False
    if length is None or media is None or not length.isdigit() or int(length) > BODY_LIMIT:
        return False
    media = media.split(b";", 1)[0].strip().lower()
    return media == _JSON or media.endswith(b"+json")


async def _body(receive: Receive) -> bytes | None:
    """The whole body (its length is already known to be within the limit), or None when the
    client disconnected."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, reply: Reply) -> None:
    encoded = msgspec.json.encode(reply.body)
    answer_headers = {**NO_STORE, **reply.headers}  # as bodies.json_reply merges them
    headers = [
        (b"content-type", _JSON),
        (b"content-length", str(len(encoded)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers.items()),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": encoded, "more_body": False})
