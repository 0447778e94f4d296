"""The long way of the write path (events/writer.py): for a batch the one-trip append sent
back (a version or an id not as expected) or one that needs per-request answers from the
start (any version, a stream or an event id twice in the batch). Inside the append lock the
writer reads the head of the log, checks each request's expected stream versions and event
ids (a stored id answers with the stored records), hands out positions, extends the hash
chain, inserts every row with one statement, runs the inline projectors and notifies
tailers. Each request is answered on its own."""

from __future__ import annotations

import uuid
from typing import cast

import asyncpg

from events.appends import APPEND_LOCK, AppendRequest, columns, conflict, fail, record, row_to_event
from events.batch_steps import project, run_also, send_writes
from events.clock import Clock
from events.envelope import RecordedEvent
from events.errors import PartialDuplicate
from events.hashchain import GENESIS
from events.sql import Conn, load_queries

Q = load_queries("events", "store.sql")


async def commit_checked(pool: asyncpg.Pool, clock: Clock, batch: list[AppendRequest]) -> None:
    """The batch in one transaction, each request answered on its own: its records, a stored
    duplicate's, or its failure."""
    outcomes: dict[int, list[RecordedEvent] | BaseException] = {}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(Q["lock"], APPEND_LOCK)
        head = await conn.fetchrow(Q["head"])
        position, prev_hash = (head["position"], head["hash"]) if head else (0, GENESIS)
        versions = await _stream_versions(conn, batch)
        existing = await _existing_ids(conn, batch)
        recorded_at = clock.now()
        rows: list[RecordedEvent] = []
        accepted: list[tuple[AppendRequest, list[RecordedEvent]]] = []
        for index, request in enumerate(batch):
            ids = [e.event_id for e in request.events]
            known = [i for i in ids if i in existing]
            if known:
                outcomes[index] = (
                    await _read_duplicates(conn, request, existing)
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
            requests = [request for request, _ in accepted]
            await send_writes(conn, requests)
            await project(cast(asyncpg.Connection, conn), accepted)
            await run_also(cast(asyncpg.Connection, conn), requests)
            await conn.execute(Q["notify"], str(position))
    for index, request in enumerate(batch):
        outcome = outcomes[index]
        if isinstance(outcome, BaseException):
            fail(request, outcome)
        elif not request.future.done():
            request.future.set_result(outcome)


async def _stream_versions(conn: Conn, batch: list[AppendRequest]) -> dict[tuple[str, str], int]:
    keys = {(p.stream.tenant_id, p.stream.stream_id) for r in batch for p in r.parts}
    records = await conn.fetch(Q["stream_versions"], [k[0] for k in keys], [k[1] for k in keys])
    return {(r["tenant_id"], r["stream_id"]): r["stream_version"] for r in records}


async def _existing_ids(conn: Conn, batch: list[AppendRequest]) -> dict[uuid.UUID, int]:
    ids = [e.event_id for r in batch for e in r.events]
    records = await conn.fetch(Q["existing_ids"], ids)
    return {r["event_id"]: r["position"] for r in records}


async def _read_duplicates(
    conn: Conn, request: AppendRequest, existing: dict[uuid.UUID, int]
) -> list[RecordedEvent] | BaseException:
    positions = [existing[e.event_id] for e in request.events]
    if any(p < 0 for p in positions):
        return PartialDuplicate("the same event ids were appended twice in one batch")
    records = await conn.fetch(Q["read_positions"], positions)
    return [row_to_event(r) for r in records]
