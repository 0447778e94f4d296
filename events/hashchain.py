"""The hash chain: each event's hash covers its content and the hash before it.

The digest input is length-prefixed so that no two different events share it. Positions are
gap-free, so a deleted row shows as a missing position and a reordered or edited row as a
hash that does not hold.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from events.envelope import RecordedEvent

GENESIS = bytes(32)


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(
    prev_hash: bytes,
    *,
    position: int,
    event_id: uuid.UUID,
    tenant_id: str,
    stream_type: str,
    stream_id: str,
    stream_version: int,
    type: str,
    schema_version: int,
    occurred_at: datetime,
    recorded_at: datetime,
    payload: bytes,
    metadata: bytes,
) -> bytes:
    h = hashlib.sha256(prev_hash)
    for part in (
        str(position).encode(),
        event_id.bytes,
        tenant_id.encode(),
        stream_type.encode(),
        stream_id.encode(),
        str(stream_version).encode(),
        type.encode(),
        str(schema_version).encode(),
        _iso(occurred_at).encode(),
        _iso(recorded_at).encode(),
        payload,
        metadata,
    ):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


class ChainReport:
    """What a walk of the log found: how many events held, and the first that did not."""

    def __init__(self, checked: int, first_break: int | None, reason: str | None) -> None:
        self.checked = checked
        self.first_break = first_break
        self.reason = reason

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def __repr__(self) -> str:
        return f"ChainReport(checked={self.checked}, first_break={self.first_break})"


def check_chain(
    events: Iterable[RecordedEvent], *, prev_hash: bytes = GENESIS, expected_position: int = 1
) -> tuple[ChainReport, bytes, int]:
    """Check a run of events that should start at `expected_position` after `prev_hash`.

    Returns the report plus the hash and next position to continue with.
    """
    checked = 0
    for event in events:
        if event.position != expected_position:
            reason = f"position {expected_position} is missing (next stored is {event.position})"
            return ChainReport(checked, expected_position, reason), prev_hash, expected_position
        digest = event_hash(
            prev_hash,
            position=event.position,
            event_id=event.event_id,
            tenant_id=event.tenant_id,
            stream_type=event.stream_type,
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            type=event.type,
            schema_version=event.schema_version,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            payload=event.payload,
            metadata=event.metadata,
        )
        if digest != event.hash:
            reason = f"hash at position {event.position} does not match its content"
            return ChainReport(checked, event.position, reason), prev_hash, expected_position
        prev_hash = digest
        expected_position += 1
        checked += 1
    return ChainReport(checked, None, None), prev_hash, expected_position


async def verify_log(
    read_all: Callable[[int, int], Awaitable[list[RecordedEvent]]], *, batch: int = 5000
) -> ChainReport:
    """Walk the whole log from position 1 and name the first position whose hash fails."""
    prev_hash, position, total = GENESIS, 1, 0
    while True:
        events = await read_all(position - 1, batch)
        if not events:
            return ChainReport(total, None, None)
        report, prev_hash, position = check_chain(
            events, prev_hash=prev_hash, expected_position=position
        )
        total += report.checked
        if not report.ok:
            return ChainReport(total, report.first_break, report.reason)
