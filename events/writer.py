"""The write path: one writer per process batching appends into group commits.

Appends wait in a queue; the writer takes whatever is waiting into one transaction, so a
request's events, its read-model rows and its other writes (a new subject's key) commit
together, with one statement per SQL text per batch. Positions are handed out under a
transaction-level advisory lock, so they are gap-free and commit in order. A batch goes one
of two ways:

* One trip (the usual way): the batch's projection statements are planned before the
  transaction (events.appends.PlannedProjector: from the pending records, so no Python work
  of ours stands between the lock and the commit); the batch's writes go first (new rows
  only), then `events_append` (migrations/0014_append_in_database.sql) takes the lock,
  checks the expected versions and ids, numbers the events, extends the hash chain and
  inserts them in one call, whoever else appends; then the planned statements (one
  execution per statement, events.rows), `also` and COMMIT. The records are numbered for their
  callers after the commit. When the function answers 'conflict' the transaction is
  rolled back, having written nothing, and the batch goes the long way. Projections run
  under the lock, never before it: a writer holding read-model rows while it waits for the
  lock would deadlock with one that holds the lock and wants them (or with replay's switch,
  which takes the lock and then the tables). Requests that need the long way's per-request
  answers (any version, a stream or event id twice in the batch) go there from the start.
* The long way (events/long_way.py): inside the lock the writer reads the head of the log,
  checks each request's expected stream versions and event ids (a stored id answers with
  the stored records), hands out positions, extends the hash chain, inserts every row with
  one statement, runs the inline projectors and notifies tailers.

What a batch runs in its transaction either way (the writes, the projections, `also`) is
events/batch_steps.py's.

Up to `max_batches_in_flight` batches (default 1) are under way at once: the lock orders
every process's batches anyway, and one batch in flight lets the next one grow while it
commits (measured: +22 % registrations/s at 16 connections against 2 in flight). A request
that fails (a conflict, a projector error) fails alone: a failed batch is retried request by
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import Counter, deque
from collections.abc import Sequence
from typing import cast

import asyncpg
import structlog

from events.appends import (
    APPEND_LOCK,
    AppendRequest,
    InlineProjector,
    InTransaction,
    StreamAppend,
    Write,
    columns,
    fail,
    fits_one_trip,
    pending,
    send_layers,
)
from events.batch_steps import number, planned, project, run_also, send_writes
from events.clock import Clock
from events.envelope import RecordedEvent
from events.long_way import commit_checked
from events.sql import load_queries

Q = load_queries("events", "store.sql")
# Seconds a batch waits at most for callers on their way back (Writer._gather), unless the
# store is told otherwise (AUTHLEDGER_WRITE_HOLD_MS). 4 ms lets a process's callers come back
# in one batch at 16 and 64 connections on loopback (docs/benchmarks.md, 2026-12-07; 1 ms before).
GATHER_WAIT = 0.004
GATHER_MEMORY = 32  # batches over which the writer remembers how many callers it had
log = structlog.get_logger("events.writer")


class _LongWay(Exception):
    """The one-trip append found a version or an id not as expected: nothing was written."""


class Writer:
    """Group commit for one process; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        max_batch_events: int = 1000,
        max_batches_in_flight: int = 1,
        gather_wait: float | None = None,
    ) -> None:
        if max_batches_in_flight < 1:
            raise ValueError("max_batches_in_flight must be at least 1")
        # seconds a batch may wait for callers on their way back (_gather); 0: never
        self._gather_wait = GATHER_WAIT if gather_wait is None else gather_wait
        if self._gather_wait < 0:
            raise ValueError("gather_wait cannot be negative")
        self._pool = pool
        self._clock = clock
        self._max_batch_events = max_batch_events
        self._max_in_flight = max_batches_in_flight
        self._queue: asyncio.Queue[AppendRequest] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._unfinished = 0  # batches dispatched whose database work is not done yet
        self._callers = 0  # requests queued or in a batch in flight, not yet answered
        self._peak = 0  # the most `_callers` since the last batch finished
        # `_peak` of each of the last batches: how many this process has at once (_gather)
        self._recent: deque[int] = deque(maxlen=GATHER_MEMORY)
        self._want = 0  # the queue's length _gather waits for (0: it is not waiting)
        self._enough = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._one_trip = True  # False when the database lacks events_append (not migrated)
        # Batches committed each way, since start: a long way taken often means conflicts or
        # requests that need per-request answers, never that another process appended. And
        # "held": batches that waited for callers on their way back (_gather).
        self.batches: Counter[str] = Counter()

    async def submit(
        self,
        parts: Sequence[StreamAppend],
        projector: InlineProjector | None,
        writes: Sequence[Write] = (),
        also: InTransaction | None = None,
    ) -> list[RecordedEvent]:
        if self._writer is None or self._writer.done():
            # In a context of its own: the first request's (its request id) must not stick
            # to every batch the writer ever logs about.
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), context=contextvars.Context()
            )
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._answered)
        self._queue.put_nowait(AppendRequest(parts, projector, future, writes, also))
        self._callers += 1
        self._peak = max(self._peak, self._callers)
        if self._want and self._queue.qsize() >= self._want:
            self._enough.set()
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
            await self._gather()
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

    async def _gather(self) -> None:
        """Hold the next batch, at most the gather wait (GATHER_WAIT unless told), until as
        many requests wait as this process recently had waiting or in flight at once.

        With one batch in flight, callers split into groups that take turns: while one
        group's batch commits, the other's waits, so each batch holds half of the callers
        and pays a whole batch's round trips. The callers answered by the last commit come
        back within a fraction of a millisecond; waiting for them joins the groups into
        one batch (docs/benchmarks.md, session 8). A lone caller never waits."""
        target = max(self._recent, default=0)
        if self._queue.qsize() + 1 >= target or self._gather_wait == 0:
            return
        self.batches["held"] += 1
        self._want = target - 1
        self._enough.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._gather_wait):
                await self._enough.wait()
        self._want = 0

    def _answered(self, _: asyncio.Future[list[RecordedEvent]]) -> None:
        self._callers -= 1  # answered, failed or cancelled: no longer the writer's

    def _slot_done(self) -> None:
        self._unfinished -= 1
        self._slot_free.set()

    async def _write_batch(self, live: list[AppendRequest]) -> None:
        try:
            await self._commit(live)
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
            self._recent.append(self._peak)
            self._peak = self._callers
            self._slot_done()

    async def _commit(self, batch: list[AppendRequest]) -> None:
        if self._one_trip and fits_one_trip(batch):
            try:
                await self._commit_one_trip(batch)
            except _LongWay:
                pass
            except asyncpg.UndefinedFunctionError:
                log.warning("store.append_function_missing", hint="migrate the database")
                self._one_trip = False
            else:
                return
        await commit_checked(self._pool, self._clock, batch)
        self.batches["long_way"] += 1

    async def _commit_one_trip(self, batch: list[AppendRequest]) -> None:
        """Writes, `events_append`, projections, `also`, in one transaction; _LongWay, having
        written nothing, when a version or an id is not as expected."""
        recorded_at = self._clock.now()
        if recorded_at.tzinfo is None:  # framed here as local time, stored as UTC
            raise _LongWay
        accepted: list[tuple[AppendRequest, list[RecordedEvent]]] = []
        rests: list[bytes] = []
        check_tenants: list[str] = []
        check_streams: list[str] = []
        check_versions: list[int] = []
        for request in batch:
            records = []
            for part in request.parts:
                version = part.expected_version
                if version > 0:
                    check_tenants.append(part.stream.tenant_id)
                    check_streams.append(part.stream.stream_id)
                    check_versions.append(version)
                for event in part.events:
                    version += 1
                    rec, rest = pending(part.stream, version, event, recorded_at=recorded_at)
                    records.append(rec)
                    rests.append(rest)
            accepted.append((request, records))
        rows = [rec for _, records in accepted for rec in records]
        cols = columns(rows)
        plans = planned(accepted)  # before the transaction: the lock waits on no Python work
        numbered: list[tuple[AppendRequest, list[RecordedEvent]]] | None = None
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await send_writes(conn, batch)
                answer = await conn.fetchrow(
                    Q["append"],
                    APPEND_LOCK,
                    check_tenants,
                    check_streams,
                    check_versions,
                    *cols[1:9],  # event_id .. occurred_at: appends.columns' order
                    recorded_at,
                    cols[10],  # payloads
                    cols[11],  # metadata
                    rests,
                )
                if answer is None or answer["status"] != "appended":
                    raise _LongWay
                first, hashes = answer["first_position"], answer["hashes"]
                if plans is None:  # a projector that wants the numbered events
                    numbered = number(accepted, first, hashes)
                    await project(cast(asyncpg.Connection, conn), numbered)
                else:
                    for layers in plans:
                        await send_layers(conn, layers)
                await run_also(cast(asyncpg.Connection, conn), batch)
            # Committed: callers get their answers before the connection goes back to the
            # pool (its release is no business of theirs).
            if numbered is None:
                numbered = number(accepted, first, hashes)
            self.batches["one_trip"] += 1
            for request, mine in numbered:
                if not request.future.done():
                    request.future.set_result(mine)
