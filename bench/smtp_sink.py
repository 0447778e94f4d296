"""The benches' SMTP peer: takes every message, keeps none, in a process of its own.

    sink = SmtpSink(); sink.start()   # 127.0.0.1:sink.port until sink.stop()

The mailer under test needs a server to send to; in a deployment that is a relay on another
machine. Here it shares the two cores, and its CPU counts against whichever side sends
more of its mails during a run, so it should cost as little as it can (session 10; it was
aiosmtpd, a full server in a thread of the bench's own process). This one speaks only what
aiosmtplib's `sendmail` uses over plain TCP: the greeting, EHLO/HELO, MAIL, RCPT, DATA up
to the lone dot, RSET, NOOP and QUIT, each answered at once; anything else gets 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import socket

EHLO = b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
OK = b"250 OK\r\n"
MAX_LINE = 64 * 1024  # a longer line than any mail's is a client gone wrong: drop it


class _Session(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        self.in_data = False
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    self.transport.close()
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    self.transport.write(OK)
                continue
            self._command(line[:4].upper())

    def _command(self, verb: bytes) -> None:
        if verb in (b"EHLO", b"HELO"):
            self.transport.write(EHLO if verb == b"EHLO" else OK)
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.transport.write(OK)
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go ahead\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:
            self.transport.write(b"502 not here\r\n")


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Session, sock=sock)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class SmtpSink:
    """A sink on 127.0.0.1 (`port`) from `start` until `stop`, in a child process."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        self._sock.listen(128)
        context = multiprocessing.get_context("fork")
        self._process = context.Process(target=_serve, args=(self._sock,), daemon=True)
        self._process.start()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(5)
        self._sock.close()
