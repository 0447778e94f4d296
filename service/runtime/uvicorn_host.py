"""uvicorn, hosted in our own loop on the socket `serve` already bound, with the limits it lacks.

uvicorn parses HTTP (httptools) and runs the application on the process's one loop (uvloop):
no thread hands a request to another, which on a two-core machine beat granian's Rust threads
for registrations (docs/benchmarks.md, session 14). Out of the box it has two gaps a stranger
can use, both closed here in its HTTP/1 protocol:

- **no deadline for a request's head**: a connection that sends nothing, or trickles its
  headers a byte at a time, stays open for ever (uvicorn's keep-alive timeout starts only after
  an answer). Here a request's head must be complete within `head_seconds` of the connection's
  start or of its first byte; past that the connection is closed (granian's
  `header_read_timeout` does the same, with the same setting).
- **no limit on a request's size before the body**: uvicorn answered an 8 MB header, holding it
  all in memory (and its URL grows by concatenation). Here a head longer than `head_limit`
  bytes gets 431 and the connection is closed.

Its 400 for a request that is not HTTP is answered in the service's JSON shape
(`{"error": "invalid_request", ...}`) instead of uvicorn's plain text, and its proxy-headers
middleware is off: the client is the app's to find.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

GRACEFUL_SECONDS = 5  # how long a stopping server waits for requests in flight


class _HeadTooLarge(Exception):
    pass


class HeadLimits(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on every request head."""

    head_seconds: int  # set by `limited`, a class per server
    head_limit: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # from the connection's start, and from each request's first byte
        self._head_bytes = 0  # of the request line and the headers the parser has passed on
        self._unfinished = 0  # bytes of the reads that left the head unfinished
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # a header still unfinished is held by the parser, not passed on yet: what the reads
        # that left it unfinished brought bounds what it holds
        self._unfinished += len(data)
        if self._unfinished > self.head_limit:
            self._refuse(431, "request line and headers too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._unfinished = 0
        if self._head_deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._unfinished = 0
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer when the parser fails, a callback's exception included."""
        if self._head_bytes > self.head_limit:  # _count stopped the parser
            self._refuse(431, "request line and headers too large")
        else:
            self._refuse(400, "malformed HTTP request")

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.head_limit:
            raise _HeadTooLarge  # the parser stops and fails: send_400_response answers

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_late)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        """The head did not arrive in time: the connection is closed, as granian closes it
        (nothing was asked yet, so nothing is answered)."""
        self._head_deadline = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        self._disarm()
        body = msgspec.json.encode({"error": "invalid_request", "message": message})
        reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"cache-control: no-store\r\nconnection: close\r\n\r\n%s"
            % (status, reason, len(body), body)
        )
        self.transport.close()


def limited(head_seconds: int, head_limit: int) -> type[HeadLimits]:
    """HeadLimits with these limits (uvicorn builds one protocol object per connection from a
    class, so the settings travel as class attributes)."""
    limits = {"head_seconds": head_seconds, "head_limit": head_limit}
    return type("HeadLimits", (HeadLimits,), limits)


class HostedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: our loop owns SIGINT/SIGTERM."""

    def __init__(self, app: Any, head_seconds: int, head_limit: int) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                http=limited(head_seconds, head_limit),
                lifespan="on",
                ws="none",
                log_config=None,
                access_log=False,  # service.http.app logs one line per request, with its id
                server_header=False,
                # the client behind a proxy is the app's to find (service.http.client_address,
                # AUTHLEDGER_TRUSTED_PROXIES); uvicorn's own rewrites it from X-Forwarded-For
                # for any peer on 127.0.0.1 (security finding 6)
                proxy_headers=False,
                timeout_graceful_shutdown=GRACEFUL_SECONDS,
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_stop(self) -> None:
        self.should_exit = True
