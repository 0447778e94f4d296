"""A subject's timeline: every event of its streams, in log order, with when it happened and was
recorded, who did it (actor), through which door and dialect (`v1` / `0.1.0`, `v06` / `0.6.0`;
None for operator, worker and older events, shown as recorded, never guessed), from where (the
client IP, opened with the subject's key, or `erased` once the person's key was destroyed), why
(reason, note) and in which request (correlation and causation ids). Payload fields are shown as
recorded: sealed values stay sealed, secrets were only ever stored hashed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from events.envelope import RecordedEvent
from events.sql import Conn
from service.audit.subjects import Bound, Subject, read, streams
from service.crypto.pii import Sealer, SealError

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
SEALED = "sealed"  # no secret key here to open it with
ERASED = "erased"  # the subject's key was destroyed
UNREADABLE = "unreadable"  # not a sealed value this service can open


@dataclass(frozen=True, slots=True)
class Timeline:
    subject: Subject
    bound: Bound
    entries: list[dict[str, Any]]
    next_after: int | None  # pass as `after` for the next page; None: this was the last

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject.as_json(),
            "bound": self.bound.as_json(),
            "entries": self.entries,
            "next_after": self.next_after,
        }


class IpOpener:
    """Opens sealed client IPs, each distinct value once per timeline."""

    def __init__(self, db: Conn, sealer: Sealer | None) -> None:
        self._db, self._sealer = db, sealer
        self._seen: dict[str, str] = {}

    async def __call__(self, sealed: str | None) -> str | None:
        if sealed is None:
            return None
        if self._sealer is None:
            return SEALED
        if sealed not in self._seen:
            try:
                plain = await self._sealer.open(self._db, sealed)
            except SealError:
                plain = UNREADABLE
            self._seen[sealed] = ERASED if plain is None else plain
        return self._seen[sealed]


async def entry(event: RecordedEvent, open_ip: IpOpener) -> dict[str, Any]:
    metadata = event.decoded_metadata()
    data: dict[str, Any] = msgspec.json.decode(event.payload)
    data.pop("type", None)
    return {
        "position": event.position,
        "occurred_at": _iso(event.occurred_at),
        "recorded_at": _iso(event.recorded_at),
        "type": event.type,
        "stream_type": event.stream_type,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "actor": metadata.actor,
        "door": metadata.door,
        "dialect": metadata.dialect,
        "client_ip": await open_ip(metadata.client_ip),
        "reason": data.get("reason"),
        "note": data.get("note"),
        "correlation_id": metadata.correlation_id,
        "causation_id": metadata.causation_id,
        "data": data,
    }


async def timeline(
    db: Conn,
    subject: Subject,
    bound: Bound,
    *,
    sealer: Sealer | None,
    after: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> Timeline:
    """A page of the subject's timeline: events after position `after`, at most `limit`."""
    limit = max(1, min(limit, MAX_LIMIT))
    events = await read(
        db, subject.tenant_id, await streams(db, subject), bound, after=after, limit=limit + 1
    )
    more = len(events) > limit
    events = events[:limit]
    open_ip = IpOpener(db, sealer)
    entries = [await entry(event, open_ip) for event in events]
    return Timeline(subject, bound, entries, events[-1].position if more else None)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()
