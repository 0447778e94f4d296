"""One JetStream publisher for the relay and the revocation feed: the NATS connection, the
single-instance lock session, the stream's set-up, pipelined publishes and their acks.

A publisher holds a session advisory lock named for its checkpoint, on a connection that also
writes the checkpoint, so a publisher whose session died cannot advance it (`lock.sql`); it
listens for appends (the store's `Wakeups`) and pings the lock's session when idle. Within a
session, NATS failures and a window not fully acknowledged (`PublishIncomplete`) pause, then
scan the stream again and publish the rest; Postgres failures end the session and the
supervise loop (`workers.base.supervise`) starts another. What is published, how the stream
is scanned and how the checkpoint reads are each publisher's own rule (`_load`, `_scan`,
`_pump`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeAlias, TypeVar

import asyncpg
import nats.errors
import structlog
from asyncpg.pool import PoolConnectionProxy
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from events.sessions import keeps_session_state
from events.sql import load_queries
from events.store import Wakeups
from service.backoff import Backoff
from workers.base.supervise import supervise
from workers.base.watch import Watched

LOCK = load_queries("workers.base", "lock.sql")
LockConn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


class PublishIncomplete(Exception):
    """Part of a window was not acknowledged: rescan, then publish the rest."""


@dataclass(frozen=True)
class PublisherConfig:
    stream: str = "AUTHLEDGER"
    subject_prefix: str = "authledger"
    checkpoint: str = ""  # default: see `checkpoint_name`
    duplicate_window: float = 120.0  # seconds; only used when the publisher creates the stream
    ack_timeout: float = 5.0
    idle_timeout: float = 5.0  # bounds a lost NOTIFY; also how often the lock session is pinged
    settle: float = 0.02  # after a NOTIFY, wait this long (s): one look per burst
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    reconnect_wait: float = 0.5

    @property
    def checkpoint_name(self) -> str:
        raise NotImplementedError


@dataclass
class PublisherStats:
    position: int = 0  # the checkpoint last written
    published: int = 0  # acked as new by JetStream
    skipped: int = 0  # found in the stream by a scan, not published again
    deduplicated: int = 0  # acked as duplicates by JetStream's dedupe window
    holding_lock: bool = False
    retries: int = 0  # failures retried (NATS, Postgres)
    scans: list[int] = field(default_factory=list)  # positions found per scan


class Outgoing(NamedTuple):
    subject: str
    body: bytes
    headers: dict[str, str]


class Acked(NamedTuple):
    """How a pipelined window went: `done` leading messages are stored (published now, or
    already there), `acks` by index for those published now; `failure` says why not all."""

    done: int
    acks: list[tuple[int, PubAck]]
    failure: str | None


C = TypeVar("C", bound=PublisherConfig)
S = TypeVar("S", bound=PublisherStats)
P = TypeVar("P")  # what a scan found


class JetStreamPublisher(Generic[C, S, P]):
    """Runs a publisher's own rule inside the shared connection, lock and retry handling."""

    name = "publisher"  # the worker's name, in logs

    def __init__(self, pool: asyncpg.Pool, nats_url: str, config: C, stats: S) -> None:
        self._pool = pool
        self._nats_url = nats_url
        self.config = config
        self._watch = Watched(stats)
        self.stats = stats
        self._backoff = Backoff(config.backoff_initial, config.backoff_max)
        self._log = structlog.get_logger(f"workers.{self.name}")
        self._nats_errors = 0

    async def run(self) -> None:
        """Publish until cancelled (or until a bug ends it)."""
        cfg = self.config
        self._log.info(f"{self.name}.started", stream=cfg.stream, checkpoint=cfg.checkpoint_name)
        nc = NATS()
        try:
            await nc.connect(
                self._nats_url,
                name=f"authledger-{cfg.checkpoint_name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=cfg.reconnect_wait,  # type: ignore[arg-type]
                error_cb=self._nats_error,
                reconnected_cb=self._nats_reconnected,
            )
            self._nats_errors = 0
            js = nc.jetstream(timeout=cfg.ack_timeout)
            await supervise(
                self.name, lambda: self._session(js), self._backoff, retried=self._retried
            )
        finally:
            self._set(holding_lock=False)
            with contextlib.suppress(Exception):
                await nc.close()
            self._log.info(f"{self.name}.stopped", position=self.stats.position)

    async def wait_for(self, predicate: Callable[[S], bool]) -> S:
        """Until `predicate(stats)` holds after a change (bound it with `asyncio.timeout`): for
        tests and tools, await a state instead of polling it."""
        return await self._watch.wait_for(predicate)

    def _changed(self) -> None:
        self._watch.changed()

    def _set(self, *, holding_lock: bool) -> None:
        self.stats.holding_lock = holding_lock
        self._changed()

    def _retried(self, _: BaseException) -> None:
        self.stats.retries += 1
        self._changed()

    async def _nats_error(self, exc: Exception) -> None:
        """nats-py retries connecting forever; report the first failure and every 100th."""
        self._nats_errors += 1
        if self._nats_errors % 100 == 1:
            self._log.warning(f"{self.name}.nats_error", error=repr(exc), errors=self._nats_errors)

    async def _nats_reconnected(self) -> None:
        self._log.info(f"{self.name}.nats_reconnected", errors=self._nats_errors)
        self._nats_errors = 0

    async def _session(self, js: JetStreamContext) -> None:
        """Hold the lock on one connection and publish until something fails."""
        name = self.config.checkpoint_name
        async with self._pool.acquire() as conn:
            keeps_session_state(conn)  # the session lock, should the unlock below fail
            try:
                self._log.info(f"{self.name}.lock_waiting", checkpoint=name)
                await conn.execute(LOCK["lock"], name)
                self._set(holding_lock=True)
                self._log.info(f"{self.name}.lock_acquired", checkpoint=name)
                async with Wakeups(self._pool) as wakeups:
                    await self._load(conn)
                    while True:
                        try:
                            found = await self._scan(js)
                            await self._pump(js, conn, wakeups, found)
                        except (nats.errors.Error, TimeoutError, PublishIncomplete) as exc:
                            self._retried(exc)
                            delay = self._backoff.next()
                            self._log.warning(f"{self.name}.retry", stage="nats",
                                              error=repr(exc), delay=round(delay, 3))  # fmt: skip
                            await asyncio.sleep(delay)
            finally:
                self._set(holding_lock=False)
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute(LOCK["unlock"], name)

    async def _idle(self, conn: LockConn, wakeups: Wakeups) -> bool:
        """Sleep until an append is notified (True) or the idle timeout (False: the lock's
        session is pinged then, so a dead one fails fast)."""
        if await wakeups.wait(self.config.idle_timeout, settle=self.config.settle):
            return True
        await self._ping(conn)
        return False

    async def _ping(self, conn: LockConn) -> None:
        """Fails fast if the lock's session died."""
        await conn.fetchval(LOCK["ping"])

    async def _publish(self, js: JetStreamContext, window: Sequence[Outgoing | None]) -> Acked:
        """Publish the window in order, pipelined (None: already stored, skipped), then wait
        for the acks; the leading run of stored messages is what counts as done."""
        pending: list[tuple[int, asyncio.Future[PubAck]]] = []
        try:
            for index, message in enumerate(window):
                if message is None:
                    continue
                future = await js.publish_async(
                    message.subject, message.body, headers=message.headers,
                    stream=self.config.stream,
                )  # fmt: skip
                pending.append((index, future))
            if pending:
                await asyncio.wait([f for _, f in pending], timeout=self.config.ack_timeout)
        finally:
            for _, future in pending:
                if not future.done():
                    future.cancel()  # frees its slot in nats-py's pending-ack table
                elif not future.cancelled():
                    future.exception()  # retrieved: never "exception was never retrieved"
        done, failure = len(window), None
        for index, future in pending:
            if future.cancelled() or future.exception() is not None:
                done = index
                failure = "ack timeout" if future.cancelled() else repr(future.exception())
                break
        acks = [(index, future.result()) for index, future in pending if index < done]
        duplicates = sum(1 for _, ack in acks if ack.duplicate)
        self.stats.published += len(acks) - duplicates
        self.stats.deduplicated += duplicates
        self.stats.skipped += sum(1 for m in window[:done] if m is None)
        self._changed()
        return Acked(done, acks, failure)

    async def _stream(self, js: JetStreamContext) -> StreamInfo:
        """The stream's info, creating the stream when it is missing."""
        cfg = self.config
        with contextlib.suppress(NotFoundError):
            return await js.stream_info(cfg.stream)
        config = StreamConfig(
            name=cfg.stream,
            subjects=[f"{cfg.subject_prefix}.>"],
            storage=StorageType.FILE,
            duplicate_window=cfg.duplicate_window,
        )
        try:
            info = await js.add_stream(config)
        except BadRequestError:  # created meanwhile by someone else
            return await js.stream_info(cfg.stream)
        self._log.info(f"{self.name}.stream_created", stream=cfg.stream, subjects=config.subjects)
        return info

    def _scanned(self, found: int, **where: int) -> None:
        self.stats.scans.append(found)
        self._changed()
        self._log.info(f"{self.name}.scanned", present=found, **where)

    async def _load(self, conn: LockConn) -> None:
        """Read the checkpoint, on the lock's connection."""
        raise NotImplementedError

    async def _scan(self, js: JetStreamContext) -> P:
        """What the stream already holds above the checkpoint."""
        raise NotImplementedError

    async def _pump(self, js: JetStreamContext, conn: LockConn, wakeups: Wakeups, found: P) -> None:
        """Publish what follows the checkpoint, saving it as windows are acknowledged."""
        raise NotImplementedError
