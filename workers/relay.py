"""The relay: every event of the log to JetStream, exactly once, in position order.

It tails the log by position (woken by LISTEN/NOTIFY), publishes each window of events
pipelined (in order, on one connection, so the stream stores them in that order), waits for
the acks, then writes its checkpoint. Exactly-once without trusting JetStream's dedupe window:

- only one relay runs: it holds a session advisory lock named for its checkpoint, on a
  connection that also writes the checkpoint, so a relay whose session died cannot advance it;
- before publishing (at start and after any failure) it reads the stream's tail backwards and
  collects the events already stored above the checkpoint (position and event id), and
  skips them. The relay only
  ever publishes positions within MAX_WINDOW above its checkpoint, so once the scan meets a
  message at or below `checkpoint - MAX_WINDOW`, nothing earlier can lie above the checkpoint;
- the dedupe window (Nats-Msg-Id = event id) only covers races the scan cannot see, such as a
  killed process's last publishes still in flight.

NATS outages and Postgres blips are retried with capped exponential back-off; nothing but
cancellation ends `run`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import nats.errors
import structlog
from asyncpg.pool import PoolConnectionProxy
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from events.envelope import RecordedEvent
from events.sql import load_queries
from events.store import EventStore, Wakeups
from workers.base.watch import Watched
from workers.feed import MSG_ID_HEADER, POSITION_HEADER, encode_event, headers_for, subject_for

MAX_WINDOW = 512
SCAN_BATCH = 64
Q = load_queries("workers", "relay.sql")
log = structlog.get_logger("workers.relay")


class PublishIncomplete(Exception):
    """Part of a window was not acknowledged: rescan, then publish the rest."""


@dataclass(frozen=True)
class RelayConfig:
    stream: str = "AUTHLEDGER"
    subject_prefix: str = "authledger"
    checkpoint: str = ""  # default: relay:<stream>
    window: int = 256
    duplicate_window: float = 120.0  # seconds; only used when the relay creates the stream
    ack_timeout: float = 5.0
    idle_timeout: float = 5.0  # bounds a lost NOTIFY; also how often the lock session is pinged
    settle: float = 0.02  # after a NOTIFY, wait this long (s): one look per burst
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    reconnect_wait: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be between 1 and {MAX_WINDOW}")

    @property
    def checkpoint_name(self) -> str:
        return self.checkpoint or f"relay:{self.stream}"


@dataclass
class RelayStats:
    position: int = 0  # the checkpoint last written
    published: int = 0  # acked as new by JetStream
    skipped: int = 0  # found in the stream by a scan, not published again
    deduplicated: int = 0  # acked as duplicates by JetStream's dedupe window
    holding_lock: bool = False
    retries: int = 0  # failures retried (NATS, Postgres)
    scans: list[int] = field(default_factory=list)  # positions found per scan


class Backoff:
    """Capped exponential delays: initial, 2x, 4x ... up to cap; reset after progress."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial, self._cap, self._next = initial, cap, initial

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._initial


