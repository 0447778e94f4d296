"""HTTP clients that cannot be pointed at internal addresses: the check is made on the resolved
address, at connect time (security finding 7).

httpx hands connections to httpcore, which asks its network backend to `connect_tcp(host,
port)`. `GuardedBackend` is that backend. It resolves the host once (getaddrinfo), checks
every address it got against the `OutboundPolicy`, refuses the host when any of them is
refused (a name answering with a public and an internal address is a rebinding attempt or a
mistake), and connects to a checked address by number, so that no second lookup can answer
differently (DNS rebinding). TLS still verifies the URL's host name: httpcore passes it to
the handshake as the server name, whatever address the socket went to.

`guarded_client` builds the httpx client around it: redirects are not followed (were they,
each hop's connection would pass through the backend and be checked again), and the
environment's HTTP(S)_PROXY, ALL_PROXY and netrc are ignored (through a proxy the check would
judge the proxy's address and never the target's); SSL_CERT_FILE / SSL_CERT_DIR still apply.

A refused connection raises `OutboundRefused`, an httpcore.ConnectError, so httpx raises an
httpx.ConnectError caused by it and callers that handle a failed connection need no change;
`refused_by(exc)` finds it. Every refusal is logged (`outbound.refused`: purpose, host, port,
resolved address, reason; never a path, query or header), counted on the guard and passed
to `observe` (the metrics counter).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import structlog

from service.outbound.addresses import parse_address
from service.outbound.policy import OutboundPolicy

log = structlog.get_logger("service.outbound")
Resolver = Callable[[str, int], Awaitable[list[str]]]
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class OutboundRefused(httpcore.ConnectError):
    """A connection the policy does not allow; nothing was sent to `address`."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        where = address if host == address else f"{host} resolves to {address},"
        super().__init__(f"{where} not a public address ({reason})")
        self.host, self.address, self.reason = host, address, reason


def refused_by(exc: BaseException) -> OutboundRefused | None:
    """The OutboundRefused behind an httpx error, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, OutboundRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address getaddrinfo gives for a TCP connection to `host`, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class Guard:
    """The policy for one kind of request (`purpose`: `webhook`, `jwks`), and its refusals."""

    policy: OutboundPolicy
    purpose: str
    observe: Callable[[str], None] | None = None  # called with the reason of each refusal
    resolve: Resolver = system_resolve
    refused: Counter[str] = field(default_factory=Counter)  # by reason

    async def addresses(self, host: str, port: int, seconds: float | None) -> list[str]:
        """The addresses of `host` to connect to, all checked; OutboundRefused otherwise.
        The lookup gives up after `seconds` (httpcore's connect timeout)."""
        try:
            async with asyncio.timeout(seconds):
                found = await self.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {seconds} s") from None
        except OSError as exc:  # socket.gaierror
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        if self.policy.allows_name(host):
            return found
        for text in found:
            address = parse_address(text)
            reason = "unparsable" if address is None else self.policy.refusal(address)
            if reason is not None:
                self.refused[reason] += 1
                log.warning("outbound.refused", purpose=self.purpose, host=host, port=port,
                            address=text, reason=reason)  # fmt: skip
                if self.observe is not None:
                    self.observe(reason)
                raise OutboundRefused(host, text, reason)
        return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard checked."""

    def __init__(self, guard: Guard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        *others, last = await self.guard.addresses(host, port, timeout)
        for address in others:  # in getaddrinfo's order; each one checked
            with contextlib.suppress(httpcore.ConnectError, httpcore.ConnectTimeout):
                return await self._connect(address, port, timeout, local_address, socket_options)
        return await self._connect(last, port, timeout, local_address, socket_options)

    async def _connect(
        self,
        address: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109 -- httpcore's own deadline, passed on
        local_address: str | None,
        socket_options: Iterable[SocketOption] | None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound requests go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on a GuardedBackend."""

    def __init__(self, guard: Guard, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        ssl_context = httpx.create_ssl_context()  # SSL_CERT_FILE / SSL_CERT_DIR apply
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(guard),
        )


def guarded_client(guard: Guard, **options: Any) -> httpx.AsyncClient:
    """An httpx client whose every connection passes `guard` (see the module docstring)."""
    return httpx.AsyncClient(
        transport=GuardedTransport(guard), follow_redirects=False, trust_env=False, **options
    )
