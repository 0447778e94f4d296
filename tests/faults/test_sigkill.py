"""`authledger serve` killed with SIGKILL in the middle of a registration load: after a
restart every registration answered 200 is in the log and the read models, and nothing is
half-written (a registration without its key, a gap, a broken chain, a read model the log
does not explain)."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.outages import (
    ANONYMOUS,
    Load,
    assert_log_sound,
    assert_registrations_recorded,
    eventually,
    register,
    serve_process,
)
from tests.support.revocations import serve_env

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
IN_FLIGHT = 32  # concurrent registrations
KILL_AFTER = 60  # registrations answered 200 before the SIGKILL


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigkill_mid_load_keeps_every_answered_registration(
    backend: Backend,
    database_url: str,
    owner_database_url: str,
    nats_names: NatsNames,
    workers: int,
) -> None:
    """SIGKILL to the whole process group (`serve --workers N`) with 32 registrations in
    flight; restarted, it serves again, and the log and the read models hold every 200 whole
    and nothing half-written."""
    env = serve_env(database_url, backend.nats_url, nats_names)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with (
        serve_process(env, "--workers", str(workers)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client,
        Load(client, register, concurrency=IN_FLIGHT) as load,
    ):

        async def enough() -> bool:
            return len(load.ok()) >= KILL_AFTER

        await eventually(enough, within=60, what="registrations answered", every=0.002)
        os.killpg(server.proc.pid, signal.SIGKILL)
        load.stop()
        async with asyncio.timeout(10):
            await server.proc.wait()
    assert server.proc.returncode == -signal.SIGKILL
    cut = [a for a in load.answers if a.status is None]
    assert cut, "no request was in flight at the SIGKILL"
    assert [a.status for a in load.answers if a.status not in (None, 200)] == []
    answered = [a.body for a in load.ok()]

    async with serve_process(env, "--workers", str(workers)) as again:
        ready = await again.http.get("/readyz")
        assert ready.status_code == 200, ready.text
        after = await again.http.post("/agent/auth", json=ANONYMOUS)
        assert after.status_code == 200, after.text
        answered.append(after.json())
        for body in (answered[0], answered[-2]):  # keys answered before the kill still work
            auth = {"Authorization": f"Bearer {body['credential']}"}
            me = await again.http.get("/api/me", headers=auth)
            assert (me.status_code, me.json()["registration_id"]) == (200, body["registration_id"])
    await assert_registrations_recorded(database_url, answered)
    head = await assert_log_sound(owner_database_url)
    assert head >= 2 * len(answered)
