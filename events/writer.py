"""The write path: one writer per process batching appends into group commits.

Appends wait in a queue; the writer takes whatever is waiting into one transaction under a
transaction-level advisory lock, so positions are gap-free and commit in order. A batch goes
one of two ways:

* The long way: inside the lock the writer reads the head of the log, checks each request's
  expected stream versions and event ids, hands out positions, extends the hash chain, inserts
  every row with one statement, runs the inline projectors and notifies tailers.
* The one-round-trip way, when the writer knows where the log ends (it wrote the last batch):
  it hashes the batch on that head beforehand and `events_append_fast` (a database function)
  takes the lock, checks the head and the streams, inserts and notifies in one call; it writes
  nothing and the batch goes the long way when anything is not as expected. Requests that need
  the long way's per-request answers (any version, a stream or event id twice in the batch)
  go the long way from the start.

Up to `max_batches_in_flight` batches are under way at once: a batch is hashed while the one
before it is in the database, and goes to the database when that one is done. A request that
fails (a conflict, a projector error) fails alone: a failed batch is retried request by request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Callable, Sequence
from typing import cast

import asyncpg
import msgspec
import structlog

from events.appends import (
    APPEND_LOCK,
    AppendRequest,
    InlineProjector,
    Prepared,
    StreamAppend,
    columns,
    conflict,
    fail,
    fits_fast_path,
    record,
    row_to_event,
)
from events.clock import Clock
from events.envelope import RecordedEvent
from events.errors import PartialDuplicate
from events.hashchain import GENESIS
from events.sql import Conn, load_queries

Q = load_queries("events", "store.sql")
log = structlog.get_logger("events.writer")
_encode = msgspec.json.Encoder().encode


class Writer:
    """Group commit for one process; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        max_batch_events: int = 1000,
        max_batches_in_flight: int = 2,
    ) -> None:
        if max_batches_in_flight < 1:
            raise ValueError("max_batches_in_flight must be at least 1")
        self._pool = pool
        self._clock = clock
        self._max_batch_events = max_batch_events
        self._max_in_flight = max_batches_in_flight
        self._queue: asyncio.Queue[AppendRequest] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._unfinished = 0  # batches dispatched whose database work is not done yet
        self._slot_free = asyncio.Event()
        # Where the log ends after the last batch dispatched, when this writer knows it: what
        # the one-round-trip way hashes on. `events_append_fast` checks it under the lock, so
        # a wrong guess costs a round trip, never correctness.
        self._expected_head: tuple[int, bytes] | None = None
        self._last_turn: _Turn | None = None  # of the last batch dispatched
        self._fast = True  # False when the database lacks events_append_fast
        self._fast_misses = 0  # consecutive guesses another writer's appends made wrong
        self._fast_skip = 0  # batches to send the long way before guessing again

    async def submit(
        self, parts: Sequence[StreamAppend], projector: InlineProjector | None
    ) -> list[RecordedEvent]:
        if self._writer is None or self._writer.done():
            # In a context of its own: the first request's (its request id) must not stick
            # to every batch the writer ever logs about.
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), context=contextvars.Context()
            )
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(AppendRequest(parts, projector, future))
        return await future

    async def close(self) -> None:
        """Dispatch every request already queued, let their batches finish, then stop."""
        if self._writer is not None:
            if not self._writer.done():
                await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
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
            live = [r for r in batch if not r.future.done()]
            if live:
                self._unfinished += 1
                task = loop.create_task(self._write_batch(live))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
            for _ in batch:
                self._queue.task_done()  # dispatched: what `close` waits for

    def _slot_done(self) -> None:
        self._unfinished -= 1
        self._slot_free.set()

    async def _write_batch(self, live: list[AppendRequest]) -> None:
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
                fail(live[0], exc)
                return
            # One poison request must not sink its neighbours: retry each on its own.
            log.warning("store.batch_failed", size=len(live), error=repr(exc))
            for request in live:
                try:
                    await self._commit([request])
                except Exception as single_exc:
                    fail(request, single_exc)
        finally:
            release_slot()  # normally done already, when the batch's database work ended

    async def _commit(
        self, batch: list[AppendRequest], on_done: Callable[[], None] | None = None
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
            if base is not None and self._fast and fits_fast_path(batch):
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

    def _prepare(self, batch: list[AppendRequest], base: tuple[int, bytes]) -> Prepared | None:
        """The batch hashed on `base`, with the arguments of `append_fast`.

        None when the batch cannot go as JSON exactly as asyncpg would send it; it then goes
        the long way, as always.
        """
        position, prev_hash = base
        recorded_at = self._clock.now()
        if recorded_at.tzinfo is None:
            return None
        rows: list[RecordedEvent] = []
        accepted: list[tuple[AppendRequest, list[RecordedEvent]]] = []
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
                    rec = record(
                        prev_hash, position, part.stream, current, event, recorded_at=recorded_at
                    )
                    prev_hash = rec.hash
                    recorded.append(rec)
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
        return Prepared(accepted, args, (position, prev_hash))

    async def _commit_fast(
        self, batch: list[AppendRequest], prepared: Prepared, turn: _Turn
    ) -> bool:
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

    async def _commit_checked(self, batch: list[AppendRequest]) -> tuple[int, bytes]:
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
            accepted: list[tuple[AppendRequest, list[RecordedEvent]]] = []
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
                refused = conflict(request, versions)
                if refused is not None:
                    outcomes[index] = refused
                    continue
                recorded = []
                for part in request.parts:
                    key = (part.stream.tenant_id, part.stream.stream_id)
                    current = versions.get(key, 0)
                    for event in part.events:
                        position += 1
                        current += 1
                        rec = record(
                            prev_hash,
                            position,
                            part.stream,
                            current,
                            event,
                            recorded_at=recorded_at,
                        )
                        prev_hash = rec.hash
                        recorded.append(rec)
                    versions[key] = current
                for event in request.events:
                    existing[event.event_id] = -1  # the same ids twice in one batch
                rows.extend(recorded)
                accepted.append((request, recorded))
                outcomes[index] = recorded
            if rows:
                await conn.execute(Q["insert"], *columns(rows))
                await _project(cast(asyncpg.Connection, conn), accepted)
                await conn.execute(Q["notify"], str(position))
        for index, request in enumerate(batch):
            outcome = outcomes[index]
            if isinstance(outcome, BaseException):
                fail(request, outcome)
            elif not request.future.done():
                request.future.set_result(outcome)
        return position, prev_hash

    async def _stream_versions(
        self, conn: Conn, batch: list[AppendRequest]
    ) -> dict[tuple[str, str], int]:
        keys = {(p.stream.tenant_id, p.stream.stream_id) for r in batch for p in r.parts}
        records = await conn.fetch(Q["stream_versions"], [k[0] for k in keys], [k[1] for k in keys])
        return {(r["tenant_id"], r["stream_id"]): r["stream_version"] for r in records}

    async def _existing_ids(self, conn: Conn, batch: list[AppendRequest]) -> dict[uuid.UUID, int]:
        ids = [e.event_id for r in batch for e in r.events]
        records = await conn.fetch(Q["existing_ids"], ids)
        return {r["event_id"]: r["position"] for r in records}

    async def _read_duplicates(
        self, conn: Conn, request: AppendRequest, existing: dict[uuid.UUID, int]
    ) -> list[RecordedEvent] | BaseException:
        positions = [existing[e.event_id] for e in request.events]
        if any(p < 0 for p in positions):
            return PartialDuplicate("the same event ids were appended twice in one batch")
        records = await conn.fetch(Q["read_positions"], positions)
        return [row_to_event(r) for r in records]


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
    conn: asyncpg.Connection, accepted: list[tuple[AppendRequest, list[RecordedEvent]]]
) -> None:
    for request, recorded in accepted:
        if request.projector is not None:
            await request.projector(conn, recorded)
