"""The `containers` test backend (tests/support/backends.py): Postgres and NATS started by
testcontainers where a Docker daemon answers; where none does, a suite forced onto it skips
what needs them and says why."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import asyncpg
import nats
import pytest

from tests.support.backends import docker_problem, start_backend

PROBLEM = docker_problem()
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(PROBLEM is not None, reason=f"containers backend: {PROBLEM}")
async def test_the_containers_backend_serves_postgres_and_jetstream() -> None:
    """Started, it answers SQL on Postgres 15 and has JetStream on; stopped, it is gone."""
    backend = await asyncio.to_thread(start_backend, "containers")
    try:
        conn = await asyncpg.connect(backend.database_url)
        try:
            version = await conn.fetchval("SHOW server_version_num")
        finally:
            await conn.close()
        assert int(version) // 10000 == 15
        client = await nats.connect(backend.nats_url)
        try:
            info = await client.jetstream().account_info()
        finally:
            await client.close()
        assert info.streams == 0
    finally:
        await asyncio.to_thread(backend.stop)


@pytest.mark.skipif(PROBLEM is None, reason="a Docker daemon answers: the backend starts")
def test_forced_without_docker_the_tests_skip_saying_why() -> None:
    """`AUTHLEDGER_TEST_BACKEND=containers` with no daemon: pytest's header names the
    backend, a test that needs Postgres is skipped (not failed) with the reason."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q",
         "tests/integration/test_migrations.py::test_migrate_twice_applies_nothing_the_second_time"],
        cwd=ROOT, env={**env, "AUTHLEDGER_TEST_BACKEND": "containers"}, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "1 skipped" in out
    assert "the containers backend cannot start: no Docker daemon answers" in out


def test_the_probe_asks_the_daemon_where_testcontainers_would(tmp_path: Path) -> None:
    """DOCKER_HOST's socket is asked `GET /_ping`: a 200 is a daemon, silence or a refusal
    is none (named in the reason)."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

        thread = threading.Thread(target=answer)
        thread.start()
        assert docker_problem({"DOCKER_HOST": f"unix://{path}"}) is None
        thread.join(5)
    missing = docker_problem({"DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"})
    assert missing is not None
    assert missing.startswith(f"no Docker daemon answers at unix://{tmp_path / 'none.sock'}")
