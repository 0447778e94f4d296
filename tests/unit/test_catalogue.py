"""The catalogue mechanism: tags, versions, upcasting, round trips."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.catalogue import Catalogue, Event
from events.envelope import RecordedEvent
from events.errors import UnknownEventType
from events.upcasters import Upcasters
from tests.support.builders import NOW, SAMPLE, ThingOpened, ThingRenamed


def _recorded(type_: str, version: int, payload: bytes) -> RecordedEvent:
    return RecordedEvent(
        position=1,
        event_id=uuid.uuid4(),
        tenant_id="acme",
        stream_type="thing",
        stream_id="thg_1",
        stream_version=1,
        type=type_,
        schema_version=version,
        occurred_at=NOW,
        recorded_at=NOW,
        payload=payload,
        metadata=b"{}",
        hash=bytes(32),
    )


@given(name=st.text(max_size=50), reason=st.text(max_size=50))
def test_new_then_decode_round_trips(name: str, reason: str) -> None:
    """Any event encoded by the catalogue decodes back to an equal value."""
    event = ThingRenamed(name=name, reason=reason)
    new = SAMPLE.new(event, occurred_at=NOW)
    assert new.type == "thing.renamed"
    assert new.schema_version == 2
    assert SAMPLE.decode(_recorded(new.type, new.schema_version, new.payload)) == event


def test_old_version_is_upcast_on_read() -> None:
    """A v1 row (no reason) reads as the current v2 type with the upcaster's default."""
    v1 = b'{"type":"thing.renamed","name":"old"}'
    assert SAMPLE.decode(_recorded("thing.renamed", 1, v1)) == ThingRenamed(
        name="old", reason="unspecified"
    )


def test_missing_upcaster_is_an_error_not_a_guess() -> None:
    """A version with no upcaster path fails loudly."""
    bare = Catalogue(ThingRenamed)
    with pytest.raises(LookupError):
        bare.decode(_recorded("thing.renamed", 1, b'{"type":"thing.renamed","name":"x"}'))


def test_unknown_type_is_refused_both_ways() -> None:
    """Encoding or decoding a type outside the catalogue raises UnknownEventType."""
    only_opened = Catalogue(ThingOpened)
    with pytest.raises(UnknownEventType):
        only_opened.new(ThingRenamed(name="a", reason="b"), occurred_at=NOW)
    with pytest.raises(UnknownEventType):
        only_opened.decode(_recorded("thing.renamed", 2, b"{}"))


def test_events_need_an_explicit_dotted_tag() -> None:
    """A class without an explicit dotted tag cannot join a catalogue."""

    class Untagged(Event, frozen=True, kw_only=True):
        x: int

    with pytest.raises(TypeError):
        Catalogue(Untagged)


def test_two_types_with_one_tag_are_refused() -> None:
    """Tags are unique within a catalogue."""

    class Twin(Event, frozen=True, kw_only=True, tag="thing.opened"):
        name: str

    with pytest.raises(ValueError, match="two event types"):
        Catalogue(ThingOpened, Twin)


def test_events_are_frozen() -> None:
    """Events cannot be changed after creation."""
    event = ThingOpened(name="a")
    with pytest.raises(AttributeError):
        event.name = "b"  # type: ignore[misc]


def test_upcasters_chain_one_version_at_a_time() -> None:
    """v1 -> v3 applies both steps in order."""
    ups = Upcasters()
    ups.register("x.y", 1)(lambda p: {**p, "b": p["a"] * 2})
    ups.register("x.y", 2)(lambda p: {**p, "c": p["b"] + 1})
    assert ups.upcast("x.y", 1, 3, {"a": 2}) == {"a": 2, "b": 4, "c": 5}
    with pytest.raises(ValueError, match="two upcasters"):
        ups.register("x.y", 1)(lambda p: p)


def test_payload_holds_domain_facts_only() -> None:
    """The encoded payload carries the tag and fields, no envelope data."""
    payload = msgspec.json.decode(SAMPLE.new(ThingOpened(name="a"), occurred_at=NOW).payload)
    assert payload == {"type": "thing.opened", "name": "a"}
