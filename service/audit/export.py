"""An audit slice as JSON Lines, with the proof to check it offline (service/audit/check.py).

    line 1       {"line": "header", "format": "authledger-audit-export", "version": 1,
                  "subject", "bound", "tenant", "exported_at", "chain": how hashes are made,
                  "events": n, "runs": [...], "anchored": bool, "jwks": {"keys": [...]}}
    then         {"line": "event", position, event_id, tenant_id, stream_type, stream_id,
                  stream_version, type, schema_version, occurred_at, recorded_at,
                  payload, metadata (the exact stored JSON text, as strings), hash (hex)}
                 for every event of the slice, in log order;
    then         {"line": "digest", "position", "digest"} for every other position of a run,
    then         {"line": "checkpoint", "position", "jws"} for every checkpoint a run leans on.

A run is the stretch of the log from the last signed checkpoint before an event of the slice
(or the genesis) to the first signed checkpoint at or after it: the checker starts from the
signed hash, links each position's content digest (recomputed from the event when the event
is in the file), and must meet the next signed hash exactly. Events close together share a
run; stretches between runs are left out, since both their ends are signed. A run with no
checkpoint after it (the newest events) is "unanchored" unless the exporter may sign one now.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.envelope import RecordedEvent
from events.instants import utc_micros
from events.sql import Conn
from service.audit.signed import Checkpoint, Jwk
from service.audit.subjects import Bound, Subject, read, streams
from service.audit.verify import BATCH, Progress, Q, check_rows, checkpoints, load_keys

FORMAT = "authledger-audit-export"
VERSION = 1
MEDIA_TYPE = "application/jsonl"
CHAIN = {
    "content_digest": "SHA-256 of the fields position, event_id (its 16 bytes), tenant_id, "
    "stream_type, stream_id, stream_version, type, schema_version, occurred_at, recorded_at "
    "(ISO 8601, UTC, microseconds, +00:00), payload, metadata (the JSON text), each as a "
    "4-byte big-endian length then its UTF-8 bytes; integers in decimal",
    "event_hash": "SHA-256(previous event_hash || content_digest); before position 1: 32 zero "
    "bytes",
}
SignNow = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Run:
    after: int  # the checkpoint it starts from (0: the genesis)
    to: int  # its last position
    anchored: bool  # `to` is a signed checkpoint

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.after + 1,
            "to": self.to,
            "after_checkpoint": self.after,
            "checkpoint": self.to if self.anchored else None,
        }


def plan(positions: Sequence[int], signed: Sequence[int]) -> list[Run]:
    """The runs proving `positions` (ascending) given signed checkpoint positions."""
    runs: list[Run] = []
    marks = sorted(signed)
    for position in positions:
        index = bisect_left(marks, position)  # the first checkpoint at or after it
        after = marks[index - 1] if index > 0 else 0
        end = marks[index] if index < len(marks) else None
        if runs and runs[-1].after == after and (end is None or runs[-1].to == end):
            if end is None:
                runs[-1] = Run(after, position, anchored=False)
            continue
        runs.append(Run(after, position if end is None else end, anchored=end is not None))
    return runs


async def _checkpoints_for(
    db: Conn, positions: list[int]
) -> tuple[list[Checkpoint], dict[str, Jwk]]:
    keys = await load_keys(db)
    rows = await db.fetch(Q["checkpoints_around"], positions)
    good, problems = check_rows(rows, keys)
    if problems:  # a bad one in the way: choose among all the good ones instead
        good, _ = await checkpoints(db, keys)
    return good, keys


async def export(
    db: Conn,
    subject: Subject,
    bound: Bound,
    *,
    now: datetime,
    sign_now: SignNow | None = None,
    progress: Progress | None = None,
) -> AsyncIterator[str]:
    """The export's lines (each ending in a newline), produced as they are read; `progress`
    hears (events written, events in the slice) as the event lines go."""
    events = await read(db, subject.tenant_id, await streams(db, subject), bound)
    positions = [e.position for e in events]
    good, keys = await _checkpoints_for(db, positions) if positions else ([], {})
    if (
        positions
        and sign_now is not None
        and max(positions) > max((c.position for c in good), default=0)
    ):
        await sign_now()
        good, keys = await _checkpoints_for(db, positions)
    runs = plan(positions, [c.position for c in good])
    used = {r.after for r in runs} | {r.to for r in runs if r.anchored}
    leaned_on = [c for c in good if c.position in used]
    kids = sorted({c.kid for c in leaned_on})
    header = {
        "line": "header",
        "format": FORMAT,
        "version": VERSION,
        "tenant": subject.tenant_id,
        "subject": subject.as_json(),
        "bound": bound.as_json(),
        "exported_at": now.astimezone(UTC).isoformat(),
        "chain": CHAIN,
        "events": len(events),
        "streams_complete": bound.at is None,
        "runs": [r.as_json() for r in runs],
        "anchored": all(r.anchored for r in runs),
        "jwks": {"keys": [dict(keys[k]) for k in kids if k in keys]},
    }
    yield _line(header)
    for done, event in enumerate(events, 1):
        yield _line(event_line(event))
        if progress is not None:
            progress(done, len(events))
    in_slice = set(positions)
    for run in runs:
        async for position, digest in _digests(db, run):
            if position not in in_slice:
                yield _line({"line": "digest", "position": position, "digest": digest.hex()})
    for checkpoint in leaned_on:
        yield _line({"line": "checkpoint", "position": checkpoint.position, "jws": checkpoint.jws})


def event_line(event: RecordedEvent) -> dict[str, Any]:
    return {
        "line": "event",
        "position": event.position,
        "event_id": str(event.event_id),
        "tenant_id": event.tenant_id,
        "stream_type": event.stream_type,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "type": event.type,
        "schema_version": event.schema_version,
        "occurred_at": utc_micros(event.occurred_at).decode(),  # as the chain frames them
        "recorded_at": utc_micros(event.recorded_at).decode(),
        "payload": event.payload.decode(),
        "metadata": event.metadata.decode(),
        "hash": event.hash.hex(),
    }


async def _digests(db: Conn, run: Run) -> AsyncIterator[tuple[int, bytes]]:
    """Every stored position of the run with its content digest (framed by Postgres)."""
    after = run.after
    while after < run.to:
        rows = await db.fetch(Q["framed"], after, run.to, BATCH)
        if not rows:
            return
        for position, _, framed in rows:
            yield position, hashlib.sha256(framed).digest()
        after = rows[-1][0]


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"
