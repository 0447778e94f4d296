"""The hash chain: any change to any stored field of any event is found at its position."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from events.appends import record
from events.envelope import RecordedEvent, StreamRef
from events.hashchain import (
    GENESIS,
    check_chain,
    check_framed,
    diagnose,
    digest_of,
    event_hash,
    framed_content,
    link,
)
from tests.support.builders import NOW, SAMPLE, ThingOpened

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _chain(n: int) -> list[RecordedEvent]:
    events, prev = [], GENESIS
    for i in range(1, n + 1):
        fields = {
            "position": i,
            "event_id": uuid.UUID(int=i),
            "tenant_id": "acme",
            "stream_type": "thing",
            "stream_id": f"thg_{i % 3}",
            "stream_version": i,
            "type": "thing.opened",
            "schema_version": 1,
            "occurred_at": T0 + timedelta(seconds=i),
            "recorded_at": T0 + timedelta(seconds=i, microseconds=5),
            "payload": b'{"type":"thing.opened","name":"n%d"}' % i,
            "metadata": b"{}",
        }
        prev = event_hash(prev, **fields)  # type: ignore[arg-type]
        events.append(RecordedEvent(**fields, hash=prev))  # type: ignore[arg-type]
    return events


def test_an_intact_chain_verifies() -> None:
    """An untouched run of events checks in full."""
    report, _, next_position = check_chain(_chain(20))
    assert report.ok
    assert report.checked == 20
    assert next_position == 21


_FIELDS = [
    "event_id",
    "tenant_id",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "payload",
    "metadata",
    "hash",
]


_CHANGED: dict[str, object] = {
    "event_id": uuid.UUID(int=999),
    "tenant_id": "evil",
    "stream_id": "thg_x",
    "stream_version": 77,
    "type": "thing.closed",
    "schema_version": 9,
    "occurred_at": T0 - timedelta(days=1),
    "recorded_at": T0 - timedelta(days=1),
    "payload": b'{"type":"thing.opened","name":"evil"}',
    "metadata": b'{"actor":"x"}',
    "hash": bytes(32),
}
PINNED_DIGEST = "08b2acd251c1864d99f3333193821fcc536d9b11f2e92ba7aec9bda792f3da6b"
PINNED_HASH = "bc26fecc9d887dd69d1b9aaf6752a0cb92971659364daf7857faaa4678060fdd"


@given(index=st.integers(0, 9), field=st.sampled_from(_FIELDS))
def test_any_altered_field_breaks_at_its_position(index: int, field: str) -> None:
    """Changing one field of one event names that event's position as the first break."""
    events = _chain(10)
    events[index] = msgspec.structs.replace(events[index], **{field: _CHANGED[field]})
    report, _, _ = check_chain(events)
    assert report.first_break == index + 1
    assert report.checked == index


def test_a_missing_position_is_named() -> None:
    """A deleted event shows as its missing position."""
    events = _chain(6)
    del events[3]
    report, _, _ = check_chain(events)
    assert report.first_break == 4
    assert "missing" in (report.reason or "")


def test_event_hash_links_the_previous_hash_to_the_content_digest() -> None:
    """Two levels: event_hash = SHA-256(prev || content_digest), so a link is checkable from
    the 32-byte digest alone (what an export's proof carries for undisclosed events)."""
    first, second = _chain(2)
    assert second.hash == link(first.hash, digest_of(second))
    assert first.hash == link(GENESIS, digest_of(first))
    assert digest_of(second) == hashlib.sha256(_framed(second)).digest()


def test_the_format_is_the_documented_one_and_pinned() -> None:
    """The digest input is each field as a 4-byte big-endian length and its bytes, in the
    documented order (spelled out here byte by byte); any change to it changes the pinned
    digest, and would make every stored chain fail."""
    [event] = _chain(1)
    fields = [
        b"1", uuid.UUID(int=1).bytes, b"acme", b"thing", b"thg_1", b"1", b"thing.opened", b"1",
        b"2026-01-01T00:00:01.000000+00:00", b"2026-01-01T00:00:01.000005+00:00",
        b'{"type":"thing.opened","name":"n1"}', b"{}",
    ]  # fmt: skip
    spelled = b"".join(len(f).to_bytes(4, "big") + f for f in fields)
    assert digest_of(event) == hashlib.sha256(spelled).digest()
    assert event.hash == hashlib.sha256(GENESIS + hashlib.sha256(spelled).digest()).digest()
    assert (digest_of(event).hex(), event.hash.hex()) == (PINNED_DIGEST, PINNED_HASH)


@given(index=st.integers(0, 11), field=st.sampled_from(_FIELDS[:-1]))
def test_the_bulk_loop_agrees_with_the_event_check(index: int, field: str) -> None:
    """check_framed (the verifier's tight loop over pre-framed rows) holds and breaks exactly
    where check_chain does."""
    events = _chain(12)
    events[index] = msgspec.structs.replace(events[index], **{field: _CHANGED[field]})
    rows = [(e.position, e.hash, _framed(e)) for e in events]
    checked, _, broken = check_framed(rows, GENESIS, 1)
    report, _, _ = check_chain(events)
    assert (checked, broken) == (report.checked, report.first_break) == (index, index + 1)


def test_diagnose_tells_a_moved_row_from_an_edited_one() -> None:
    """A row moved to another position still links at its old place; an edited one nowhere."""
    events = _chain(8)
    moved = msgspec.structs.replace(events[5], position=3)  # the row of 6, now stored at 3
    assert "recorded at position 6" in diagnose(moved, events[1].hash, events)
    assert "reordered" in diagnose(moved, events[1].hash, events)
    edited = msgspec.structs.replace(events[2], payload=b'{"type":"thing.opened","name":"x"}')
    assert "edited" in diagnose(edited, events[1].hash, events)


def _framed(event: RecordedEvent) -> bytes:
    return framed_content(
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


@given(
    position=st.integers(1, 10**12),
    version=st.integers(1, 10**6),
    name=st.text(max_size=40),
    prev=st.binary(min_size=32, max_size=32),
)
def test_the_writer_frames_as_the_chain_hashes(
    position: int, version: int, name: str, prev: bytes
) -> None:
    """The writer's record (framing less the position, completed as `events_append` does in
    the database) hashes to exactly what events.hashchain computes from every field."""
    stream = StreamRef("acme", "thing", "thg_1")
    new = SAMPLE.new(ThingOpened(name=name), occurred_at=NOW)
    at = datetime(2026, 12, 6, 3, 0, 0, 123456, tzinfo=UTC)
    rec = record(prev, position, stream, version, new, recorded_at=at)
    expected = event_hash(
        prev,
        position=position,
        event_id=new.event_id,
        tenant_id="acme",
        stream_type="thing",
        stream_id="thg_1",
        stream_version=version,
        type=new.type,
        schema_version=new.schema_version,
        occurred_at=NOW,
        recorded_at=at,
        payload=new.payload,
        metadata=rec.metadata,
    )
    assert (rec.position, rec.hash) == (position, expected)
