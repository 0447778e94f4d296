"""The Postgres event store: append to streams, read them back, tail the log.

Appends go through `events.writer.Writer` (group commit under an advisory lock: gap-free
positions committed in order, a hash chain, optimistic concurrency per stream, idempotency by
event id, inline projectors in the same transaction). Reads are plain queries; tailers sleep
on LISTEN/NOTIFY between reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import asyncpg

from events.appends import (
    ANY_VERSION,
    NO_STREAM,
    NOTIFY_CHANNEL,
    InlineProjector,
    InTransaction,
    StreamAppend,
    Write,
    row_to_event,
)
from events.clock import Clock, SystemClock
from events.envelope import NewEvent, RecordedEvent, StreamRef
from events.sessions import keeps_session_state
from events.sql import load_queries
from events.writer import Writer

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "EventStore",
    "InTransaction",
    "InlineProjector",
    "StreamAppend",
    "Wakeups",
    "Write",
    "row_to_event",
]

Q = load_queries("events", "store.sql")


class EventStore:
    """Append-only log of events in Postgres."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock | None = None,
        max_batch_events: int = 1000,
        max_batches_in_flight: int = 1,
        gather_wait: float | None = None,
    ) -> None:
        self._pool = pool
        self._writer = Writer(
            pool,
            clock or SystemClock(),
            max_batch_events=max_batch_events,
            max_batches_in_flight=max_batches_in_flight,
            gather_wait=gather_wait,
        )
        self._closed = False

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def batches(self) -> dict[str, int]:
        """Append batches committed in one trip and the long way, and those held for callers
        on their way back, since start."""
        return dict(self._writer.batches)

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        stream: StreamRef,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        projector: InlineProjector | None = None,
    ) -> list[RecordedEvent]:
        """Append `events` to `stream` if it is at `expected_version` (ANY_VERSION: any).

        Returns the recorded events. Appending event ids that are all stored already returns
        the original records and writes nothing. Raises ConcurrencyConflict on a stale version.
        """
        return await self.append_many(
            [StreamAppend(stream, expected_version, events)], projector=projector
        )

    async def append_many(
        self,
        parts: Sequence[StreamAppend],
        *,
        projector: InlineProjector | None = None,
        writes: Sequence[Write] = (),
        also: InTransaction | None = None,
    ) -> list[RecordedEvent]:
        """Append to several streams atomically: every part is checked against its expected
        version and all are written in one transaction, or none is, together with `writes`
        (statements, before the events), the projector's rows and `also` (after the events,
        under the append lock). Returns the recorded events in the order of the parts."""
        if not parts or any(not part.events for part in parts):
            raise ValueError("append needs at least one event per stream")
        if len({(p.stream.tenant_id, p.stream.stream_id) for p in parts}) != len(parts):
            raise ValueError("a stream appears twice in one append")
        if self._closed:
            raise RuntimeError("event store is closed")
        return await self._writer.submit(parts, projector, writes, also)

    async def close(self) -> None:
        """Finish every append already queued, then stop the writer."""
        self._closed = True
        await self._writer.close()

    # -- reading ---------------------------------------------------------------------------

    async def read_stream(self, stream: StreamRef, from_version: int = 1) -> list[RecordedEvent]:
        records = await self._pool.fetch(
            Q["read_stream"], stream.tenant_id, stream.stream_id, from_version
        )
        return [row_to_event(r) for r in records]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > `after_position`, in position order."""
        records = await self._pool.fetch(Q["read_all"], after_position, limit)
        return [row_to_event(r) for r in records]

    async def head_position(self) -> int:
        value = await self._pool.fetchval(Q["head_position"])
        return int(value)

    async def tail(
        self, after_position: int = 0, *, batch: int = 1000, idle_timeout: float = 5.0
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after `after_position`, forever: reads, then sleeps until NOTIFY.

        `idle_timeout` only bounds how long a lost notification (e.g. after a reconnect) can
        delay a reader; it is not a polling interval.
        """
        async with Wakeups(self._pool) as wakeups:
            while True:
                wakeups.clear()
                events = await self.read_all(after_position, batch)
                for event in events:
                    yield event
                    after_position = event.position
                if len(events) < batch:
                    await wakeups.wait(idle_timeout)


class Wakeups:
    """LISTEN on the append channel, on a connection held for that purpose.

    `await wakeups.listening()` returns once the LISTEN is attached: an append committed after
    it wakes `wait`. For a Wakeups held inside a worker or a tailer, `Wakeups.listeners(pool)`
    counts those on `pool` whose LISTEN is attached, and `Wakeups.sleepers(pool)` those asleep
    in `wait`: a write after that is seen through its NOTIFY (tests wait on these rather than
    sleep).
    """

    _live: ClassVar[weakref.WeakSet[Wakeups]] = weakref.WeakSet()  # entered, not yet left

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._event = asyncio.Event()
        self._conn: Any = None
        self._listening = asyncio.Event()
        self._sleeping = False

    async def __aenter__(self) -> Wakeups:
        conn = await self._pool.acquire()
        try:
            keeps_session_state(conn)  # the LISTEN, should the UNLISTEN on exit not happen
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:  # cancelled or failed before listening: give the connection back
            await self._pool.release(conn)
            raise
        self._conn = conn
        self._listening.set()
        Wakeups._live.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        self._listening.clear()
        Wakeups._live.discard(self)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
            await self._pool.release(conn)

    async def listening(self) -> None:
        """Return once the LISTEN is attached (at once if it is)."""
        await self._listening.wait()

    @classmethod
    def listeners(cls, pool: asyncpg.Pool) -> int:
        """How many Wakeups on `pool` have their LISTEN attached."""
        return sum(1 for w in list(cls._live) if w._pool is pool)

    @classmethod
    def sleepers(cls, pool: asyncpg.Pool) -> int:
        """How many Wakeups on `pool` are asleep in `wait`, listening."""
        return sum(1 for w in list(cls._live) if w._pool is pool and w._sleeping)

    def _notified(self, *_: object) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, within: float, *, settle: float = 0.0) -> bool:
        """True when an append was notified within `within` seconds, False otherwise. With
        `settle`, wait that much longer after the notification, so that one look serves a
        burst of appends (a NOTIFY per batch would otherwise mean a look per batch)."""
        self._sleeping = True
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result when a
            # notification and a cancel arrive in the same turn, and the cancel is lost (a
            # tail that never stops: tests/integration/test_store.py)
            async with asyncio.timeout(within):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._sleeping = False
        if settle > 0:
            await asyncio.sleep(settle)
        return True
