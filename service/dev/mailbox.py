"""`authledger dev` only: a loopback SMTP catcher and a mailbox to read what it caught.

The catcher (aiosmtpd, in the running loop) listens on 127.0.0.1 or another loopback address,
on a free port, never on a public one, and keeps the last `limit` messages in memory. The
mailbox router shows them: `GET /dev/mailbox` lists them, newest first (JSON, or a page
linking to each when the client prefers text/html, as a browser does) and `GET
/dev/mailbox/{n}` shows message `n`'s HTML so a person can click the claim link.

Spec §10 W13: a mailbox that shows claim links must not exist in a real deployment, since
whoever reads it (the agent too) could claim alone. So nothing here is wired by `serve`; under
`dev` the router answers loopback clients only and sends no-store, no-referrer and a CSP
sandbox (no scripts) with every page, since any local program can drop mail into it.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import itertools
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.smtp import SMTP
from litestar import MediaType, Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath

MAILBOX_PATH = "/dev/mailbox"
MAX_MESSAGE_BYTES = 1 << 20
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "sandbox allow-popups allow-top-navigation-by-user-activation"
    ),
}


@dataclass(frozen=True, slots=True)
class CaughtMessage:
    n: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    message_id: str | None
    text: str
    html: str | None

    def summary(self) -> dict[str, object]:
        return {
            "n": self.n,
            "url": f"{MAILBOX_PATH}/{self.n}",
            "received_at": self.received_at.isoformat(timespec="milliseconds"),
            "from": self.mail_from,
            "to": list(self.rcpt_tos),
            "subject": self.subject,
            "message_id": self.message_id,
            "text": self.text,
        }


def _part(message: EmailMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    return None if body is None else str(cast(EmailMessage, body).get_content())


class DevMailbox:
    """The last `limit` messages caught, numbered from 1 in the order they arrived."""

    def __init__(self, limit: int = 100) -> None:
        self._messages: deque[CaughtMessage] = deque(maxlen=limit)
        self._numbers = itertools.count(1)

    def add(self, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> CaughtMessage:
        parsed = message_from_bytes(raw, policy=policy.default)
        caught = CaughtMessage(
            n=next(self._numbers),
            received_at=datetime.now(UTC),
            mail_from=mail_from,
            rcpt_tos=tuple(rcpt_tos),
            subject=str(parsed.get("Subject", "")),
            message_id=parsed.get("Message-ID"),
            text=_part(parsed, "plain") or "",
            html=_part(parsed, "html"),
        )
        self._messages.append(caught)
        return caught

    def messages(self) -> list[CaughtMessage]:
        """Newest first."""
        return list(reversed(self._messages))

    def get(self, n: int) -> CaughtMessage | None:
        return next((m for m in self._messages if m.n == n), None)


class _Catch:
    """The aiosmtpd handler: every message accepted into the mailbox."""

    def __init__(self, mailbox: DevMailbox) -> None:
        self._mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        self._mailbox.add(bytes(raw), str(envelope.mail_from), list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class DevSmtpCatcher:
    """An SMTP server on a loopback address that only collects mail; `url` for the mailer."""

    def __init__(
        self, mailbox: DevMailbox | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the dev mail catcher listens on loopback only, not {host}")
        self.mailbox = mailbox or DevMailbox()
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: set[Any] = set()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the catcher is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}?tls=none"  # loopback, no TLS: the explicit opt-out

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Catch(self.mailbox)

        def session() -> Any:
            protocol = SMTP(
                handler,
                hostname="authledger-dev",
                ident="authledger dev mail catcher",
                data_size_limit=MAX_MESSAGE_BYTES,
                timeout=60,
                loop=loop,
            )
            self._sessions.add(protocol)
            return protocol

        self._server = await loop.create_server(session, host=self.host, port=self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in self._sessions:
            if protocol.transport is not None:
                protocol.transport.close()
        self._sessions.clear()
        await server.wait_closed()


async def _loopback_only(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    # async: Litestar runs a plain-function guard in a worker thread
    host = connection.client.host if connection.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotFoundException()


def mailbox_page(messages: list[CaughtMessage]) -> str:
    """The mailbox for a browser: one row per message, newest first, each a link to it."""
    rows = "".join(
        f"<tr><td>{m.received_at:%H:%M:%S}</td><td>{html.escape(', '.join(m.rcpt_tos))}</td>"
        f'<td><a href="{MAILBOX_PATH}/{m.n}">{html.escape(m.subject or "(no subject)")}</a>'
        "</td></tr>"
        for m in messages
    )
    body = (
        f"<table><tr><th>received (UTC)</th><th>to</th><th>subject</th></tr>{rows}</table>"
        if messages
        else "<p>No mail yet. A claim e-mail lands here as soon as the mailer sends it.</p>"
    )
    return (
        "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>authledger dev mailbox</title>"
        "<style>body{font:15px system-ui,sans-serif;margin:2em}td,th{padding:.3em 1em;"
        "text-align:left}</style><h1>Dev mailbox</h1>"
        f"<p>The last {len(messages)} message(s) the dev SMTP catcher took; reload for new "
        f"ones. As JSON: <code>curl {MAILBOX_PATH}</code>.</p>{body}</html>"
    )


def dev_mailbox_router(box: DevMailbox, *, loopback_only: bool = True) -> Router:
    """`GET /dev/mailbox` and `GET /dev/mailbox/{n}`; mount it under `authledger dev` only."""

    @get("/", sync_to_thread=False)
    def mailbox(request: Request[Any, Any, Any]) -> Response[Any]:
        headers = {**_PAGE_HEADERS, "Vary": "Accept"}
        wanted = request.accept.best_match([MediaType.JSON, MediaType.HTML], MediaType.JSON)
        if wanted == MediaType.HTML:
            return Response(
                mailbox_page(box.messages()), media_type=MediaType.HTML, headers=headers
            )
        summaries = [m.summary() for m in box.messages()]
        return Response(summaries, media_type=MediaType.JSON, headers=headers)

    @get("/{n:int}", sync_to_thread=False)
    def message(n: FromPath[int]) -> Response[str]:
        caught = box.get(n)
        if caught is None:
            raise NotFoundException(f"no message {n} (only the last ones are kept)")
        page = caught.html or (
            f"<!DOCTYPE html><title>{html.escape(caught.subject)}</title>"
            f"<pre>{html.escape(caught.text)}</pre>"
        )
        return Response(page, media_type=MediaType.HTML, headers=_PAGE_HEADERS)

    return Router(
        path=MAILBOX_PATH,
        route_handlers=[mailbox, message],
        guards=[_loopback_only] if loopback_only else [],
        include_in_schema=False,
    )
