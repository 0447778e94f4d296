"""One supervise loop for every worker: infrastructure failures are retried with back-off,
anything else is a bug and ends the worker, so the runner (workers/runner.py) stops the set
and the process supervisor sees it.

Infrastructure: Postgres unreachable, restarting or out of connections (asyncpg connection,
operator-intervention, resource and transaction-rollback errors, a closed connection), the
network (OSError, so ConnectionError too), timeouts and NATS (nats.errors.Error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import nats.errors
import structlog

from service.backoff import Backoff

INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    nats.errors.Error,
)


async def supervise(
    name: str,
    session: Callable[[], Awaitable[None]],
    backoff: Backoff,
    *,
    retried: Callable[[BaseException], None] = lambda _: None,
    describe: Callable[[BaseException], str] = repr,
) -> None:
    """Run `session()` again and again, after a back-off pause when it failed for an
    infrastructure reason; a session that fails otherwise raises its error (a session is
    expected to run until it fails, and one that returns is run again at once). `retried` is
    told of each failure retried, `describe` words it for the log; the session resets
    `backoff` when it makes progress."""
    log = structlog.get_logger(f"workers.{name}")
    while True:
        try:
            await session()
        except INFRASTRUCTURE as exc:
            retried(exc)
            delay = backoff.next()
            log.warning(f"{name}.restart", error=describe(exc), delay=round(delay, 3))
            await asyncio.sleep(delay)
