"""`authledger dev` on a bare machine: embedded Postgres and NATS, a clean stop, a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import pytest

from events.envelope import StreamRef
from events.store import NO_STREAM, EventStore
from migrations.runner import available
from service.dev.embedded import free_port, process_alive
from tests.support.builders import a_stream, opened
from tests.support.waiting import wait_until

AUTHLEDGER = Path(sys.executable).with_name("authledger")
pytestmark = pytest.mark.embedded


class DevProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.banner: dict[str, str] = {}
        self.lines: list[str] = []

    async def read_banner(self, seconds: float) -> None:
        """Read stdout up to the `data` line of the start-up banner."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(seconds):
            while "data" not in self.banner:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    await self.proc.wait()
                    pytest.fail(f"dev exited with {self.proc.returncode}: {self.log.read_text()}")
                self.lines.append(line.rstrip("\n"))
                key, _, value = line.strip().partition(" ")
                if key in ("http", "database", "nats", "data"):
                    self.banner[key] = value.strip().split("  ")[0]

    async def wait_ready(self, seconds: float) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:

            async def ready() -> httpx.Response | None:
                with contextlib.suppress(httpx.TransportError):
                    response = await http.get("/readyz")
                    if response.status_code == 200:
                        return response
                return None

            return await wait_until(ready, within=seconds, what=f"dev ready at {self.url}")

    async def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.communicate(), 30)
        assert self.proc.returncode is not None
        return self.proc.returncode


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder outside pytest's tmp_path.

    Embedded Postgres runs as another user when we are root and needs every parent folder
    traversable; pgserver opens them up, but a concurrent pytest session closes its
    `pytest-of-<user>` folder again (mode 0700), so the folder lives in the system temp dir.
    """
    folder = Path(tempfile.mkdtemp(prefix="authledger-e2e-"))
    try:
        yield folder / "data"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


@asynccontextmanager
async def _dev(data_dir: Path, port: int, log: Path) -> AsyncIterator[DevProcess]:
    """`authledger dev` using only embedded services; on failure nothing is left running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    env |= {"AUTHLEDGER_DATA_DIR": str(data_dir), "AUTHLEDGER_LOG_FORMAT": "json"}
    with _open_log(log) as stderr:
        proc = await asyncio.create_subprocess_exec(
            AUTHLEDGER, "dev", "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE,
            stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        yield DevProcess(proc, port, log)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            _stop_leftovers(data_dir)


def _stop_leftovers(data_dir: Path) -> None:
    """After a failed run, stop the embedded servers the killed process could not stop."""
    for pid_file, sig in (
        (data_dir / "nats" / "pid", signal.SIGKILL),
        (data_dir / "postgres" / "postmaster.pid", signal.SIGINT),  # fast shutdown
    ):
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), sig)


def _answers(url: str) -> bool:
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


async def _append_marker(database_url: str) -> tuple[StreamRef, bytes]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    store = EventStore(pool)
    try:
        stream = a_stream()
        [recorded] = await store.append(stream, NO_STREAM, [opened("survives restarts")])
    finally:
        await store.close()
        await pool.close()
    return stream, recorded.hash


async def _read_stream(database_url: str, stream: StreamRef) -> list[bytes]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        return [e.hash for e in await EventStore(pool).read_stream(stream)]
    finally:
        await pool.close()


async def test_dev_starts_embedded_stops_cleanly_and_restarts_on_its_data(
    data_dir: Path, tmp_path: Path
) -> None:
    """dev serves on embedded services; SIGTERM exits 0 and stops them; a restart keeps data."""
    port = free_port()
    log = tmp_path / "dev.log"

    async with _dev(data_dir, port, log) as first:
        await first.read_banner(seconds=60)
        assert first.banner["http"] == first.url
        applied = [line for line in first.lines if line.startswith("applied migration ")]
        assert applied == [f"applied migration {m.version:04d}_{m.name}" for m in available()]
        assert "migrate.applied" not in log.read_text()  # printed once, not logged as well
        assert "?host=" in first.banner["database"]  # a Unix socket, never 127.0.0.1:5432
        assert not first.banner["nats"].endswith(":4222")
        assert (await first.wait_ready(seconds=30)).json() == {"status": "ok"}
        stream, marker_hash = await _append_marker(first.banner["database"])
        nats_pid = int((data_dir / "nats" / "pid").read_text())
        assert await first.terminate() == 0

    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not process_alive(nats_pid)
    assert not _answers(first.banner["nats"])
    token_file = data_dir / "admin_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
    admin_token = token_file.read_text()
    secret_key = (data_dir / "secret_key").read_text().strip()
    assert secret_key not in first.log.read_text()

    restarted_at = time.monotonic()
    async with _dev(data_dir, port, log) as second:
        await second.read_banner(seconds=10)
        await second.wait_ready(seconds=10 - (time.monotonic() - restarted_at))
        assert time.monotonic() - restarted_at < 10  # ready again within 10 s, the last look too
        assert await _read_stream(second.banner["database"], stream) == [marker_hash]
        assert await second.terminate() == 0
    assert token_file.read_text() == admin_token
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
