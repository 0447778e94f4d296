"""`authledger serve --workers N`: N HTTP processes listening on one port.

The parent binds N sockets to the port (SO_REUSEPORT, service/runtime/listening.py) and
hands one to each of N forked children, each running the same loop as a single-process
`serve`; then it execs the thin supervisor (service/runtime/supervisor.py) in its own place.
SIGINT/SIGTERM to the parent stop every child; a child that dies on its own stops the rest,
so an orchestrator sees the failure and restarts the lot.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import FrameType

import structlog

from service.observability.logging import configure_logging
from service.runtime.listening import MULTIPROC_ENV
from service.runtime.supervisor import Log, supervise
from service.settings import Settings

log = structlog.get_logger("service.runtime.processes")


def _child(settings: Settings, sockets: list[socket.socket], index: int) -> None:
    # Ctrl-C reaches the whole process group; only the parent acts on it, with one SIGTERM
    # to each child, so no child sees two signals and takes the second as "force".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler, inherited by fork
    from service.runtime.loops import serve

    sock = sockets[index]
    for other in sockets:  # the siblings' sockets: theirs to accept on, not ours
        if other is not sock:
            other.close()
    announce = index == 0
    configure_logging(settings)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(settings, sock, signals=(signal.SIGTERM,), announce=announce))


def event_loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.Loop


def serve_in_processes(settings: Settings, sockets: list[socket.socket]) -> int:
    """Fork an HTTP child on each of `sockets`, then become the thin supervisor
    (service.runtime.supervisor) that waits for a signal or a child's exit. Returns only when
    the children could not be started or the supervisor could not be exec'd (status 1)."""
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("processes.stopping", signal=signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    # prometheus-client's multiprocess mode (service.observability.metrics): a fresh folder the
    # children's metrics live in, read whole by whichever child answers /metrics. Set before
    # they start: prometheus-client reads it when imported.
    metrics_dir = tempfile.mkdtemp(prefix="authledger-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    # The children are forked from a parent that has imported the whole service, its objects
    # frozen out of the collector's reach, so the modules' pages stay shared between them
    # (copy-on-write) instead of each child importing its own copy (issue 11, memory).
    import service.runtime.hosting  # noqa: F401 - the app and its server, for the children to share

    gc.freeze()
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_child, args=(settings, sockets, i), name=f"authledger-http-{i}")
        for i in range(len(sockets))
    ]
    try:
        for child in children:
            child.start()
    except BaseException:
        _give_up(settings, children, metrics_dir)
        raise
    finally:
        for sock in sockets:  # each child holds its own now; a dead child's leaves the port
            sock.close()
    pids = [c.pid for c in children if c.pid is not None]
    log.info("processes.started", pids=pids)
    # The parent's copy of the application is no use to anyone now: exec the supervisor in
    # its place (same pid: the children stay ours). A signal from here on waits, blocked,
    # until the supervisor's handlers are in place (a blocked signal survives execv). `-P`:
    # the working directory is not on its path, so no other `service` package is found first.
    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
    argv = [
        sys.executable, "-P", "-m", "service.runtime.supervisor", "serve",
        "--metrics-dir", metrics_dir,
        "--log-level", settings.log_level, "--log-format", _log_format(settings),
        *(["--stopping"] if stop.is_set() else []), *map(str, pids),
    ]  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, our own module
    except OSError:
        log.exception("processes.supervisor_failed")
    _give_up(settings, children, metrics_dir)
    return 1


def _give_up(
    settings: Settings, children: Sequence[multiprocessing.process.BaseProcess], metrics_dir: str
) -> None:
    """Stop the children started so far and remove the metrics folder: the supervisor's own
    stop, run here (it also takes the signals back and unblocks them)."""
    pids = [c.pid for c in children if c.pid is not None]
    supervise(pids, metrics_dir, Log(settings.log_level, _log_format(settings)), stopping=True)


def _log_format(settings: Settings) -> str:
    """The supervisor's log format: the one service.observability.logging chose."""
    if settings.log_format == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return settings.log_format
