"""The run loops behind `serve`, `worker` and `migrate` (and the pieces `dev` reuses).

One asyncio loop per process. uvicorn runs inside it (`Server.serve()`) rather than owning
it, so HTTP and the workers can share a process; SIGINT/SIGTERM set one stop event, and the
jobs then stop in order: HTTP first, then the workers, then the resources close (the event
store flushes what is queued, NATS drains, the pool closes).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from migrations.runner import Migration, MigrationError, migrate
from service.observability.logging import redact_url
from service.observability.metrics import Metrics
from service.runtime.database_role import warn_if_privileged
from service.runtime.listening import StartupError
from service.runtime.resources import POOL_SIZE, Resources
from service.settings import Settings

log = structlog.get_logger("service.runtime.loops")
STOP_GRACE = 10.0


def stop_on_signals(
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> asyncio.Event:
    """Any of `signals` sets the returned event; a second one cancels the calling task."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set() and main is not None:
            log.warning("runtime.forced_stop", signal=signal.Signals(signum).name)
            main.cancel()
            return
        log.info("runtime.stopping", signal=signal.Signals(signum).name)
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    return stop


@dataclass
class Job:
    """A long-running coroutine and how to ask it to finish."""

    name: str
    run: Coroutine[Any, Any, None]
    request_stop: Callable[[], None]


async def supervise(stop: asyncio.Event, jobs: Sequence[Job], *, grace: float = STOP_GRACE) -> None:
    """Run `jobs` until `stop` is set or one of them ends; then stop them in order.

    A job that ends before it was asked to is a failure: re-raised (or reported) here.
    """
    tasks = [asyncio.get_running_loop().create_task(job.run, name=job.name) for job in jobs]
    stopping = asyncio.get_running_loop().create_task(stop.wait())
    early: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        early = [t for t in tasks if t.done()]
    except asyncio.CancelledError:
        grace = min(grace, 1.0)  # a forced stop: do not linger
        raise
    finally:
        stopping.cancel()
        for job, task in zip(jobs, tasks, strict=True):
            job.request_stop()
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                log.warning("runtime.job_cancelled", job=job.name, grace_seconds=grace)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            elif task not in early and not task.cancelled() and task.exception() is not None:
                log.error("runtime.job_failed_stopping", job=job.name, exc_info=task.exception())
    for task in early:
        if task.cancelled():
            raise StartupError(f"{task.get_name()} was cancelled")
        exc = task.exception()
        if exc is not None:
            raise exc
        raise StartupError(f"{task.get_name()} stopped on its own")


def metrics_job(metrics: Metrics) -> Job:
    """Keeps this child's per-process gauges current for its siblings' scrapes."""
    stop = asyncio.Event()
    return Job("metrics", metrics.run_refresher(stop), stop.set)


def workers_job(settings: Settings, pool: asyncpg.Pool) -> Job:
    from workers.runner import run_workers

    workers_stop = asyncio.Event()
    return Job("workers", run_workers(settings, pool, workers_stop), workers_stop.set)


def warn_of_bootstrap_token(settings: Settings) -> None:
    """One line while AUTHLEDGER_ADMIN_TOKEN is set (security finding 2): it still counts as
    an operator credential, and scoped credentials replace it."""
    if settings.admin_token:
        log.warning(
            "settings.admin_token_deprecated",
            message="AUTHLEDGER_ADMIN_TOKEN is deprecated: it still acts as an operator "
            "credential; grant scoped ones (`authledger access grant`) and unset it",
        )


async def run_services(
    settings: Settings,
    stop: asyncio.Event,
    *,
    sock: socket.socket | None,
    workers: bool,
    dev_routes: Sequence[Any] = (),  # Litestar route handlers (`dev`'s mailbox)
    announce: bool = False,
) -> None:
    """HTTP on `sock` (when given) and every worker (when asked), until `stop` is set.
    `announce`: warn of a bootstrap token once start-up's checks passed (`serve`, `worker`)."""
    pool_size = POOL_SIZE
    if workers:  # imported here: `serve` never loads the workers
        from workers.runner import HELD_CONNECTIONS

        pool_size += HELD_CONNECTIONS
    resources = await Resources.open(settings, pool_size=pool_size)
    if announce:
        warn_of_bootstrap_token(settings)
    try:
        await warn_if_privileged(resources.pool)
        jobs = []
        if sock is not None:
            # imported here: `authledger worker` never loads the app or an HTTP server
            from service.runtime.hosting import http_job

            jobs.append(http_job(settings, resources, sock, dev_routes))
            if resources.metrics is not None and resources.metrics.multiprocess_dir:
                jobs.append(metrics_job(resources.metrics))
        if workers:
            jobs.append(workers_job(settings, resources.pool))
        await supervise(stop, jobs)
    finally:
        await resources.close()
        log.info("runtime.stopped")


async def serve(
    settings: Settings,
    sock: socket.socket,
    *,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    announce: bool = True,
) -> None:
    """`authledger serve` in one process: HTTP against external Postgres and NATS. Under
    `--workers N` only the first child `announce`s the deprecated token."""
    stop = stop_on_signals(signals)
    await run_services(settings, stop, sock=sock, workers=False, announce=announce)


async def worker(settings: Settings) -> None:
    """`authledger worker`: every worker, against external Postgres and NATS."""
    stop = stop_on_signals()
    await run_services(settings, stop, sock=None, workers=True, announce=True)


async def migrate_database(
    database_url: str, *, variable: str = "AUTHLEDGER_DATABASE_URL"
) -> list[Migration]:
    """Apply pending migrations (as the owner role); failures become one-line StartupErrors."""
    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(
            f"cannot connect to {variable} ({redact_url(database_url)}): {exc}"
        ) from None
    try:
        return await migrate(conn)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StartupError(
            f"migration failed: {exc} (migrate runs as the owner role: "
            "set AUTHLEDGER_OWNER_DATABASE_URL; docs/security.md, The database roles)"
        ) from None
    except (asyncpg.PostgresError, MigrationError) as exc:
        raise StartupError(f"migration failed: {exc}") from None
    finally:
        await conn.close()
