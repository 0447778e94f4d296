"""SMTP connections the mailer keeps open while it has mail to send.

A new connection per mail costs a TCP handshake, EHLO, STARTTLS's TLS handshake and AUTH
before the mail's own four commands: on loopback without TLS that was 1.6 ms of the worker's
CPU a mail at 16 connections (issue 11), and far more against a real relay. A lane is one
connection that sends its mails one after another; the mailer spreads a round's rows over a
few lanes, which stay open between rounds and are closed once idle for `keep_alive` seconds.

A connection is reused only after a success: any failure (a refusal, a timeout, a
cancellation) closes it, since its state is unknown. A kept connection the server has closed
in the meantime is noticed at the next send: that send is made once more on a fresh
connection, so a relay's idle timeout costs no retry.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import aiosmtplib

Row = TypeVar("Row")


class SmtpLane:
    """One SMTP connection, opened on first use; see the module docstring."""

    def __init__(self, options: dict[str, Any], timeout: float) -> None:
        self._options = options  # workers.smtp_url.smtp_options
        self._timeout = timeout
        self._client: aiosmtplib.SMTP | None = None
        self.used_at = 0.0  # time.monotonic() of the last send that succeeded

    @property
    def open(self) -> bool:
        return self._client is not None

    async def send(self, message: bytes, sender: str, recipient: str) -> None:
        client, kept = self._client, self._client is not None
        try:
            if client is None:
                client = await self._connect()
            try:
                await client.sendmail(sender, [recipient], message)
            except aiosmtplib.SMTPServerDisconnected:
                if not kept:
                    raise
                self.drop()  # closed while it waited for this round: once more, fresh
                client = await self._connect()
                await client.sendmail(sender, [recipient], message)
        except BaseException:
            self.drop()
            raise
        self.used_at = time.monotonic()

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(timeout=self._timeout, **self._options)
        self._client = client
        await client.connect()  # EHLO, STARTTLS when required, AUTH when a user is set
        return client

    def drop(self) -> None:
        """Close at once, without QUIT (the connection's state is unknown)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        """QUIT and close; errors are the server's business, the connection is gone anyway."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


class SmtpLanes:
    """Up to `count` lanes, kept between rounds and closed after `keep_alive` idle seconds."""

    def __init__(
        self, options: dict[str, Any], timeout: float, count: int, keep_alive: float
    ) -> None:
        self._lanes = [SmtpLane(options, timeout) for _ in range(count)]
        self.keep_alive = keep_alive

    def spread(self, rows: list[Row]) -> list[tuple[SmtpLane, list[Row]]]:
        """The rows dealt over as few lanes as there are rows (open lanes first)."""
        lanes = sorted(self._lanes, key=lambda lane: not lane.open)[: len(rows)]
        return [(lane, rows[i :: len(lanes)]) for i, lane in enumerate(lanes)]

    @property
    def open(self) -> bool:
        return any(lane.open for lane in self._lanes)

    async def close_idle(self) -> None:
        """Close the lanes unused for `keep_alive` seconds."""
        now = time.monotonic()
        for lane in self._lanes:
            if lane.open and now - lane.used_at >= self.keep_alive:
                await lane.close()

    async def close(self) -> None:
        for lane in self._lanes:
            await lane.close()
