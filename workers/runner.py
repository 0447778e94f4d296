"""Run every long-running worker of the service until asked to stop.

Each worker retries its own outages (`workers.base.supervise`: Postgres, network, timeouts,
NATS, with back-off) and lets anything else end it, so a worker that ends on its own has hit a
bug: the others are stopped too and its error is raised, for the process supervisor to
restart the whole set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from workers.checkpoints import checkpoint_worker
from workers.expiry import expiry_worker
from workers.mailer import mailer_worker
from workers.relay import Relay, RelayConfig
from workers.revocation_feed import revocation_feed_worker
from workers.revocation_push import revocation_push_worker

if TYPE_CHECKING:
    from service.settings import Settings

log = structlog.get_logger("workers.runner")


def workers(settings: Settings, pool: asyncpg.Pool) -> dict[str, Coroutine[Any, Any, None]]:
    """Every worker by name, ready to run (the mailer first: it checks its settings)."""
    mailer = mailer_worker(settings, pool)
    relay = Relay(
        pool,
        settings.nats_url,
        RelayConfig(stream=settings.nats_stream, subject_prefix=settings.nats_subject_prefix),
    )
    return {
        "mailer": mailer,
        "relay": relay.run(),
        "expiry": expiry_worker(settings, pool),
        "revocation_push": revocation_push_worker(settings, pool),
        "revocation_feed": revocation_feed_worker(settings, pool),
        "checkpoints": checkpoint_worker(settings, pool),
    }


# Connections the workers hold for as long as they run: the relay's and the revocation
# feed's lock sessions and LISTENs (two each), the LISTENs of the checkpoints, expiry and push
# workers and the mailer (one each). A worker process's pool has room for these beside the
# connections its work borrows (service.runtime.loops): with only the 10 a process has, a
# worker busy with a backlog (the feed scanning a long log, the expiry folding what the history
# left open) took the last free ones, and the relay waited for a connection, publishing
# nothing (bench/write_history.py on 100,000 events, 2026-12-07).
# tests/integration/test_relay.py holds the count to what the workers hold.
HELD_CONNECTIONS = 8


async def run_workers(settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """Run every worker until `stop` is set (or until one of them fails), then stop them all."""
    await run_set(workers(settings, pool), stop)


async def run_set(jobs: dict[str, Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run the jobs until `stop` is set, or until one of them ends on its own (its error is
    raised, or RuntimeError when it returned), then cancel them all."""
    tasks = {asyncio.create_task(job, name=f"worker:{name}"): name for name, job in jobs.items()}
    stopping = asyncio.create_task(stop.wait(), name="workers:stop")
    log.info("workers.started", workers=sorted(tasks.values()))
    try:
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [stopping, *tasks]:
            task.cancel()
        await asyncio.gather(stopping, *tasks, return_exceptions=True)
    ended = [task for task in tasks if not task.cancelled()]
    if ended and not stop.is_set():
        task = ended[0]
        log.error("workers.ended", worker=tasks[task])
        task.result()  # raises the worker's error
        raise RuntimeError(f"worker {tasks[task]} ended on its own")
    log.info("workers.stopped")
