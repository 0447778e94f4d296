"""Postgres stopped and started again while agents register and use their keys: meanwhile
the answers are 503 `unavailable` with a reason and `Retry-After` (never a 500, never a
dropped connection); the same `authledger serve` process recovers by itself, and every
registration answered 200, before or after, is in the log and the read models."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.outages import (
    Answer,
    Load,
    assert_log_sound,
    assert_registrations_recorded,
    eventually,
    register,
    restartable_postgres,
    serve_process,
)
from tests.support.revocations import serve_env
from tests.support.serve_process import SECRETS

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
OUTAGE = 5.0  # seconds Postgres stays down
SETTLED = 2.0  # seconds after the first 200 past the restart, from which all must be 200


def _unavailable(answer: Answer) -> bool:
    """A 503 as documented: JSON `unavailable` with a message, and Retry-After seconds."""
    assert answer.headers is not None
    return (
        answer.status == 503
        and isinstance(answer.body, dict)
        and answer.body.get("error") == "unavailable"
        and bool(answer.body.get("message"))
        and answer.headers.get("retry-after", "").isdigit()
    )


async def test_postgres_down_and_back_under_load(backend: Backend, nats_names: NatsNames) -> None:
    """Registrations and /api/me calls before, during and after a Postgres outage: 200 or a
    proper 503, nothing else; the process recovers on its own, no acknowledged write lost."""
    async with restartable_postgres() as postgres:
        database_url = await postgres.migrated_database()
        env = serve_env(database_url, backend.nats_url, nats_names)
        async with (
            serve_process(env) as server,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        ):
            first = (await register(client)).json()
            auth = {"Authorization": f"Bearer {first['credential']}"}

            async def me(c: httpx.AsyncClient) -> httpx.Response:
                return await c.get("/api/me", headers=auth)

            async with (
                Load(client, register, concurrency=3, pause=0.05) as writes,
                Load(client, me, concurrency=1, pause=0.05) as reads,
            ):

                async def warmed() -> bool:
                    return len(writes.ok()) >= 20 and len(reads.ok()) >= 5

                await eventually(warmed, within=30, what="the load warming up")
                stopping = time.monotonic()
                await postgres.stop()
                stopped = time.monotonic()

                async def refused() -> bool:
                    down = writes.between(stopped, time.monotonic())
                    return sum(a.status == 503 for a in down) >= 10

                await eventually(refused, within=OUTAGE, what="503s while Postgres is down")
                operator = {"Authorization": f"Bearer {SECRETS['AUTHLEDGER_ADMIN_TOKEN']}"}
                reasons = (await client.get("/readyz", headers=operator)).json()["reasons"]
                await _sleep_until(stopped + OUTAGE)
                await postgres.start()
                restarted = time.monotonic()

                async def recovered() -> float | None:
                    after = [a for a in writes.between(restarted, time.monotonic())
                             if a.status == 200]  # fmt: skip
                    return min((a.sent for a in after), default=None)

                back = await eventually(recovered, within=30, what="a 200 after the restart")

                async def settled() -> bool:
                    late = writes.between(back + SETTLED, time.monotonic())
                    return len(late) >= 20 and len(reads.between(back + SETTLED, 1e12)) >= 5

                await eventually(settled, within=30, what="load after the recovery")
            assert server.proc.returncode is None, "serve exited"
            assert (await client.get("/readyz")).json() == {"status": "ok"}
            unhandled = [
                _exception(line) for line in server.stderr_lines if "http.unhandled" in line
            ]
        answers = writes.answers + reads.answers
        assert Counter(a.status for a in answers).keys() <= {200, 503}, (
            [(a.status, a.body, a.error) for a in answers if a.status not in (200, 503)][:5],
            unhandled[:2],
        )
        unavailable = [a for a in answers if a.status == 503]
        assert all(_unavailable(a) for a in unavailable), [a.body for a in unavailable][:3]
        assert any(r.startswith("postgres unavailable") for r in reasons), reasons
        settled_answers = [a for a in answers if a.sent >= back + SETTLED]
        assert [a.status for a in settled_answers if a.status != 200] == []
        assert all(a.status == 200 for a in answers if a.answered < stopping)
        registered = [first, *(a.body for a in writes.ok())]
        await assert_registrations_recorded(database_url, registered)
        await assert_log_sound(database_url)


async def _sleep_until(instant: float) -> None:
    """The outage lasts a fixed time: nothing to poll for."""
    await asyncio.sleep(max(0.0, instant - time.monotonic()))


def _exception(log_line: str) -> str:
    """`Type: message` of the exception a JSON log line of the service carries."""
    try:
        [exc, *_] = json.loads(log_line).get("exception", [{}])
        frames = [f"{f['filename'].rsplit('/', 2)[-1]}:{f['lineno']}" for f in exc["frames"]]
        return f"{exc.get('exc_type')}: {exc.get('exc_value')} at {' < '.join(frames[::-1][:12])}"
    except (ValueError, AttributeError, KeyError, TypeError):
        return log_line[:300]
