"""What a process needs before the application: the listening socket and the one-line
start-up failure. Kept apart from service.runtime.loops so that a command that fails to bind (or
`authledger worker`) never imports the application."""

from __future__ import annotations

import socket

# prometheus-client's own variable: the folder of the children's multiprocess metrics.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BACKLOG = 2048


class StartupError(Exception):
    """An operational failure to report in one line (exit status 1), not a bug."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Listen before anything slow starts, so a taken port fails at once and clearly."""
    sock = _socket(host)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc) from None
    sock.set_inheritable(True)
    return sock


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port, one per HTTP process (SO_REUSEPORT), so that
    the kernel spreads new connections over the processes.

    One socket shared by every process leaves the spread to whichever accepts first: a
    process that wakes first takes a whole burst of connections, and keep-alive clients then
    stay on it (64 connections to one process and none to the other in a bench run, half
    the throughput; issue 11). With a socket each, the kernel picks the socket by a hash of
    the connection's addresses and ports.

    A port taken by anyone, a group of SO_REUSEPORT sockets included, still fails at once:
    a probe binds it first without SO_REUSEPORT (it also picks the port when `port` is 0)."""
    if count <= 1:
        return [bind_socket(host, port)]
    probe = _socket(host)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    finally:
        probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = _socket(host)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _cannot_listen(host, port, exc) from None
    return sockets


def _socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)


def _cannot_listen(host: str, port: int, exc: OSError) -> StartupError:
    return StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def http_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
