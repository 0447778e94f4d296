"""Security finding 11: a stranger's connection cannot hold a `serve` process. Every request
head has a deadline and a size limit, under either HTTP server (service.runtime.uvicorn_host,
granian_host).

Against a real `authledger serve` with `AUTHLEDGER_HTTP_HEAD_TIMEOUT=1`. Out of the box uvicorn
kept a silent or trickling connection open for ever and answered an 8 MB header: the first
three probes fail against it, and the JSON 400's too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from service.runtime.hosting import HEAD_LIMIT
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, Server, authledger_env, serving

SERVERS = ["uvicorn", "granian"]
DEADLINE = 1  # AUTHLEDGER_HTTP_HEAD_TIMEOUT in these tests, seconds
CLOSED_WITHIN = 5.0  # the deadline plus a generous margin for a busy machine, seconds


@asynccontextmanager
async def _serve(backend: Backend, database_url: str, http_server: str) -> AsyncIterator[Server]:
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url,
        AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_HTTP_SERVER=http_server,
        AUTHLEDGER_HTTP_HEAD_TIMEOUT=str(DEADLINE),
        **SECRETS,
    )
    async with serving([], env) as server:
        yield server


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing; fails if it is still open after `seconds`."""
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(4096):
                received += chunk
    except TimeoutError:
        pytest.fail(f"still open after {seconds} s")
    except ConnectionResetError:
        pass  # closed with unread bytes of ours still queued: the kernel resets
    return received


@pytest.mark.parametrize("http_server", SERVERS)
async def test_a_silent_connection_is_closed(
    backend: Backend, database_url: str, http_server: str
) -> None:
    async with _serve(backend, database_url, http_server) as server:
        reader, writer = await _connect(server)
        started = time.monotonic()
        assert await _closed_within(reader, CLOSED_WITHIN) == b""
        assert time.monotonic() - started >= DEADLINE * 0.9  # the deadline, not at once
        writer.close()


@pytest.mark.parametrize("http_server", SERVERS)
async def test_a_trickled_head_is_cut_off(
    backend: Backend, database_url: str, http_server: str
) -> None:
    """A header line every 0.2 s: each read is new data, yet the head never ends in time."""
    async with _serve(backend, database_url, http_server) as server:
        reader, writer = await _connect(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle() -> None:
            for n in range(int(CLOSED_WITHIN / 0.2)):
                writer.write(b"X-Slow-%d: 1\r\n" % n)
                await asyncio.sleep(0.2)  # the trickle itself: a header line at a time

        trickling = asyncio.create_task(trickle())
        try:
            assert b"200" not in await _closed_within(reader, CLOSED_WITHIN)
        finally:
            trickling.cancel()
            writer.close()


@pytest.mark.parametrize("http_server", SERVERS)
async def test_a_head_past_the_limit_is_refused_and_one_within_it_served(
    backend: Backend, database_url: str, http_server: str
) -> None:
    async with _serve(backend, database_url, http_server) as server:
        within = await server.http.get("/healthz", headers={"X-Pad": "a" * (HEAD_LIMIT - 1024)})
        assert within.status_code == 200

        # ours counts the head's bytes; granian's check is hyper's read buffer, which may grow
        # to about twice its limit before it is checked
        past = HEAD_LIMIT + 1024 if http_server == "uvicorn" else 3 * HEAD_LIMIT
        reader, writer = await _connect(server)
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * past + b"\r\n\r\n"
        )
        answer = await _closed_within(reader, CLOSED_WITHIN)
        writer.close()
        assert b" 200 " not in answer.split(b"\r\n", 1)[0]
        if http_server == "uvicorn":  # ours: the service's JSON shape (granian: hyper's own)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert json.loads(body)["error"] == "invalid_request"


async def test_a_keep_alive_connection_gets_a_new_deadline_for_each_request(
    backend: Backend, database_url: str
) -> None:
    """The deadline counts from a request's first byte, not from the connection's start: a
    client that pauses between requests (less than uvicorn's 5 s keep-alive) is still served."""
    async with _serve(backend, database_url, "uvicorn") as server:
        reader, writer = await _connect(server)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSED_WITHIN)
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await asyncio.sleep(DEADLINE * 1.5)  # idle past one head deadline, within keep-alive
        writer.close()


async def test_a_malformed_request_gets_a_json_400(backend: Backend, database_url: str) -> None:
    async with _serve(backend, database_url, "uvicorn") as server:
        reader, writer = await _connect(server)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        answer = await _closed_within(reader, CLOSED_WITHIN)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert json.loads(body) == {"error": "invalid_request", "message": "malformed HTTP request"}
