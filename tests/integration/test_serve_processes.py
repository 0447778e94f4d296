"""`serve --workers N`: each HTTP process listens on its own socket of the one port.

Against a real `authledger serve` process, Postgres and NATS. The kernel spreads connections
over the processes (SO_REUSEPORT), and a port that anyone holds, another `serve` included,
still fails at once in one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support.backends import Backend
from tests.support.serve_process import (
    AUTHLEDGER,
    SECRETS,
    authledger_env,
    read_answer,
    serving,
)
from tests.support.waiting import wait_until

CONNECTIONS = 64
SERVING = '"server": "uvicorn"'


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _established_to(port: int) -> list[str]:
    """Inodes of the established TCP sockets whose local port is `port` (the server's side);
    "0" for each one still in a listening socket's queue, accepted by no process yet."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                found.append(fields[9])
    return found


async def _one_request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection that has had one answer (so a process has accepted it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await read_answer(reader)
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def _run(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, *args, env=dict(env), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"`authledger {' '.join(args)}` kept running") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_connections_are_spread_over_the_processes(
    backend: Backend, database_url: str
) -> None:
    """64 keep-alive connections opened while one process is stopped (SIGSTOP): each
    process still ends up with at least 8 of them. The kernel chose each connection's socket
    when it arrived; with one socket shared by both, the process that was awake would have
    accepted all 64 (as one that wakes first takes a whole burst under load)."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving(["--workers", "2"], env) as server:
        await server.wait_for_log(SERVING, count=2)
        pids = sorted({json.loads(line)["pid"] for line in server.stderr_lines if SERVING in line})
        assert len(pids) == 2
        port = urlsplit(server.url).port
        assert port is not None
        await server.http.aclose()  # its keep-alive connection is not one of ours
        os.kill(pids[1], signal.SIGSTOP)
        try:
            opening = asyncio.gather(*(_one_request(port) for _ in range(CONNECTIONS)))
            await wait_until(
                lambda: len(_established_to(port)) >= CONNECTIONS,
                within=20,
                what="the kernel to establish every connection",
            )
        finally:
            os.kill(pids[1], signal.SIGCONT)
        opened = await asyncio.wait_for(opening, 20)
        try:
            established = set(_established_to(port))
            held = {pid: len(_socket_inodes(pid) & established) for pid in pids}
        finally:
            for _, writer in opened:
                writer.close()
        assert sum(held.values()) == CONNECTIONS, held
        assert min(held.values()) >= 8, held
        server.http = httpx.AsyncClient(base_url=server.url, timeout=10)
        status, err = await server.stop()
    assert status == 0, err


def _proc(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_text(errors="replace")


def _status_field(pid: int, field: str) -> str:
    for line in _proc(pid, "status").splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} for {pid}")


def _gone(pid: int) -> bool:
    """No such process (a zombie still has its /proc entry: this one was reaped)."""
    return not Path(f"/proc/{pid}").exists()


async def test_the_parent_becomes_a_thin_supervisor(backend: Backend, database_url: str) -> None:
    """Once its children serve, the parent is the supervisor module, not a copy of the
    application: same pid, under 40 MB resident (it was about 75 with the app imported),
    its children still its own, and a SIGTERM still stops them all with status 0."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving(["--workers", "2"], env) as server:
        await server.wait_for_log(SERVING, count=2)
        parent = server.proc.pid
        cmdline = _proc(parent, "cmdline").split("\0")
        assert "service.runtime.supervisor" in cmdline, cmdline
        assert "serve" in cmdline  # what the image's HEALTHCHECK looks for in pid 1's
        rss_kib = int(_status_field(parent, "VmRSS").split()[0])
        assert rss_kib < 40 * 1024, rss_kib
        children = {json.loads(line)["pid"] for line in server.stderr_lines if SERVING in line}
        assert len(children) == 2
        for child in children:
            assert _status_field(child, "PPid") == str(parent)
        assert (await server.http.get("/healthz")).status_code == 200
        status, err = await server.stop()
    assert status == 0, err
    assert all(_gone(child) for child in children)


async def test_a_child_that_dies_stops_the_rest(backend: Backend, database_url: str) -> None:
    """A child killed from outside: the supervisor logs it, stops the other child and exits
    1, so an orchestrator sees the failure and restarts the lot."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving(["--workers", "2"], env) as server:
        await server.wait_for_log(SERVING, count=2)
        pids = sorted({json.loads(line)["pid"] for line in server.stderr_lines if SERVING in line})
        os.kill(pids[0], signal.SIGKILL)
        async with asyncio.timeout(30):
            _, err = await server.proc.communicate()
    assert server.proc.returncode == 1
    exited = [json.loads(x) for x in err.decode().splitlines() if "processes.child_exited" in x]
    assert len(exited) == 1
    assert -signal.SIGKILL in exited[0]["exit_codes"]
    assert _gone(pids[1])


async def test_a_taken_port_fails_at_once(backend: Backend, database_url: str) -> None:
    """A port another program listens on, or another `serve --workers 2` (whose sockets
    would accept a newcomer's SO_REUSEPORT sockets beside them), fails in one line."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        status, err = await _run(["serve", "--port", str(port), "--workers", "2"], env)
    assert status == 1
    assert (
        f"cannot listen on 127.0.0.1:{port}: Address already in use" in err.strip().splitlines()[-1]
    )
    async with serving(["--workers", "2"], env) as server:
        await server.wait_for_log(SERVING, count=2)
        port = urlsplit(server.url).port
        assert port is not None
        status, err = await _run(["serve", "--port", str(port), "--workers", "2"], env)
        assert status == 1
        assert f"cannot listen on 127.0.0.1:{port}" in err
        assert (await server.http.get("/healthz")).status_code == 200
        status, err = await server.stop()
    assert status == 0, err
