"""The hash chain: each event's hash covers its content and the hash before it, in two levels.

    content_digest = SHA-256(len(f1) || f1 || len(f2) || f2 || ... )   over the event's fields
    event_hash     = SHA-256(prev_hash || content_digest)

The field framing (4-byte big-endian lengths) makes the digest input unambiguous: no two
different events share it. The two levels make a link checkable from the digest alone, so a
proof over a range of positions needs the full content only of the events it discloses; the
others travel as their 32-byte digests (service/audit/export.py). Positions are gap-free, so a
deleted row shows as a missing position and an edited or reordered row as a hash that does
not hold; `diagnose` tells those two apart.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from events.envelope import RecordedEvent
from events.instants import utc_micros

GENESIS = bytes(32)
_sha256 = hashlib.sha256


def frame(parts: Iterable[bytes]) -> bytes:
    """The digest input: each part preceded by its length as 4 bytes, big-endian."""
    return b"".join([len(part).to_bytes(4, "big") + part for part in parts])


def framed_content(
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
    """The digest input of an event: its fields in this order, each framed by `frame`."""
    return frame((str(position).encode(),)) + framed_after_position(
        event_id=event_id,
        tenant_id=tenant_id,
        stream_type=stream_type,
        stream_id=stream_id,
        stream_version=stream_version,
        type=type,
        schema_version=schema_version,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        payload=payload,
        metadata=metadata,
    )


def framed_after_position(
    *,
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
    """The digest input less its first field: what the writer frames before the database
    hands out the position (migrations/0014_append_in_database.sql frames that one)."""
    return frame(
        (
            event_id.bytes,
            tenant_id.encode(),
            stream_type.encode(),
            stream_id.encode(),
            str(stream_version).encode(),
            type.encode(),
            str(schema_version).encode(),
            utc_micros(occurred_at),
            utc_micros(recorded_at),
            payload,
            metadata,
        )
    )


def content_digest(
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
    """SHA-256 of the event's framed fields (its position included, so a moved row fails)."""
    return _sha256(
        framed_content(
            position=position,
            event_id=event_id,
            tenant_id=tenant_id,
            stream_type=stream_type,
            stream_id=stream_id,
            stream_version=stream_version,
            type=type,
            schema_version=schema_version,
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            payload=payload,
            metadata=metadata,
        )
    ).digest()


def link(prev_hash: bytes, digest: bytes) -> bytes:
    """One link of the chain: the hash of an event whose content digest is `digest`."""
    return _sha256(prev_hash + digest).digest()


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
    framed = framed_content(
        position=position,
        event_id=event_id,
        tenant_id=tenant_id,
        stream_type=stream_type,
        stream_id=stream_id,
        stream_version=stream_version,
        type=type,
        schema_version=schema_version,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        payload=payload,
        metadata=metadata,
    )
    return link(prev_hash, _sha256(framed).digest())


def digest_of(event: RecordedEvent, *, position: int | None = None) -> bytes:
    """The content digest of a recorded event (as if stored at `position`, when given)."""
    return content_digest(
        position=event.position if position is None else position,
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
        digest = link(prev_hash, digest_of(event))
        if digest != event.hash:
            reason = f"hash at position {event.position} does not match its content"
            return ChainReport(checked, event.position, reason), prev_hash, expected_position
        prev_hash = digest
        expected_position += 1
        checked += 1
    return ChainReport(checked, None, None), prev_hash, expected_position


Framed = tuple[int, bytes, bytes]  # position, stored hash, framed content (the digest input)


def check_framed(
    rows: Sequence[Framed], prev_hash: bytes, expected_position: int
) -> tuple[int, bytes, int | None]:
    """The tight loop of a bulk walk: rows already framed (by `frame`, or by the database in
    the same layout, see service/audit/verify.sql). Returns how many held, the hash after the
    last that held, and the position of the first that did not (missing or mismatched)."""
    sha256 = _sha256
    checked = 0
    for position, stored, framed in rows:
        if position != expected_position:
            return checked, prev_hash, expected_position
        digest = sha256(prev_hash + sha256(framed).digest()).digest()
        if digest != stored:
            return checked, prev_hash, position
        prev_hash = digest
        expected_position += 1
        checked += 1
    return checked, prev_hash, None


def diagnose(broken: RecordedEvent, prev_hash: bytes, neighbours: Sequence[RecordedEvent]) -> str:
    """Why the row at `broken.position` fails, when the chain held up to `prev_hash`.

    A row moved from position q keeps the hash it was given there, which links the row before
    q (`neighbours`: rows stored near the break, in position order) to its content as of q.
    If some q fits, the row was reordered; otherwise its content (or hash) was edited.
    """
    by_position = {event.position: event for event in neighbours}
    for candidate in sorted(by_position):
        if candidate == broken.position:
            continue
        before = candidate - 1
        if before == broken.position - 1:
            prev = prev_hash
        elif before == 0:
            prev = GENESIS
        elif before in by_position:
            prev = by_position[before].hash
        else:
            continue
        if link(prev, digest_of(broken, position=candidate)) == broken.hash:
            return (
                f"position {broken.position} holds the event recorded at position {candidate}: "
                "rows were reordered"
            )
    return f"hash at position {broken.position} does not match its content: the row was edited"


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
