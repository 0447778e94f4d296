"""The worker base against real Postgres: infrastructure failures are retried, a bug ends the
worker, and a worker that ends stops the whole set (workers/runner.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
import pytest
from structlog.testing import capture_logs

from events.clock import ManualClock
from service.backoff import Backoff
from workers.base.supervise import supervise
from workers.expiry import ExpiryWorker
from workers.runner import run_set

WAIT = 15.0


class ABug(Exception):
    """Not an outage: a worker that meets it must end."""


class BuggyExpiry(ExpiryWorker):
    """The expiry worker with a bug in what it does after each look."""

    def _observe(self, now: datetime, deadline: datetime | None) -> None:
        raise ABug("a bug in the worker's own rule")


async def test_a_worker_raising_a_bug_stops_the_set(pool: asyncpg.Pool) -> None:
    """The buggy worker is not retried: its error reaches the runner, which stops the healthy
    one too (it logs its stop) and raises the error for the process supervisor."""
    clock = ManualClock()
    healthy = ExpiryWorker(pool, clock=clock)
    stop = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(
            run_set({"healthy": healthy.run(), "buggy": BuggyExpiry(pool, clock=clock).run()}, stop)
        )
        with pytest.raises(ABug):
            await asyncio.wait_for(running, WAIT)
    assert not stop.is_set()
    events = [e["event"] for e in logs]
    assert "expiry.restart" not in events  # a bug is never retried
    assert events.count("expiry.stopped") == 2  # the healthy worker was stopped with it
    assert [e["worker"] for e in logs if e["event"] == "workers.ended"] == ["buggy"]


async def test_a_worker_that_returns_stops_the_set(pool: asyncpg.Pool) -> None:
    """A worker ending without an error is a bug as well (workers run until cancelled)."""
    healthy = ExpiryWorker(pool, clock=ManualClock())

    async def returns() -> None:
        return None

    with pytest.raises(RuntimeError, match="worker early ended on its own"):
        await asyncio.wait_for(
            run_set({"healthy": healthy.run(), "early": returns()}, asyncio.Event()), WAIT
        )


async def test_supervise_retries_outages_and_lets_a_bug_through() -> None:
    """Connection, timeout and Postgres-restart failures start the session again after a
    back-off pause; the first other error ends the loop with that error."""
    failures: list[BaseException] = [
        ConnectionResetError("reset by peer"),
        TimeoutError(),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ABug("the session's own bug"),
    ]
    sessions: list[int] = []
    retried: list[BaseException] = []

    async def session() -> None:
        sessions.append(len(sessions))
        raise failures[len(sessions) - 1]

    backoff = Backoff(0.001, 0.004)
    with capture_logs() as logs, pytest.raises(ABug):
        await asyncio.wait_for(supervise("test", session, backoff, retried=retried.append), WAIT)
    assert retried == failures[:4]
    assert len(sessions) == 5
    assert [e["event"] for e in logs] == ["test.restart"] * 4
    delays = [e["delay"] for e in logs]
    assert all(0 < d <= 0.004 for d in delays)
