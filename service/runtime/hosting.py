"""The HTTP job of a process: the Litestar app behind uvicorn (the default) or granian.

Imported only by processes that serve HTTP (`serve`, `dev`), so `authledger worker` loads
neither the app nor an HTTP server (issue 11, memory). Both servers run inside the process's
one loop, stopped by our stop event (service.runtime.loops.supervise), never by their own signals.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import structlog
from litestar.types import ControllerRouterHandler

from service.http.app import create_app
from service.runtime.listening import StartupError
from service.runtime.loops import Job
from service.runtime.resources import Resources
from service.settings import Settings

log = structlog.get_logger("service.runtime.loops")
# The longest request head (request line and headers) either server accepts, in bytes: far
# above any request of the protocol (assertions and codes travel in bodies), far below what a
# stranger's connection could otherwise make a process hold.
HEAD_LIMIT = 64 * 1024


def http_job(
    settings: Settings,
    resources: Resources,
    sock: socket.socket,
    dev_routes: Sequence[ControllerRouterHandler] = (),
) -> Job:
    app = create_app(settings, resources=resources, dev_routes=dev_routes)
    if settings.http_server == "granian":
        from service.runtime.granian_host import HostedGranian

        granian = HostedGranian(app, sock, settings.http_head_timeout, HEAD_LIMIT)

        async def serve_granian() -> None:
            log.info("http.serving", server="granian", pid=os.getpid())
            await granian.serve()

        return Job("http", serve_granian(), granian.request_stop)
    from service.runtime.uvicorn_host import HostedUvicorn

    server = HostedUvicorn(app, settings.http_head_timeout, HEAD_LIMIT)

    async def run() -> None:
        log.info("http.serving", server="uvicorn", pid=os.getpid())
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits on start-up failures; keep it in the loop
            raise StartupError(f"HTTP server failed to start (status {exc.code})") from None

    return Job("http", run(), server.request_stop)
