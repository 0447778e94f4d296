"""A webhook receiver of Security Event Tokens for tests: real HTTP on 127.0.0.1, in the test's
own event loop, so the push worker goes through httpx and sockets.

It records every request (headers and body) and answers from a script: `answer(500, 500,
500)` makes the next three answers 500, after which it answers `status` (202 by default).
It can be made to misbehave the way receivers do: hold answers until `release` (so a test can
change things while a push is in flight), stop listening (`go_down`, connections refused)
and listen again on the same port (`come_back`). Tests await `wait_for(count)` instead of
sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import jwt

PATH = "/events"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    answered: int  # the status this receiver answered

    @property
    def token(self) -> str:
        return self.body.decode()

    def claims(self) -> dict[str, Any]:
        """The SET's claims, not verified (tests verify separately, against the JWKS)."""
        decoded: dict[str, Any] = jwt.decode(self.token, options={"verify_signature": False})
        return decoded

    @property
    def txn(self) -> str:
        return str(self.claims()["txn"])


class SetReceiver:
    """Use as `async with SetReceiver() as receiver: ...`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.status = 202  # the answer once the script is used up
        self.received: list[Received] = []
        self._script: deque[tuple[int, bytes]] = deque()
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Condition()
        self._released = asyncio.Event()
        self._released.set()
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("start the receiver before asking its URL")
        return f"http://{self.host}:{self.port}{PATH}"

    def answer(self, *statuses: int, body: dict[str, Any] | None = None) -> None:
        """Answer the next requests with these statuses (and this JSON body), in order."""
        raw = json.dumps(body).encode() if body is not None else b""
        self._script.extend((status, raw) for status in statuses)

    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    # serving

    async def start(self) -> SetReceiver:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        await self.go_down()
        self._released.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def __aenter__(self) -> SetReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def go_down(self) -> None:
        """Stop listening: connections are refused until `come_back`."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def come_back(self) -> None:
        await self.start()

    def hold(self) -> None:
        """Record requests but keep them waiting for an answer until `release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def wait_for(self, count: int, *, patience: float = 15.0) -> list[Received]:
        """Once `count` requests have arrived in total (answered or held)."""
        async with asyncio.timeout(patience), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, answer = self._script.popleft() if self._script else (self.status, b"")
            async with self._arrived:
                self.received.append(Received(method, target, headers, body, status))
                self._arrived.notify_all()
            await self._released.wait()
            reply = [f"HTTP/1.1 {status} X", "Connection: close", f"Content-Length: {len(answer)}"]
            if answer:
                reply.append("Content-Type: application/json")
            writer.write(("\r\n".join(reply) + "\r\n\r\n").encode("latin-1") + answer)
            await writer.drain()
        except (
            ConnectionError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
