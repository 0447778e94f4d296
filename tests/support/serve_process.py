"""`authledger serve` as a real process for tests: started on a free port in its own session,
reachable over HTTP, stopped with SIGTERM (or killed with its children if the test fails)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from service.dev.embedded import free_port
from tests.support.outbound import OUTBOUND_ALLOW
from tests.support.waiting import wait_until

AUTHLEDGER = Path(sys.executable).with_name("authledger")
SECRETS = {"AUTHLEDGER_ADMIN_TOKEN": "t" * 32, "AUTHLEDGER_SECRET_KEY": "k" * 48}


def authledger_env(**values: str) -> dict[str, str]:
    """The test's environment without any AUTHLEDGER_* of its own, plus `values` (outbound
    requests may reach loopback, where the suite's IdP and receivers listen, unless they say
    otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    defaults = {"AUTHLEDGER_LOG_FORMAT": "json", "AUTHLEDGER_OUTBOUND_ALLOW": OUTBOUND_ALLOW}
    return {**env, **defaults, **values}


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 answer with a Content-Length off a raw connection: its head (the body is
    read and dropped, so the connection is ready for the next one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


@asynccontextmanager
async def serving(args: Sequence[str], env: Mapping[str, str]) -> AsyncIterator[Server]:
    """A `serve` process in its own session, killed with its children if the test fails."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "serve", "--port", str(port), *args, env=dict(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}")
    try:
        await server.wait_until_listening()
        yield server
    finally:
        await server.http.aclose()
        # the whole session, even when `serve` itself is gone: its children may not be
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            await proc.wait()


class Server:
    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=10)
        self.stderr_lines: list[str] = []

    async def wait_for_log(self, text: str, count: int, seconds: float = 20.0) -> None:
        """Read stderr until `text` has appeared on `count` lines."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(seconds):
            while sum(text in line for line in self.stderr_lines) < count:
                line = await self.proc.stderr.readline()
                if not line:
                    pytest.fail(f"serve exited: {''.join(self.stderr_lines)}")
                self.stderr_lines.append(line.decode())

    async def wait_until_listening(self, seconds: float = 20.0) -> None:
        async def answers() -> bool:
            if self.proc.returncode is not None:
                _, err = await self.proc.communicate()
                pytest.fail(f"serve exited with {self.proc.returncode}: {err.decode()}")
            try:
                await self.http.get("/healthz")
            except httpx.TransportError:
                return False
            return True

        await wait_until(answers, within=seconds, what=f"serve listening at {self.url}")

    async def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and stderr."""
        await self.http.aclose()
        self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(self.proc.communicate(), 20)
        assert self.proc.returncode is not None
        return self.proc.returncode, "".join(self.stderr_lines) + err.decode()
