"""What a process needs before the application: the listening socket and the one-line
start-up failure. Kept apart from service.runtime.loops so that a command that fails to bind (or
`authledger worker`) never imports the application."""

from __future__ import annotations

import socket

# prometheus-client's own variable: the folder of the children's multiprocess metrics.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class StartupError(Exception):
    """An operational failure to report in one line (exit status 1), not a bug."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Listen before anything slow starts, so a taken port fails at once and clearly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def http_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
