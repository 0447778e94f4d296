"""`authledger subscribe` against `authledger serve` and `authledger worker` (whose
revocation feed publishes): the replay, the live feed, one readable line per revocation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.dev.embedded import free_port
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.relay_support import jetstream
from tests.support.revocations import ADMIN_TOKEN, serve_env, served
from tests.support.serve_process import AUTHLEDGER, Server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)  (?P<reason>revoked:operator)\s+"
    r"(?P<credential>cred_\S+)  api_key\s+registration=(?P<registration>reg_\S+) user=-  "
    r"position=(?P<position>\d+)$"
)
pytestmark = pytest.mark.timeout(180)


@contextlib.asynccontextmanager
async def worker(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`authledger worker` (relay, revocation feed, ...), its output in a file."""
    env = {**env, "AUTHLEDGER_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"}
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            AUTHLEDGER, "worker", env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@contextlib.asynccontextmanager
async def subscribe(
    server: Server, backend: Backend, names: NatsNames, *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    env |= {"AUTHLEDGER_NATS_URL": backend.nats_url, "AUTHLEDGER_PUBLIC_URL": server.url,
            "AUTHLEDGER_NATS_STREAM": names.stream,
            "AUTHLEDGER_NATS_SUBJECT_PREFIX": names.subject_prefix}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "subscribe", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_line(stream: asyncio.StreamReader | None, within: float = 30) -> str:
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), within)
    assert line, "subscribe exited"
    return line.decode().rstrip("\n")


async def revoke_new_key(server: Server) -> tuple[str, str]:
    """(credential id, registration id) of a fresh key revoked by the operator."""
    registered = (await server.http.post("/agent/auth", json=ANONYMOUS)).json()
    auth = {"Authorization": f"Bearer {registered['credential']}"}
    credential_id = (await server.http.get("/api/me", headers=auth)).json()["credential_id"]
    answer = await server.http.post(
        "/admin/revocations", json={"credential_id": credential_id}, headers=ADMIN
    )
    assert answer.json()["revoked"] == 1
    return credential_id, registered["registration_id"]


async def test_subscribe_replays_from_the_start_then_prints_live(
    backend: Backend, database_url: str, nats_names: NatsNames, tmp_path: Path
) -> None:
    """`--from-start` prints each past revocation as one readable line (time, reason,
    credential, kind, registration, user, position), then the new ones as they happen;
    without it only the new ones. Ctrl-C stops it cleanly."""
    env = serve_env(database_url, backend.nats_url, nats_names)
    async with (
        jetstream(backend.nats_url, delete=nats_names.stream),
        served(env) as server,
        worker(env, tmp_path / "worker.log"),
    ):
        past = [await revoke_new_key(server) for _ in range(3)]
        async with subscribe(server, backend, nats_names, "--from-start") as replay:
            printed = [await read_line(replay.stdout) for _ in past]
            matches = [LINE.match(line) for line in printed]
            assert all(matches), printed
            assert [(m["credential"], m["registration"]) for m in matches if m] == past
            positions = [int(m["position"]) for m in matches if m]
            assert positions == sorted(positions)
            assert "from the start" in await read_line(replay.stderr)
            async with subscribe(server, backend, nats_names) as live:
                assert "from now on" in await read_line(live.stderr)
                assert "caught up: 0 revoked" in await read_line(live.stderr)
                new = await revoke_new_key(server)
                for proc in (replay, live):
                    found = LINE.match(await read_line(proc.stdout))
                    assert found is not None
                    assert (found["credential"], found["registration"]) == new
            replay.send_signal(signal.SIGINT)
            await asyncio.wait_for(replay.wait(), 20)
            assert replay.returncode == 0


async def test_subscribe_needs_a_nats_url(tmp_path: Path) -> None:
    """No AUTHLEDGER_NATS_URL (and no dev running on the data folder): one line naming it,
    exit status 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    env["AUTHLEDGER_DATA_DIR"] = str(tmp_path / "data")
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "subscribe", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().strip() == (
        "AUTHLEDGER_NATS_URL: required (or --nats-url, or run it next to `authledger dev`)"
    )
    assert out == b""
