"""No request waits on a worker thread: every guard, dependency and handler of the app runs
on the event loop.

Litestar runs a plain-function guard or dependency, and a plain-function handler unless it says
`sync_to_thread=False`, in a thread pool: a thread hop on every request, with the GIL handed
back and forth. A sync door guard did that to every v1 registration (issue 11: 530 against 438
µs of CPU per registration in-process); this test names any that comes back.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from service.http.app import create_app
from tests.support.app_client import Service, running_service, settings_for
from tests.support.backends import Backend


@pytest.fixture
async def app(backend: Backend, database_url: str) -> AsyncIterator[Litestar]:
    async with running_service(backend, database_url) as svc:
        yield _app(svc, backend, database_url)


def _app(svc: Service, backend: Backend, database_url: str) -> Litestar:
    return create_app(settings_for(backend, database_url), resources=svc.resources)


def _on_the_loop(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - a guard may be an object with __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _handlers(app: Litestar) -> list[HTTPRouteHandler]:
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler):
                found.append(handler)
    return found


async def test_every_guard_dependency_and_handler_runs_on_the_loop(app: Litestar) -> None:
    handlers = _handlers(app)
    assert len(handlers) > 20  # the whole app was walked, not an empty list
    hops = []
    for handler in handlers:
        where = f"{sorted(handler.http_methods)} {sorted(handler.paths)}"
        hops += [f"{where}: guard {g!r}" for g in handler.resolve_guards() if not _on_the_loop(g)]
        for name, provide in handler.resolve_dependencies().items():
            if provide.has_sync_callable and provide.sync_to_thread:
                hops.append(f"{where}: dependency {name}")
        if handler.has_sync_callable and handler.sync_to_thread:
            hops.append(f"{where}: the handler itself")
    assert hops == []
