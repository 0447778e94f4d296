"""The floor with its HTTP: registration_floor.py's work behind the smallest HTTP server.

    .venv/bin/python bench/floor_server.py --port PORT [--processes P]   (bench/write_path.py
                                                                          --floor starts it)

bench/registration_floor.py measures the unavoidable work of an anonymous registration with no
HTTP at all. An agent reaches us over HTTP, though, and the reference implementation we are
compared with answers HTTP too. This server adds only what HTTP cannot skip: accept the
connection, read one HTTP/1.1 request (request line, headers, a Content-Length body) on a
keep-alive connection, and write a JSON answer of the real one's size and fields, with the
request id echoed in X-Request-ID and recorded as the events' correlation id (as `serve`
does, so write_path.py checks every 200 is in the log). No framework, no validation of the
body, no logging, no metrics, no tenant, no rate limit: everything `serve` adds on top of
this is ours to justify.

P processes (default 2, as `serve --workers 2`) share the port with SO_REUSEPORT; each runs
registration_floor.py's writer (group commit, one batch in flight). `GET /readyz` answers
200 once the pool is up. SIGTERM stops them all.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
from registration_floor import Registration, commit, writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_encode = msgspec.json.Encoder().encode
MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024


def _reply(status: bytes, body: bytes, request_id: str) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"cache-control: no-store\r\nx-request-id: " + request_id.encode() + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class Connection(asyncio.Protocol):
    """One keep-alive connection: requests answered in order, one at a time."""

    def __init__(self, queue: asyncio.Queue[Registration]) -> None:
        self.queue = queue
        self.buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD and self.transport is not None:
                self.transport.close()
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length > MAX_BODY and self.transport is not None:
            self.transport.close()
            return
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        method, path = head[0].split(" ")[:2]
        self.busy = True
        asyncio.get_running_loop().create_task(self._answer(method, path))

    async def _answer(self, method: str, path: str) -> None:
        request_id = uuid.uuid4().hex
        if method == "POST" and path == "/agent/auth":
            registration = Registration(datetime.now(UTC), request_id)
            self.queue.put_nowait(registration)
            await registration.done
            reply = _reply(b"200 OK", registration.answer(), request_id)
        elif method == "GET" and path == "/readyz":
            reply = _reply(b"200 OK", b'{"status":"ready"}', request_id)
        else:
            reply = _reply(b"404 Not Found", b'{"error":"not_found"}', request_id)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)
        self.busy = False
        if self.buffer:
            self._next()


async def serve(url: str, port: int) -> None:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    queue: asyncio.Queue[Registration] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    committing = loop.create_task(writer(pool, queue, commit))
    server = await loop.create_server(
        lambda: Connection(queue), "127.0.0.1", port, reuse_port=True, backlog=1024
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    committing.cancel()
    await pool.close()


def _child(url: str, port: int) -> None:
    from service.runtime.processes import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(url, port))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(args.database_url, args.port))
        for _ in range(args.processes)
    ]
    for child in children:
        child.start()

    def stop(*_: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
