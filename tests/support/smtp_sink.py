"""A real SMTP server for tests: aiosmtpd in the test's loop, on 127.0.0.1 and a free port.

It keeps every message it accepts, can refuse recipients with a given reply (say `451 …` or
`550 …`) to play a failing relay, can be stopped and started again on the same port to play an
outage, and can run a hook while it holds a message, before it answers the client.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())


class SmtpSink:
    """Accepts (or refuses) mail on `url`; see the module docstring."""

    def __init__(
        self,
        *,
        port: int = 0,
        refuse: str | None = None,
        on_message: Callable[[Received], Awaitable[None]] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.refuse = refuse  # e.g. "550 5.1.1 no such user"; None: accept
        self.on_message = on_message
        self.received: list[Received] = []
        self.refused = 0  # recipients refused
        self.patience = 10.0  # seconds `wait_for` waits at most
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()

        def session() -> Any:
            return SMTP(self, hostname="sink.test", ident="test sink", timeout=10, loop=loop)

        self._server = await loop.create_server(
            session, host=self.host, port=self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> SmtpSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # aiosmtpd handler hooks

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse is not None:
            self.refused += 1
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message_from_bytes(raw, policy=policy.default),
        )
        if self.on_message is not None:
            await self.on_message(received)
        self.received.append(received)
        self._arrived.set()
        return "250 Message accepted"

    # for the test

    def per_message_id(self) -> Counter[str]:
        return Counter(r.message_id for r in self.received)

    async def wait_for(self, count: int) -> list[Received]:
        """Wait (at most `patience` seconds) until `count` messages have arrived; all so far."""
        async with asyncio.timeout(self.patience):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.received)
