"""What a batch of appends runs inside its transaction, whichever way it goes
(events/writer.py's one trip, events/long_way.py): the requests' writes, the projections
(planned before the transaction, or run with the numbered events), the `also` steps, and the
numbering of the records `events_append` answered for."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from events.appends import AppendRequest, GroupedStep, InlineProjector, Layers, PlannedProjector
from events.envelope import RecordedEvent
from events.rows import send_rows
from events.sql import Conn

_replace = msgspec.structs.replace


async def send_writes(conn: Conn, batch: Sequence[AppendRequest]) -> None:
    """Every request's writes, each SQL text once (events.rows.send_rows), in first-seen
    order."""
    grouped: dict[str, list[tuple[object, ...]]] = {}
    for request in batch:
        for sql, args in request.writes:
            grouped.setdefault(sql, []).append(args)
    for sql, many in grouped.items():
        await send_rows(conn, sql, many)


def number(
    accepted: Sequence[tuple[AppendRequest, list[RecordedEvent]]], first: int, hashes: list[bytes]
) -> list[tuple[AppendRequest, list[RecordedEvent]]]:
    """The pending records with the positions and hashes `events_append` gave them."""
    position, digests = first, iter(hashes)
    numbered = []
    for request, records in accepted:
        mine = []
        for rec in records:
            mine.append(_replace(rec, position=position, hash=next(digests)))
            position += 1
        numbered.append((request, mine))
    return numbered


def _grouped(
    accepted: Sequence[tuple[AppendRequest, list[RecordedEvent]]],
) -> dict[InlineProjector, list[RecordedEvent]]:
    """Each projector of the batch with the events of every request that names it, in order."""
    grouped: dict[InlineProjector, list[RecordedEvent]] = {}
    for request, recorded in accepted:
        if request.projector is not None:
            grouped.setdefault(request.projector, []).extend(recorded)
    return grouped


def planned(accepted: Sequence[tuple[AppendRequest, list[RecordedEvent]]]) -> list[Layers] | None:
    """Each projector's statements for the batch, planned from the pending records; None
    when a projector of the batch is not planned (it runs with the numbered events)."""
    plans = []
    for projector, records in _grouped(accepted).items():
        if not isinstance(projector, PlannedProjector):
            return None
        plans.append(projector.plan(records))
    return plans


async def project(
    conn: asyncpg.Connection, accepted: Sequence[tuple[AppendRequest, list[RecordedEvent]]]
) -> None:
    """Each projector once, with the events of every request that names it, in order."""
    for projector, records in _grouped(accepted).items():
        await projector(conn, records)


async def run_also(conn: asyncpg.Connection, batch: Sequence[AppendRequest]) -> None:
    """Each request's step in turn; the GroupedSteps of a batch of several, one call a group
    (the replay guard of a batch of ID-JAGs: one statement under the lock, not one each)."""
    grouped: dict[str, list[GroupedStep]] = {}
    for request in batch:
        step = request.also
        if isinstance(step, GroupedStep) and len(batch) > 1:
            grouped.setdefault(step.group, []).append(step)
        elif step is not None:
            await step(conn)
    for steps in grouped.values():
        await steps[0].together(conn, [s.args for s in steps])
