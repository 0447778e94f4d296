"""The Postgres event store.

Appends go through one writer task per process that batches whatever is waiting into one
transaction (group commit) under a transaction-level advisory lock, so positions are gap-free
and commit in order. A batch goes one of two ways:

* The long way: inside the lock the writer reads the head of the log, checks each request's
  expected stream version and event ids, hands out positions, extends the hash chain, inserts
  every row with one statement, runs the inline projectors and notifies tailers.
* The one-round-trip way, when the writer knows where the log ends (it wrote the last batch):
  it hashes the batch on that head beforehand and `events_append_fast` (a database function)
  takes the lock, checks the head and the streams, inserts and notifies in one call; it writes
  nothing and the batch goes the long way when anything is not as expected. Requests that need
  the long way's per-request answers (any version, a stream or event id twice in the batch)
  go the long way from the start.

Up to `max_batches_in_flight` batches are under way at once: a batch is hashed while the one
before it is in the database, and goes to the database when that one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

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


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream, appended only if the stream is at `expected_version`."""

    stream: StreamRef
    expected_version: int
    events: Sequence[NewEvent]


@dataclass
class _Request:
    """One caller's append: one or more streams, all or nothing."""

    parts: Sequence[StreamAppend]
    projector: InlineProjector | None
    future: asyncio.Future[list[RecordedEvent]] = field(repr=False)
    events: list[NewEvent] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.events = [event for part in self.parts for event in part.events]


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
        max_batches_in_flight: int = 2,
    ) -> None:
        if max_batches_in_flight < 1:
            raise ValueError("max_batches_in_flight must be at least 1")
        self._pool = pool
        self._clock = clock or SystemClock()
        self._max_batch_events = max_batch_events
        self._max_in_flight = max_batches_in_flight
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._batches: set[asyncio.Task[None]] = set()
        self._unfinished = 0  # batches dispatched whose database work is not done yet
        self._slot_free = asyncio.Event()
        self._holding = False  # the writer holds requests it has not dispatched yet
        # Where the log ends after the last batch dispatched, when this store knows it: what
        # the one-round-trip way hashes on. `events_append_fast` checks it under the lock, so
        # a wrong guess costs a round trip, never correctness.
        self._expected_head: tuple[int, bytes] | None = None
        self._last_turn: _Turn | None = None  # of the last batch dispatched
        self._fast = True  # False when the database lacks events_append_fast
        self._fast_misses = 0  # consecutive guesses another writer's appends made wrong
        self._fast_skip = 0  # batches to send the long way before guessing again

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
        return await self.append_many(
            [StreamAppend(stream, expected_version, events)], projector=projector
        )

    async def append_many(
        self, parts: Sequence[StreamAppend], *, projector: InlineProjector | None = None
    ) -> list[RecordedEvent]:
        """Append to several streams atomically: every part is checked against its expected
        version and all are written in one transaction, or none is. Returns the recorded
        events in the order of the parts."""
        if not parts or any(not part.events for part in parts):
            raise ValueError("append needs at least one event per stream")
        if len({(p.stream.tenant_id, p.stream.stream_id) for p in parts}) != len(parts):
            raise ValueError("a stream appears twice in one append")
        if self._closed:
            raise RuntimeError("event store is closed")
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(parts, projector, future))
        return await future

    async def close(self) -> None:
        """Finish every append already queued, then stop the writer."""
        self._closed = True
        if self._writer is not None:
            while (self._holding or not self._queue.empty()) and not self._writer.done():
                await asyncio.sleep(0.005)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            self._holding = True
            while self._unfinished >= self._max_in_flight:
                self._slot_free.clear()
                await self._slot_free.wait()
            # Share what is waiting between the free slots: while one batch is in the
            # database, the callers of the other get their answers and make their next appends.
            free = self._max_in_flight - self._unfinished
            share = -(-(self._queue.qsize() + 1) // free)
            batch = [first]
            size = len(first.events)
            while size < self._max_batch_events and len(batch) < share and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                size += len(request.events)
            self._holding = False
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            self._unfinished += 1
            task = loop.create_task(self._write_batch(live))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _slot_done(self) -> None:
        self._unfinished -= 1
        self._slot_free.set()

    async def _write_batch(self, live: list[_Request]) -> None:
        released = False

        def release_slot() -> None:
            nonlocal released
            if not released:
                released = True
                self._slot_done()

        try:
            await self._commit(live, release_slot)
        except Exception as exc:
            if len(live) == 1:
                _fail(live[0], exc)
                return
            # One poison request must not sink its neighbours: retry each on its own.
            log.warning("store.batch_failed", size=len(live), error=repr(exc))
            for request in live:
                try:
                    await self._commit([request])
                except Exception as single_exc:
                    _fail(request, single_exc)
        finally:
            release_slot()  # normally done already, when the batch's database work ended

    async def _commit(
        self, batch: list[_Request], on_done: Callable[[], None] | None = None
    ) -> None:
        """Commit `batch` after the batch dispatched before it (see the module docstring)."""
        previous, turn = self._last_turn, _Turn(on_done)
        self._last_turn = turn
        try:
            base = self._expected_head
            if base is None and previous is not None:
                base = await previous.wait()
                previous = None
            prepared = None
            if base is not None and self._fast and _fits_fast_path(batch):
                if self._fast_skip > 0:
                    self._fast_skip -= 1
                else:
                    prepared = self._prepare(batch, base)
            # The next batch may hash on where this one ends before this one commits.
            self._expected_head = prepared.end if prepared is not None else None
            if previous is not None:
                actual = await previous.wait()
                if prepared is not None and actual != base:
                    # The batch before did not end where it expected to: hash again.
                    prepared = self._prepare(batch, actual) if actual is not None else None
            if prepared is not None and await self._commit_fast(batch, prepared, turn):
                return
            turn.finish(await self._commit_checked(batch))
        finally:
            turn.finish(None)  # no-op when finished above
            if self._last_turn is turn:
                self._expected_head = turn.head

    def _prepare(self, batch: list[_Request], base: tuple[int, bytes]) -> _Prepared | None:
        """The batch hashed on `base`, with the arguments of `append_fast`.

        None when the batch cannot go as JSON exactly as asyncpg would send it; it then goes
        the long way, as always.
        """
        position, prev_hash = base
        recorded_at = self._clock.now()
        if recorded_at.tzinfo is None:
            return None
        rows: list[RecordedEvent] = []
        accepted: list[tuple[_Request, list[RecordedEvent]]] = []
        check_tenants: list[str] = []
        check_streams: list[str] = []
        check_versions: list[int] = []
        for request in batch:
            recorded = []
            for part in request.parts:
                current = part.expected_version
                if current > 0:
                    check_tenants.append(part.stream.tenant_id)
                    check_streams.append(part.stream.stream_id)
                    check_versions.append(current)
                for event in part.events:
                    position += 1
                    current += 1
                    record = _record(prev_hash, position, part.stream, current, event, recorded_at)
                    prev_hash = record.hash
                    recorded.append(record)
            rows.extend(recorded)
            accepted.append((request, recorded))
        try:
            encoded = _encode(rows).decode()
        except (TypeError, ValueError, msgspec.EncodeError):
            return None
        args = (
            APPEND_LOCK,
            base[0],
            base[1],
            check_tenants,
            check_streams,
            check_versions,
            encoded,
            str(position),
        )
        return _Prepared(accepted, args, (position, prev_hash))

    async def _commit_fast(self, batch: list[_Request], prepared: _Prepared, turn: _Turn) -> bool:
        """One round trip; False, having written nothing, when the batch must go the long way."""
        # Callers get their answers before the connection goes back to the pool: asyncpg
        # resets a connection on release, a round trip nobody needs to wait for.
        async with self._pool.acquire() as conn:
            try:
                if all(request.projector is None for request in batch):
                    status = await conn.fetchval(Q["append_fast"], *prepared.args)
                else:
                    async with conn.transaction():
                        status = await conn.fetchval(Q["append_fast"], *prepared.args)
                        if status == "appended":
                            await _project(cast(asyncpg.Connection, conn), prepared.accepted)
            except asyncpg.UndefinedFunctionError:
                log.warning("store.fast_append_unavailable", hint="migrate the database")
                self._fast = False
                return False
            if status != "appended":
                if status == "head_moved":  # another writer appended: guess less often
                    self._fast_misses = min(self._fast_misses + 1, 6)
                    self._fast_skip = (1 << self._fast_misses) - 1
                return False
            self._fast_misses = 0
            turn.finish(prepared.end)  # the next batch goes to the database first
            for request, recorded in prepared.accepted:
                if not request.future.done():
                    request.future.set_result(recorded)
        return True

    async def _commit_checked(self, batch: list[_Request]) -> tuple[int, bytes]:
        """The long way; returns where the log ends after it."""
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
                conflict = _conflict(request, versions)
                if conflict is not None:
                    outcomes[index] = conflict
                    continue
                recorded = []
                for part in request.parts:
                    key = (part.stream.tenant_id, part.stream.stream_id)
                    current = versions.get(key, 0)
                    for event in part.events:
                        position += 1
                        current += 1
                        record = _record(
                            prev_hash, position, part.stream, current, event, recorded_at
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
        return position, prev_hash

    async def _stream_versions(
        self, conn: asyncpg.Connection, batch: list[_Request]
    ) -> dict[tuple[str, str], int]:
        keys = {(p.stream.tenant_id, p.stream.stream_id) for r in batch for p in r.parts}
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
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:  # cancelled or failed before listening: give the connection back
            await self._pool.release(conn)
            raise
        self._conn = conn
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


class _Prepared(NamedTuple):
    accepted: list[tuple[_Request, list[RecordedEvent]]]  # each request with its records
    args: tuple[Any, ...]  # of `append_fast`
    end: tuple[int, bytes]  # position and hash of the last record


class _Turn:
    """A batch's place in line: done, with where it left the log (None: unknown), when its
    database work is."""

    __slots__ = ("_done", "_on_done", "head")

    def __init__(self, on_done: Callable[[], None] | None) -> None:
        self._done = asyncio.Event()
        self._on_done = on_done
        self.head: tuple[int, bytes] | None = None

    def finish(self, head: tuple[int, bytes] | None) -> None:
        if not self._done.is_set():
            self.head = head
            self._done.set()
            if self._on_done is not None:
                self._on_done()

    async def wait(self) -> tuple[int, bytes] | None:
        await self._done.wait()
        return self.head


async def _project(
    conn: asyncpg.Connection, accepted: list[tuple[_Request, list[RecordedEvent]]]
) -> None:
    for request, recorded in accepted:
        if request.projector is not None:
            await request.projector(conn, recorded)


def _fits_fast_path(batch: list[_Request]) -> bool:
    """Every part names its expected version, no stream or event id comes twice, and the
    timestamps are aware (JSON would carry a naive one differently from asyncpg)."""
    streams = set()
    ids = set()
    parts = count = 0
    for request in batch:
        for part in request.parts:
            if part.expected_version < 0:
                return False
            streams.add((part.stream.tenant_id, part.stream.stream_id))
            parts += 1
        for event in request.events:
            if event.occurred_at.tzinfo is None:
                return False
            ids.add(event.event_id)
        count += len(request.events)
    return len(streams) == parts and len(ids) == count


def _conflict(
    request: _Request, versions: dict[tuple[str, str], int]
) -> ConcurrencyConflict | None:
    """The first part whose stream is not at its expected version, if any."""
    for part in request.parts:
        key = (part.stream.tenant_id, part.stream.stream_id)
        current = versions.get(key, 0)
        if part.expected_version not in (ANY_VERSION, current):
            return ConcurrencyConflict(key[0], key[1], part.expected_version, current)
    return None


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
