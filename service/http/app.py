"""The Litestar application, built from settings and already-open resources.

Nothing here reads the environment or opens connections: `service.runtime.loops` does that and
passes the results in. Every error leaves as JSON `{"error": ..., "message": ...}`, never as
a stack trace; every request gets an id (taken from a sane `X-Request-ID` or made up) that is
bound in structlog's contextvars and echoed in the response.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, cast

import structlog
from litestar import Litestar, MediaType, Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, ControllerRouterHandler, Message, Receive, Scope, Send

from service.caches.access import AccessCache
from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.access import ACCESS_GATE, AccessGate
from service.http.admin import admin_router
from service.http.agent_auth import agent_auth_router
from service.http.api_docs import assets_router, render_plugins
from service.http.audit import audit_router
from service.http.bodies import BodyTooLarge, json_reply
from service.http.claim_page import claim_page_router
from service.http.client_address import TRUSTED_PROXIES, networks
from service.http.confirm_page import confirm_page_router
from service.http.credentials import HANDLERS as CREDENTIALS
from service.http.discovery import discovery_router
from service.http.envelopes import in_family
from service.http.errors import body_too_large, protocol_error, unhandled
from service.http.events import events_router
from service.http.health import HealthController
from service.http.hot_routes import hot_routes
from service.http.identity import identity_router
from service.http.identity_pages import identity_pages_router
from service.http.index import index_route
from service.http.metrics import metrics_router
from service.http.oauth import oauth_router
from service.http.openapi import SCHEMA_PATH, SECURITY
from service.http.page_family import pages_first
from service.http.resource import resource_router
from service.http.revocations import list_revocations
from service.http.subscriptions import subscriptions_router
from service.http.tenancy import request_tenant, tenant_middleware
from service.observability import access_log
from service.observability.metrics import Metrics
from service.observability.request_outcome import Tracking, note_refusal
from service.runtime.resources import Resources
from service.settings import Settings
from service.tenancy.config import ME_PATH, REGISTER_PATH, TenantConfig

MAX_BODY_BYTES = 64 * 1024
HOT_ROUTES = {REGISTER_PATH: "POST", ME_PATH: "GET"}  # served by service.http.hot_routes
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()  # as ASGI spells header names: lower-case bytes
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
log = structlog.get_logger("service.http")


def create_app(
    settings: Settings,
    *,
    resources: Resources,
    dev_routes: Sequence[ControllerRouterHandler] = (),
    hot_paths: bool = True,
) -> Litestar:
    """The HTTP app: routes, error handling and request ids; settings passed in.

    `dev_routes` (the dev mailbox) are only ever passed by `authledger dev` (spec W13).
    `hot_paths=False` leaves every request to the framework (service.http.hot_routes'
    tests compare the two).
    """
    tenant = TenantConfig.from_settings(settings)

    async def provide_settings() -> Settings:
        return settings

    async def provide_resources() -> Resources:
        return resources

    # `ctx` depends on `resources`, so a handler that takes both resolves them one after the
    # other: two independent dependencies would cost an anyio task group per request.
    async def provide_context(
        request: Request[Any, Any, Any], resources: NamedDependency[Resources]
    ) -> Context:
        return await resources.context_for(request_tenant(request))

    access = resources.access or AccessCache(resources.pool)
    gate = AccessGate(settings.admin_token, access, tenant)
    operations = [] if resources.metrics is None else [metrics_router(gate, resources.metrics)]
    pages = identity_pages_router()
    confirm = confirm_page_router()  # the AuthKit profile's page (404 in the main profile)
    page_paths = frozenset(route.path for router in (pages, confirm) for route in router.routes)
    app = Litestar(
        route_handlers=[
            HealthController,
            discovery_router(tenant),  # its path-inserted PRM; the documents are per tenant
            agent_auth_router(),
            identity_router(),  # the v0.6 door (V1, V6, V8): 404 where a tenant keeps it shut
            oauth_router(),
            events_router(),  # V9, the v0.6 door's SET intake
            admin_router(settings, gate, list_revocations, *CREDENTIALS),
            audit_router(settings, gate),
            subscriptions_router(settings, gate),
            claim_page_router(),
            pages,
            confirm,
            resource_router(tenant, resources, gate),
            *operations,
            *dev_routes,
            assets_router(),
        ],
        dependencies={
            "settings": Provide(provide_settings, use_cache=True),
            "resources": Provide(provide_resources, use_cache=True),
            "ctx": Provide(provide_context),
        },
        # A v0.6 family's path answers in its family's shape even before routing (a 405).
        exception_handlers={
            HTTPException: pages_first(page_paths, in_family(http_error, lambda f: f.http_error)),
            ProtocolError: in_family(protocol_error, lambda f: f.protocol_error),
            BodyTooLarge: in_family(body_too_large, lambda f: f.body_too_large),
            Exception: in_family(internal_error, lambda f: f.internal_error),
        },
        request_max_body_size=MAX_BODY_BYTES,
        state=State({TRUSTED_PROXIES: networks(settings.trusted_proxies), ACCESS_GATE: gate}),
        openapi_config=OpenAPIConfig(
            title="authledger",
            version="0.1.0",
            path=SCHEMA_PATH,
            components=SECURITY,
            render_plugins=render_plugins(),
        ),
        logging_config=None,
        debug=False,
    )
    app.register(index_route({route.path for route in app.routes}))  # links to what is served
    # Around routing and error handling too, so 404s, 405s and 500s carry the id.
    handler = app.asgi_handler
    if hot_paths:
        proxies = networks(settings.trusted_proxies)
        handler = hot_routes(handler, resources, proxies, route_handlers(app, HOT_ROUTES))
    if resources.tenants is not None:
        handler = tenant_middleware(handler, resources.tenants)
    app.asgi_handler = request_id_middleware(handler, resources.metrics)
    return app


def route_handlers(app: Litestar, wanted: dict[str, str]) -> dict[str, HTTPRouteHandler]:
    """The framework's handler of each wanted path (path -> method)."""
    found: dict[str, HTTPRouteHandler] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path in wanted:
            method = wanted[route.path]
            found.update((route.path, h) for h in route.route_handlers if method in h.http_methods)
    return found


