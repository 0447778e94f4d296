"""granian, hosted in our own loop on the socket `serve` already bound.

granian parses HTTP and does the socket I/O in Rust threads, outside the GIL; our asyncio loop
(uvloop) runs only the application. `AUTHLEDGER_HTTP_SERVER=granian`; uvicorn is the default
(service.runtime.uvicorn_host; the two measured against each other in docs/benchmarks.md).
Its embedded server is used the way uvicorn is: in the process's one loop, beside the other
jobs, stopped by our own stop event, never by its signal handlers. Three changes to granian's
embedded server:

- it listens on the socket the `serve` parent bound and shared with every child (granian
  would bind its own), so `--workers N` keeps one socket and one accept queue;
- one granian worker per process (`serve --workers` makes the processes);
- a request's head held to the limits uvicorn is given (service.runtime.hosting): its size
  (hyper's read buffer) and the time to send it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server

BACKLOG = 1024


class HostedGranian(Server):
    """granian's embedded server on a socket bound elsewhere."""

    def __init__(self, app: Any, sock: socket.socket, head_seconds: int, head_limit: int) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,  # the app has no lifespan hooks; Resources are ours
            http=HTTPModes.http1,
            http1_settings=HTTP1Settings(
                header_read_timeout=head_seconds * 1000, max_buffer_size=head_limit
            ),
            websockets=False,
            backlog=BACKLOG,
            log_enabled=False,  # service.http.app writes the access line, with the request id
        )
        self._sock = sock

    def _init_shared_socket(self) -> None:
        self._ssp = None
        # granian closes the descriptor it holds when it stops: give it its own copy, so the
        # socket stays ours to close (and `serve --workers` children each hold one)
        # (fd, is_uds, backlog): the state granian pickles a holder to; its stub omits __new__
        self._shd = SocketHolder(os.dup(self._sock.fileno()), False, BACKLOG)  # type: ignore[call-arg,assignment]

    def request_stop(self) -> None:
        self.interrupt_signal = True
        self.main_loop_interrupt.set()
