"""The HTTP job of a process: the Litestar app behind granian (the default) or uvicorn.

Imported only by processes that serve HTTP (`serve`, `dev`), so `authledger worker` loads
neither the app nor an HTTP server (issue 11, memory). Both servers run inside the process's
one loop, stopped by our stop event (service.runtime.loops.supervise), never by their own signals.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Generator, Sequence

import structlog
import uvicorn
from litestar.types import ControllerRouterHandler

from service.http.app import create_app
from service.runtime.listening import StartupError
from service.runtime.loops import Job
from service.runtime.resources import Resources
from service.settings import Settings

log = structlog.get_logger("service.runtime.loops")


class _HostedServer(uvicorn.Server):
    """uvicorn without its own signal handling: our loop owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def http_job(
    settings: Settings,
    resources: Resources,
    sock: socket.socket,
    dev_routes: Sequence[ControllerRouterHandler] = (),
) -> Job:
    app = create_app(settings, resources=resources, dev_routes=dev_routes)
    if settings.http_server == "granian":
        from service.runtime.granian_host import HostedGranian

        granian = HostedGranian(app, sock)

        async def serve_granian() -> None:
            log.info("http.serving", server="granian", pid=os.getpid())
            await granian.serve()

        return Job("http", serve_granian(), granian.request_stop)
    config = uvicorn.Config(
        app,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=False,  # service.http.app logs one line per request, request id included
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _HostedServer(config)

    async def run() -> None:
        log.info("http.serving", server="uvicorn", pid=os.getpid())
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits on start-up failures; keep it in the loop
            raise StartupError(f"HTTP server failed to start (status {exc.code})") from None

    def request_stop() -> None:
        server.should_exit = True

    return Job("http", run(), request_stop)
