"""Graceful shutdown of a real `authledger serve`: on SIGTERM it stops accepting, answers the
requests it holds, flushes the appends still queued (EventStore.close), and exits 0."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import asyncpg
import httpx
import pytest

from service.crypto.tokens import token_hash
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, authledger_env, serving

ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
REQUESTS = 240
SIGNAL_AFTER = 20  # answers before the SIGTERM


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_mid_flight_loses_no_answered_registration(
    backend: Backend, database_url: str, workers: int
) -> None:
    """Registrations in flight at SIGTERM still get their 200, every 200 is in the log and the
    read models, and the process exits 0."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url,
        AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_RATE_LIMITS="off",
        **SECRETS,
    )
    async with serving(["--workers", str(workers)], env) as server:
        proc = server.proc
        assert proc.stderr is not None
        stderr = proc.stderr
        lines: list[bytes] = []

        async def drain() -> None:  # a full stderr pipe would stall the server
            while line := await stderr.readline():
                lines.append(line)

        draining = asyncio.create_task(drain())
        answered: list[httpx.Response] = []
        enough = asyncio.Event()
        limits = httpx.Limits(max_connections=48, max_keepalive_connections=48)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:

            async def register() -> httpx.Response | None:
                try:
                    answer = await client.post("/agent/auth", json=ANONYMOUS)
                except httpx.TransportError:  # refused or dropped once the server stopped
                    return None
                answered.append(answer)
                if len(answered) >= SIGNAL_AFTER:
                    enough.set()
                return answer

            calls = [asyncio.create_task(register()) for _ in range(REQUESTS)]
            async with asyncio.timeout(60):
                await enough.wait()
            proc.send_signal(signal.SIGTERM)
            before_signal = len(answered)
            results = await asyncio.gather(*calls)
            async with asyncio.timeout(30):
                status = await proc.wait()
                await draining
    log = b"".join(lines).decode()
    assert status == 0, log
    ok = [r for r in results if r is not None and r.status_code == 200]
    assert [r.status_code for r in results if r is not None and r.status_code != 200] == []
    assert len(ok) > before_signal, "no request in flight at SIGTERM was answered"
    await _assert_recorded(database_url, [r.json() for r in ok])


async def _assert_recorded(database_url: str, registered: Sequence[dict[str, str]]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        logged = await conn.fetch(
            "SELECT stream_id FROM events WHERE type = 'registration.created'"
        )
        projected = await conn.fetch("SELECT registration_id FROM registrations")
        keys = await conn.fetch("SELECT token_hash FROM credentials WHERE status = 'active'")
    finally:
        await conn.close()
    ids = {r["registration_id"] for r in registered}
    assert len(ids) == len(registered)
    assert ids <= {row["stream_id"] for row in logged}
    assert ids <= {row["registration_id"] for row in projected}
    assert {token_hash(r["credential"]) for r in registered} <= {row["token_hash"] for row in keys}
