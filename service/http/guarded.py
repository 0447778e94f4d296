"""The routers behind scoped credentials: /admin, /admin/audit, /admin/subscriptions and
/metrics. Each one has the same guard (service/http/access.access_guard, admitting an operator
credential or the scopes in ACCEPTS), answers its refusals as `{"error", "message"}`, and may
hand the service's Settings to its handlers (`settings_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from litestar import Request, Router
from litestar.types import ControllerRouterHandler

from service.http.access import (
    ACCEPTS,
    ACCESS_GATE,
    AccessGate,
    AdminRefused,
    access_guard,
    admin_refused,
)
from service.http.openapi import ADMIN, documented
from service.settings import Settings

SETTINGS = "settings"  # router opt key of the Settings
# The OpenAPI operation of an /admin route: `documented`, with the admin credentials' security.
admin_documented = partial(documented, security=ADMIN)


def guarded_router(
    handlers: Sequence[ControllerRouterHandler],
    gate: AccessGate,
    accepts: frozenset[str],
    *,
    tag: str,
    settings: Settings | None = None,
) -> Router:
    """A router at `/` whose every route passes the access guard first: `accepts` are the
    scopes admitted besides an operator credential (a handler's own ACCEPTS opt overrides)."""
    opt: dict[str, Any] = {ACCESS_GATE: gate, ACCEPTS: accepts}
    if settings is not None:
        opt[SETTINGS] = settings
    return Router(
        "/",
        route_handlers=list(handlers),
        guards=[access_guard],
        exception_handlers={AdminRefused: admin_refused},
        tags=[tag],
        opt=opt,
    )


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    """The Settings a guarded router was given."""
    settings: Settings = request.route_handler.opt[SETTINGS]
    return settings
