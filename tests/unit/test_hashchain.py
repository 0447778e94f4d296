"""The hash chain: any change to any stored field of any event is found at its position."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from events.envelope import RecordedEvent
from events.hashchain import GENESIS, check_chain, event_hash

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


@given(index=st.integers(0, 9), field=st.sampled_from(_FIELDS))
def test_any_altered_field_breaks_at_its_position(index: int, field: str) -> None:
    """Changing one field of one event names that event's position as the first break."""
    events = _chain(10)
    target = events[index]
    changed = {
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
    }[field]
    events[index] = msgspec.structs.replace(target, **{field: changed})
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