class Relay:
    """Tails the log and publishes every event to JetStream; see the module docstring."""

    def __init__(
        self, pool: asyncpg.Pool, nats_url: str, config: RelayConfig | None = None
    ) -> None:
        self._pool = pool
        self._nats_url = nats_url
        self.config = config or RelayConfig()
        self._watch = Watched(RelayStats())
        self.stats = self._watch.stats
        self._store = EventStore(pool)
        self._backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        self._nats_errors = 0

    async def run(self) -> None:
        """Relay until cancelled."""
        cfg = self.config
        log.info("relay.started", stream=cfg.stream, checkpoint=cfg.checkpoint_name)
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
            while True:
                try:
                    await self._session(js)
                except Exception as exc:  # a Postgres blip, or anything else: start over
                    await self._pause("session", exc)
        finally:
            self.stats.holding_lock = False
            with contextlib.suppress(Exception):
                await nc.close()
            log.info("relay.stopped", position=self.stats.position)

    async def wait_for(self, predicate: Callable[[RelayStats], bool]) -> RelayStats:
        """Until `predicate(stats)` holds after a change (bound it with `asyncio.timeout`): for
        tests and tools, await a state instead of polling it."""
        return await self._watch.wait_for(predicate)

    async def _nats_error(self, exc: Exception) -> None:
        """nats-py retries connecting forever; report the first failure and every 100th."""
        self._nats_errors += 1
        if self._nats_errors % 100 == 1:
            log.warning("relay.nats_error", error=repr(exc), errors=self._nats_errors)

    async def _nats_reconnected(self) -> None:
        log.info("relay.nats_reconnected", errors=self._nats_errors)
        self._nats_errors = 0

    async def _pause(self, stage: str, exc: BaseException) -> None:
        self.stats.retries += 1
        self._watch.changed()
        delay = self._backoff.next()
        log.warning("relay.retry", stage=stage, error=repr(exc), delay=round(delay, 3))
        await asyncio.sleep(delay)

    async def _session(self, js: JetStreamContext) -> None:
        """Hold the lock on one connection and relay until something fails."""
        name = self.config.checkpoint_name
        async with self._pool.acquire() as conn:
            try:
                log.info("relay.lock_waiting", checkpoint=name)
                await conn.execute(Q["lock"], name)
                self.stats.holding_lock = True
                self._watch.changed()
                log.info("relay.lock_acquired", checkpoint=name)
                async with Wakeups(self._pool) as wakeups:
                    await self._relay(js, conn, wakeups)
            finally:
                self.stats.holding_lock = False
                self._watch.changed()
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute(Q["unlock"], name)

    async def _relay(
        self, js: JetStreamContext, conn: PoolConnectionProxy[asyncpg.Record], wakeups: Wakeups
    ) -> None:
        name = self.config.checkpoint_name
        self.stats.position = int(await conn.fetchval(Q["load_checkpoint"], name) or 0)
        while True:
            try:
                present = await self._scan(js, self.stats.position)
                await self._pump(js, conn, wakeups, present)
            except (nats.errors.Error, TimeoutError, PublishIncomplete) as exc:
                await self._pause("nats", exc)

    async def _pump(
        self,
        js: JetStreamContext,
        conn: PoolConnectionProxy[asyncpg.Record],
        wakeups: Wakeups,
        present: dict[int, str],
    ) -> None:
        cfg = self.config
        while True:
            wakeups.clear()
            events = await self._store.read_all(self.stats.position, cfg.window)
            if not events:
                if not await wakeups.wait(cfg.idle_timeout, settle=cfg.settle):
                    await conn.fetchval(Q["ping"])  # fails fast if the lock's session died
                continue
            if len(events) < cfg.window and cfg.settle > 0:
                # Appends are still arriving: one window a little later, not one per batch.
                await asyncio.sleep(cfg.settle)
                events += await self._store.read_all(events[-1].position, cfg.window - len(events))
            done = await self._publish(js, events, present)
            if done:
                position = events[done - 1].position
                await conn.execute(Q["save_checkpoint"], cfg.checkpoint_name, position)
                self.stats.position = position
                for stored in range(events[0].position, position + 1):
                    present.pop(stored, None)
                self._backoff.reset()
                self._watch.changed()
                log.info("relay.published", count=done, position=position)
            if done < len(events):
                raise PublishIncomplete(f"{len(events) - done} of {len(events)} not acked")

    async def _publish(
        self, js: JetStreamContext, events: list[RecordedEvent], present: dict[int, str]
    ) -> int:
        """Publish the window in order; return how many leading events are now stored."""
        cfg = self.config
        pending: list[tuple[int, asyncio.Future[PubAck]]] = []
        try:
            for index, event in enumerate(events):
                if present.get(event.position) == str(event.event_id):
                    continue
                future = await js.publish_async(
                    subject_for(cfg.subject_prefix, event),
                    encode_event(event),
                    headers=headers_for(event),
                    stream=cfg.stream,
                )
                pending.append((index, future))
            if pending:
                await asyncio.wait([f for _, f in pending], timeout=cfg.ack_timeout)
        finally:
            for _, future in pending:
                if not future.done():
                    future.cancel()  # frees its slot in nats-py's pending-ack table
                elif not future.cancelled():
                    future.exception()  # retrieved: never "exception was never retrieved"
        done, failure = len(events), None
        for index, future in pending:
            if future.cancelled() or future.exception() is not None:
                done, failure = index, future
                break
        acks = [future.result() for index, future in pending if index < done]
        duplicates = sum(1 for ack in acks if ack.duplicate)
        self.stats.published += len(acks) - duplicates
        self.stats.deduplicated += duplicates
        self.stats.skipped += done - len(acks)
        self._watch.changed()
        if failure is not None:
            error = "ack timeout" if failure.cancelled() else repr(failure.exception())
            log.warning("relay.not_acked", position=events[done].position, error=error)
        return done

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
        log.info("relay.stream_created", stream=cfg.stream, subjects=config.subjects)
        return info

    async def _scan(self, js: JetStreamContext, checkpoint: int) -> dict[int, str]:
        """Event ids by position above `checkpoint` already in the stream, read from its tail
        backwards. A message of another log (say the database was reset) has another id."""
        state = (await self._stream(js)).state
        floor = checkpoint - MAX_WINDOW
        present: dict[int, str] = {}
        seq, scanned = state.last_seq, 0
        while seq >= max(state.first_seq, 1):
            low = max(state.first_seq, 1, seq - SCAN_BATCH + 1)
            found = await asyncio.gather(*(self._id_at(js, s) for s in range(seq, low - 1, -1)))
            scanned += len(found)
            seq = low - 1
            for position, event_id in filter(None, found):
                if position > checkpoint:
                    present.setdefault(position, event_id)
                elif position <= floor:
                    seq = 0
                    break
        self.stats.scans.append(len(present))
        self._watch.changed()
        log.info("relay.scanned", checkpoint=checkpoint, scanned=scanned, present=len(present))
        return present

    async def _id_at(self, js: JetStreamContext, seq: int) -> tuple[int, str] | None:
        """The position and event id of message `seq`, if the relay published it."""
        try:
            msg = await js.get_msg(self.config.stream, seq)
        except NotFoundError:  # deleted or purged
            return None
        headers = msg.headers or {}
        position, event_id = headers.get(POSITION_HEADER, ""), headers.get(MSG_ID_HEADER)
        return (int(position), event_id) if position.isdigit() and event_id else None
