"""The Postgres event store.

Appends go through one writer task per process that batches whatever is waiting into one
transaction (group commit) under a transaction-level advisory lock. Inside the lock the writer
reads the head of the log, checks each request's expected stream version and event ids, hands
out gap-free positions, extends the hash chain, inserts every row with one statement, runs the
inline projectors and notifies tailers: all in the transaction, so positions commit in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from events.clock import Clock, SystemClock
from events.envelope import NewEvent, RecordedEvent, StreamRef
from events.errors import ConcurrencyConflict, PartialDuplicate
from events.hashchain import GENESIS, event_hash
from events.sql import load_queries

APPEND_LOCK = 0x6175_7468_6C65_6467  # "authledg"
NOTIFY_CHANNEL = "authledger_events"
ANY_VERSION = -1
NO_STREAM = 0

Q = load_queries("events", "store.sql")
log = structlog.get_logger("events.store")
_encode = msgspec.json.Encoder().encode

# Runs inside the append transaction with the events it just recorded.
InlineProjector = Callable[[asyncpg.Connection, Sequence[RecordedEvent]], Awaitable[None]]


@dataclass
class _Request:
    stream: StreamRef
    expected_version: int
    events: Sequence[NewEvent]
    projector: InlineProjector | None
    future: asyncio.Future[list[RecordedEvent]] = field(repr=False)


def row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        event_id=row["event_id"],
        tenant_id=row["tenant_id"],
        stream_type=row["stream_type"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        schema_version=row["schema_version"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        payload=row["payload"].encode(),
        metadata=row["metadata"].encode(),
        hash=row["hash"],
    )


class EventStore:
    """Append-only log of events in Postgres; see the module docstring for the write path."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock | None = None,
        max_batch_events: int = 1000,
    ) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        self._max_batch_events = max_batch_events
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

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
        if not events:
            raise ValueError("append needs at least one event")
        if self._closed:
            raise RuntimeError("event store is closed")
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(stream, expected_version, events, projector, future))
        return await future

    async def close(self) -> None:
        """Finish every append already queued, then stop the writer."""
        self._closed = True
        if self._writer is not None:
            while not self._queue.empty() and not self._writer.done():
                await asyncio.sleep(0.005)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].events)
            while size < self._max_batch_events and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                size += len(request.events)
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            try:
                await self._commit(live)
            except Exception as exc:
                if len(live) == 1:
                    _fail(live[0], exc)
                    continue
                # One poison request must not sink its neighbours: retry each on its own.
                log.warning("store.batch_failed", size=len(live), error=repr(exc))
                for request in live:
                    try:
                        await self._commit([request])
                    except Exception as single_exc:
                        _fail(request, single_exc)

    async def _commit(self, batch: list[_Request]) -> None:
        outcomes: dict[int, list[RecordedEvent] | BaseException] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["lock"], APPEND_LOCK)
            head = await conn.fetchrow(Q["head"])
            position, prev_hash = (head["position"], head["hash"]) if head else (0, GENESIS)
            versions = await self._stream_versions(conn, batch)
            existing = await self._existing_ids(conn, batch)
            recorded_at = self._clock.now()
            rows: list[RecordedEvent] = []
            accepted: list[tuple[_Request, list[RecordedEvent]]] = []
            for index, request in enumerate(batch):
                ids = [e.event_id for e in request.events]
                known = [i for i in ids if i in existing]
                if known:
                    outcomes[index] = (
                        await self._read_duplicates(conn, request, existing)
                        if len(known) == len(ids)
                        else PartialDuplicate(f"{len(known)} of {len(ids)} event ids stored")
                    )
                    continue
                key = (request.stream.tenant_id, request.stream.stream_id)
                current = versions.get(key, 0)
                if request.expected_version not in (ANY_VERSION, current):
                    outcomes[index] = ConcurrencyConflict(
                        key[0], key[1], request.expected_version, current
                    )
                    continue
                recorded = []
                for event in request.events:
                    position += 1
                    current += 1
                    record = _record(
                        prev_hash, position, request.stream, current, event, recorded_at
                    )
                    prev_hash = record.hash
                    recorded.append(record)
                versions[key] = current
                for event in request.events:
                    existing[event.event_id] = -1  # the same ids twice in one batch
                rows.extend(recorded)
                accepted.append((request, recorded))
                outcomes[index] = recorded
            if rows:
                await conn.execute(Q["insert"], *_columns(rows))
                for request, recorded in accepted:
                    if request.projector is not None:
                        await request.projector(conn, recorded)
                await conn.execute(Q["notify"], str(position))
        for index, request in enumerate(batch):
            outcome = outcomes[index]
            if isinstance(outcome, BaseException):
                _fail(request, outcome)
            elif not request.future.done():
                request.future.set_result(outcome)

    async def _stream_versions(
        self, conn: asyncpg.Connection, batch: list[_Request]
    ) -> dict[tuple[str, str], int]:
        keys = {(r.stream.tenant_id, r.stream.stream_id) for r in batch}
        records = await conn.fetch(Q["stream_versions"], [k[0] for k in keys], [k[1] for k in keys])
        return {(r["tenant_id"], r["stream_id"]): r["stream_version"] for r in records}

    async def _existing_ids(
        self, conn: asyncpg.Connection, batch: list[_Request]
    ) -> dict[uuid.UUID, int]:
        ids = [e.event_id for r in batch for e in r.events]
        records = await conn.fetch(Q["existing_ids"], ids)
        return {r["event_id"]: r["position"] for r in records}

    async def _read_duplicates(
        self, conn: asyncpg.Connection, request: _Request, existing: dict[uuid.UUID, int]
    ) -> list[RecordedEvent] | BaseException:
        positions = [existing[e.event_id] for e in request.events]
        if any(p < 0 for p in positions):
            return PartialDuplicate("the same event ids were appended twice in one batch")
        records = await conn.fetch(Q["read_positions"], positions)
        return [row_to_event(r) for r in records]

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
    """LISTEN on the append channel, on a connection held for that purpose."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._event = asyncio.Event()
        self._conn: Any = None

    async def __aenter__(self) -> Wakeups:
        self._conn = await self._pool.acquire()
        await self._conn.add_listener(NOTIFY_CHANNEL, self._notified)
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
            await self._pool.release(conn)

    def _notified(self, *_: object) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, timeout: float) -> bool:
        """True when an append was notified, False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def _record(
    prev_hash: bytes,
    position: int,
    stream: StreamRef,
    version: int,
    event: NewEvent,
    recorded_at: datetime,
) -> RecordedEvent:
    metadata = _encode(event.metadata)
    digest = event_hash(
        prev_hash,
        position=position,
        event_id=event.event_id,
        tenant_id=stream.tenant_id,
        stream_type=stream.stream_type,
        stream_id=stream.stream_id,
        stream_version=version,
        type=event.type,
        schema_version=event.schema_version,
        occurred_at=event.occurred_at,
        recorded_at=recorded_at,
        payload=event.payload,
        metadata=metadata,
    )
    return RecordedEvent(
        position=position,
        event_id=event.event_id,
        tenant_id=stream.tenant_id,
        stream_type=stream.stream_type,
        stream_id=stream.stream_id,
        stream_version=version,
        type=event.type,
        schema_version=event.schema_version,
        occurred_at=event.occurred_at,
        recorded_at=recorded_at,
        payload=event.payload,
        metadata=metadata,
        hash=digest,
    )


def _columns(rows: list[RecordedEvent]) -> tuple[list[Any], ...]:
    return (
        [r.position for r in rows],
        [r.event_id for r in rows],
        [r.tenant_id for r in rows],
        [r.stream_type for r in rows],
        [r.stream_id for r in rows],
        [r.stream_version for r in rows],
        [r.type for r in rows],
        [r.schema_version for r in rows],
        [r.occurred_at for r in rows],
        [r.recorded_at for r in rows],
        [r.payload.decode() for r in rows],
        [r.metadata.decode() for r in rows],
        [r.hash for r in rows],
    )
