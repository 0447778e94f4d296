"""A real SMTP server for tests: aiosmtpd in the test's loop, on 127.0.0.1 and a free port.

It keeps every message it accepts, can refuse recipients with a given reply (say `451 …` or
`550 …`) to play a failing relay, can be stopped and started again on the same port to play an
outage, and can run a hook while it holds a message, before it answers the client. It can
offer STARTTLS (`tls_context`) and AUTH, in clear text if it does not (`offer_auth`), and keeps
every byte it heard (`heard`) to show what a client sent in clear.

`url` carries `?tls=none`, the explicit opt-out of STARTTLS the mailer needs to talk to a
plain sink; `default_url` is the same server without it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult


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
        tls_context: ssl.SSLContext | None = None,
        offer_auth: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.refuse = refuse  # e.g. "550 5.1.1 no such user"; None: accept
        self.on_message = on_message
        self.tls_context = tls_context  # offer STARTTLS with it; None: no STARTTLS
        self.offer_auth = offer_auth  # offer AUTH (accepting any password), even in clear text
        self.auth_tries: list[str] = []  # the mechanisms clients tried
        self.heard = bytearray()  # every byte received (after STARTTLS: decrypted)
        self.received: list[Received] = []
        self.connections = 0  # client connections accepted so far
        self._sessions: set[_ListeningSMTP] = set()
        self.refused = 0  # recipients refused
        self.patience = 10.0  # seconds `wait_for` waits at most
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"{self.default_url}?tls=none"

    @property
    def default_url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()

        def session() -> Any:
            self.connections += 1
            made = _ListeningSMTP(
                self,
                hostname="sink.test",
                ident="test sink",
                timeout=10,
                loop=loop,
                tls_context=self.tls_context,
                authenticator=self._authenticate if self.offer_auth else None,
                auth_require_tls=not self.offer_auth,  # a downgrade sink offers it in clear
            )
            self._sessions.add(made)
            return made

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

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.auth_tries.append(mechanism)
        return AuthResult(success=True)

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

    def open_connections(self) -> list[asyncio.BaseTransport]:
        """The client connections still open."""
        transports = (s.transport for s in self._sessions)
        return [t for t in transports if t is not None and not t.is_closing()]

    def hang_up(self) -> int:
        """Close every client connection, as a relay's idle timeout would; how many."""
        open_ones = self.open_connections()
        for transport in open_ones:
            transport.close()
        return len(open_ones)

    def per_message_id(self) -> Counter[str]:
        return Counter(r.message_id for r in self.received)

    async def wait_for(self, count: int) -> list[Received]:
        """Wait (at most `patience` seconds) until `count` messages have arrived; all so far."""
        async with asyncio.timeout(self.patience):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.received)


class _ListeningSMTP(SMTP):
    """aiosmtpd's server, keeping every byte a client sends in the sink's `heard`."""

    def data_received(self, data: bytes) -> None:
        self.event_handler.heard.extend(data)
        super().data_received(data)
