"""What an append is made of: the request types and the pure steps of the write path
(numbering, hashing, the checks that need no database), shared by events/writer.py."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from events.envelope import NewEvent, RecordedEvent, StreamRef
from events.errors import ConcurrencyConflict
from events.hashchain import frame, framed_after_position, link
from events.rows import send
from events.sql import Conn

APPEND_LOCK = 0x6175_7468_6C65_6467  # "authledg"
NOTIFY_CHANNEL = "authledger_events"
ANY_VERSION = -1
NO_STREAM = 0
_encode = msgspec.json.Encoder().encode

# Runs inside the append transaction, under the append lock, with the events just recorded:
# once per batch with the events (in log order) of every request that names it.
InlineProjector = Callable[[asyncpg.Connection, Sequence[RecordedEvent]], Awaitable[None]]
# A batch's projection statements cut into layers (projections.layers): per layer, each SQL
# text with the argument lists of its statements, in first-seen order.
Layers = list[dict[str, list[tuple[Any, ...]]]]
# Runs inside the append transaction, after the events are in (under the append lock).
InTransaction = Callable[[asyncpg.Connection], Awaitable[None]]
# A statement run inside the append transaction before the lock; a batch sends each SQL text
# once, with every request's arguments (events.rows.send_rows: its column form, else
# `executemany`). Different requests' writes must touch different rows (a new subject's key,
# say).
Write = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class GroupedStep:
    """An `also` step the writer may run with the other steps of its `group` in the batch in
    one call: `together(conn, [args, ...])`, which raises when any of them must be refused, so
    that the batch is committed again request by request, each step then `alone`. Run by
    itself (a batch of one, or inside another step) it is `alone(conn)`."""

    group: str
    args: tuple[Any, ...]
    alone: InTransaction
    together: Callable[[asyncpg.Connection, list[tuple[Any, ...]]], Awaitable[None]]

    async def __call__(self, conn: asyncpg.Connection) -> None:
        await self.alone(conn)


@dataclass(frozen=True, slots=True)
class PlannedProjector:
    """An inline projector whose statements follow from the events alone: it reads nothing,
    and no statement depends on an event's position, hash or recorded_at (the fields the
    database fills in). So the writer plans a batch's statements before its transaction, as
    bench/registration_floor.py builds its rows, and under the append lock only sends them
    (events/writer.py). Called like any InlineProjector, it plans and sends at once."""

    plan: Callable[[Sequence[RecordedEvent]], Layers]

    async def __call__(self, conn: Conn, events: Sequence[RecordedEvent]) -> None:
        await send_layers(conn, self.plan(events))


async def send_layers(conn: Conn, layers: Layers) -> None:
    """The layers in order; in each, every SQL text once (events.rows.send: `execute` or
    `executemany`; the planner has already put rows in their column forms)."""
    for layer in layers:
        for sql, many in layer.items():
            await send(conn, sql, many)


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream, appended only if the stream is at `expected_version`."""

    stream: StreamRef
    expected_version: int
    events: Sequence[NewEvent]


@dataclass
class AppendRequest:
    """One caller's append: one or more streams, all or nothing."""

    parts: Sequence[StreamAppend]
    projector: InlineProjector | None
    future: asyncio.Future[list[RecordedEvent]] = field(repr=False)
    writes: Sequence[Write] = ()
    also: InTransaction | None = None
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


def fits_one_trip(batch: list[AppendRequest]) -> bool:
    """Every part names its expected version, no stream or event id comes twice, and the
    timestamps are aware (the database frames them in UTC)."""
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


def conflict(
    request: AppendRequest, versions: dict[tuple[str, str], int]
) -> ConcurrencyConflict | None:
    """The first part whose stream is not at its expected version, if any."""
    for part in request.parts:
        key = (part.stream.tenant_id, part.stream.stream_id)
        current = versions.get(key, 0)
        if part.expected_version not in (ANY_VERSION, current):
            return ConcurrencyConflict(key[0], key[1], part.expected_version, current)
    return None


def fail(request: AppendRequest, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def record(
    prev_hash: bytes,
    position: int,
    stream: StreamRef,
    version: int,
    event: NewEvent,
    *,
    recorded_at: datetime,
) -> RecordedEvent:
    """The record at `position` after `prev_hash`, hashed here (the long way): the same
    framing `events_append` completes in the database (one function frames both)."""
    rec, rest = pending(stream, version, event, recorded_at=recorded_at)
    digest = link(prev_hash, hashlib.sha256(frame((str(position).encode(),)) + rest).digest())
    return msgspec.structs.replace(rec, position=position, hash=digest)


def pending(
    stream: StreamRef, version: int, event: NewEvent, *, recorded_at: datetime
) -> tuple[RecordedEvent, bytes]:
    """A record before the database numbers and hashes it (position 0, no hash: the writer
    fills both in from the database's answer), with the digest input after its position
    (events.hashchain.framed_after_position)."""
    metadata = _encode(event.metadata)
    rest = framed_after_position(
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
    record = RecordedEvent(
        position=0,
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
        hash=b"",
    )
    return record, rest


def columns(rows: list[RecordedEvent]) -> tuple[list[Any], ...]:
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
