"""The two busiest routes, answered in front of the framework: E4 `POST /agent/auth` (the
write path) and E10 `GET /api/me` (an agent's authenticated call).

Litestar's routing, guards, dependency injection, Request and Response cost a registration
about as much CPU as the command itself, and an `/api/me` answer more than the credential
check (issue 11, docs/benchmarks.md). This layer sits inside the request-id and tenant
middlewares, so the request id, the access line, the metrics and the tenant are those of
every request, and in front of Litestar. It takes a request only when it can answer it as
the framework's route would:

- `POST /agent/auth` with one Content-Length within the route's limit, no Transfer-Encoding
  and a JSON media type, on a tenant that opens the v1 door;
- `GET /api/me`.

Anything else (another method or path, a shut door, a missing or oversized length, a chunked
body, another media type) goes to Litestar untouched and is answered there, as before. What
happens after the request is taken is the framework route's own code: the body checked and
decoded by `bodies.decode_json`, the registration by `agent_auth.registration_answer`, the
bearer check and the answer by `resource.me_answer`; refusals have the same shape, log line
and count (`errors.refused`, `errors.unhandled`, the bearer challenge). The framework's routes
stay, for the requests passed on and for the OpenAPI document. `tests/e2e/test_hot_routes.py`
sends the same requests to both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from service.domain.errors import ProtocolError
from service.http.agent_auth import registration_answer
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
from service.http.resource import (
    BEARER_AUTH,
    BearerAuth,
    BearerRefused,
    bearer_refusal,
    me_answer,
)
from service.http.tenancy import TENANT_STATE
from service.runtime.resources import Resources
from service.tenancy.config import ME_PATH, REGISTER_PATH, TenantConfig

_JSON = b"application/json"
Answer = tuple[bytes, int, dict[str, str]]  # body, status, headers beside NO_STORE
Lean = Callable[[Scope, Receive, TenantConfig], Awaitable[Answer | None]]


def hot_routes(
    app: ASGIApp,
    resources: Resources,
    proxies: tuple[Network, ...],
    routes: dict[str, HTTPRouteHandler],
) -> ASGIApp:
    """`app` (the framework) behind the lean paths of E4 and E10. `routes`: the framework's
    handler of each path, recorded in the scope as the framework would (the metrics label a
    request by its route); E10's lean path checks bearers with its route's own `BearerAuth`
    and is there only when that route is."""

    async def registration(scope: Scope, receive: Receive, tenant: TenantConfig) -> Answer | None:
        raw = await _body(receive)
        if raw is None:
            return None  # the client left before its body arrived: nobody to answer
        try:
            body = decode_json(raw, RegisterBody)
            ctx = await resources.context_for(tenant)
            who = scope_caller(scope, proxies, door=V1_DOOR, dialect=V1_DIALECT)
            reply = Reply(await registration_answer(ctx, resources, body, who), 200, {})
        except ProtocolError as exc:
            reply = refused(REGISTER_PATH, exc)
        except Exception as exc:  # answered as the framework's handler does
            reply = unhandled("POST", REGISTER_PATH, exc)
        return msgspec.json.encode(reply.body), reply.status, reply.headers

    lean: dict[tuple[str, str], Lean] = {("POST", REGISTER_PATH): registration}
    if ME_PATH in routes:
        lean[("GET", ME_PATH)] = _me(routes[ME_PATH].opt[BEARER_AUTH])

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] not in routes:
            await app(scope, receive, send)
            return
        handler = lean.get((scope["method"], scope["path"]))
        tenant = _tenant(scope) if handler is not None else None
        if handler is None or tenant is None or not _takes(scope, tenant):
            await app(scope, receive, send)
            return
        # what the framework records of a routed request (the metrics' route label)
        scope["route_handler"] = routes[scope["path"]]
        scope["path_template"] = scope["path"]
        answer = await handler(scope, receive, tenant)
        if answer is not None:
            await _send(send, *answer)

    return route


def _me(auth: BearerAuth) -> Lean:
    async def me(scope: Scope, _: Receive, tenant: TenantConfig) -> Answer:
        try:
            return await me_answer(auth, scope["headers"], tenant), 200, {}
        except BearerRefused as exc:
            body, status, headers = bearer_refusal(exc)
            return msgspec.json.encode(body), status, headers
        except Exception as exc:  # answered as the framework's handler does
            reply = unhandled("GET", ME_PATH, exc)
            return msgspec.json.encode(reply.body), reply.status, reply.headers

    return me


def _tenant(scope: Scope) -> TenantConfig | None:
    tenant = scope.get("state", {}).get(TENANT_STATE)
    return tenant if isinstance(tenant, TenantConfig) else None


def _takes(scope: HTTPScope, tenant: TenantConfig) -> bool:
    if scope["method"] == "GET":
        return True  # /api/me: no body, no door
    return tenant.opens("v1") and _plain_json(scope["headers"])


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


async def _send(send: Send, body: bytes, status: int, extra: dict[str, str]) -> None:
    answer_headers = {**NO_STORE, **extra}  # as bodies.json_reply merges them
    headers = [
        (b"content-type", _JSON),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