def error_body(error: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": error, "message": message, **extra}


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[object]:
    """An HTTPException as JSON with its own status and headers (e.g. Allow on a 405)."""
    status = exc.status_code
    code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    extra: dict[str, object] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["details"] = exc.extra
    note_refusal(code)
    return Response(
        error_body(code, exc.detail or HTTPStatus(status).phrase, **extra),
        status_code=status,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Anything unexpected: logged with its traceback, answered without one. Postgres not
    answering is no bug: 503 `unavailable` with Retry-After (service.http.errors)."""
    return json_reply(*unhandled(request.method, request.url.path, exc))


def request_id_middleware(app: ASGIApp, metrics: Metrics | None = None) -> ASGIApp:
    """Bind a request id for the logs, echo it back, log one line per request and count it
    (by route template: known once routed).

    Every request crosses this, so it is written for its cost: the id is bound and unbound
    with contextvar tokens (structlog's `bound_contextvars` copies the whole context), the
    answer's header list is rebuilt in place (not Litestar's `MutableScopeHeaders`), and a
    made-up id is 16 bytes of the CSPRNG in hex (32 characters, as `uuid4().hex` was, at a
    fifth of its cost). In-process (`bench/app_cpu.py`, docs/benchmarks.md session 12) the
    static endpoint went from 105-137 to 79-95 µs of CPU a request with these changes and
    the metrics' (service.observability.metrics.Metrics.observe_request)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        offered = ""
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_KEY:
                offered = value.decode("latin-1")
                break
        request_id = offered if _SANE_REQUEST_ID.match(offered) else os.urandom(16).hex()
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                _echo_request_id(message, request_id)
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            with Tracking() as done:
                try:
                    await app(scope, receive, send_with_id)
                finally:
                    seconds = time.perf_counter() - started
                    fast = access_log.installed()
                    if fast is not None:
                        fast.line(
                            method=scope["method"],
                            path=scope["path"],
                            status=status,
                            duration_ms=round(seconds * 1000, 2),
                            request_id=request_id,
                        )
                    else:
                        log.info(
                            "http.request",
                            method=scope["method"],
                            path=scope["path"],
                            status=status,
                            duration_ms=round(seconds * 1000, 2),
                        )
                    if metrics is not None:
                        route = scope.get("path_template") if "route_handler" in scope else None
                        metrics.observe_request(scope["method"], route, status, seconds, done)
        finally:
            structlog.contextvars.reset_contextvars(**bound)

    return middleware


def _echo_request_id(start: Message, request_id: str) -> None:
    """The response's X-Request-ID is the request's id, whatever the app put there."""
    given = cast("Iterable[tuple[bytes, bytes]]", start.get("headers", ()))
    headers = [(k, v) for k, v in given if k.lower() != _REQUEST_ID_KEY]
    headers.append((_REQUEST_ID_KEY, request_id.encode("latin-1")))
    start["headers"] = headers  # type: ignore[typeddict-unknown-key]
