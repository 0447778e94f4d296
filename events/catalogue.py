"""The catalogue mechanism: events are frozen msgspec structs in tagged unions.

Each event class carries an explicit dotted tag (`registration.created`), so renaming a class
never changes stored data, and a `schema_version`. A `Catalogue` encodes events for the store
and decodes recorded ones, upcasting old versions on the way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import msgspec

from events.envelope import Metadata, NewEvent, RecordedEvent
from events.errors import UnknownEventType
from events.ids import new_event_id
from events.upcasters import Upcasters


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: payload fields only; the envelope holds the rest."""

    schema_version: ClassVar[int] = 1


E = TypeVar("E", bound=Event)


def event_tag(cls: type[Event]) -> str:
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str) or "." not in tag:
        raise TypeError(f"{cls.__name__} needs an explicit dotted tag, e.g. tag='thing.happened'")
    return tag


class Catalogue:
    """The set of event types one part of the system reads and writes."""

    def __init__(self, *types: type[Event], upcasters: Upcasters | None = None) -> None:
        self._by_tag: dict[str, type[Event]] = {}
        for cls in types:
            tag = event_tag(cls)
            if tag in self._by_tag:
                raise ValueError(f"two event types tagged {tag!r}")
            self._by_tag[tag] = cls
        self._upcasters = upcasters or Upcasters()
        self._decoders = {tag: msgspec.json.Decoder(cls) for tag, cls in self._by_tag.items()}
        self._encoder = msgspec.json.Encoder()

    @property
    def types(self) -> dict[str, type[Event]]:
        return dict(self._by_tag)

    def new(
        self,
        event: Event,
        *,
        occurred_at: datetime,
        metadata: Metadata | None = None,
        event_id: uuid.UUID | None = None,
    ) -> NewEvent:
        tag = event_tag(type(event))
        if self._by_tag.get(tag) is not type(event):
            raise UnknownEventType(f"{type(event).__name__} is not in this catalogue")
        return NewEvent(
            event_id=event_id or new_event_id(),
            type=tag,
            schema_version=type(event).schema_version,
            occurred_at=occurred_at,
            payload=self._encoder.encode(event),
            metadata=metadata or Metadata(),
        )

    def decode(self, recorded: RecordedEvent) -> Event:
        cls = self._by_tag.get(recorded.type)
        if cls is None:
            raise UnknownEventType(f"{recorded.type!r} at position {recorded.position}")
        if recorded.schema_version == cls.schema_version:
            return self._decoders[recorded.type].decode(recorded.payload)
        raw: dict[str, Any] = msgspec.json.decode(recorded.payload)
        lifted = self._upcasters.upcast(
            recorded.type, recorded.schema_version, cls.schema_version, raw
        )
        return msgspec.convert(lifted, cls)

    def decode_as(self, recorded: RecordedEvent, kinds: tuple[type[E], ...]) -> E:
        """`decode`, typed as one of `kinds` (an aggregate's `*_EVENTS`, whose declared type
        names its union): a recorded event of another type raises UnknownEventType."""
        event = self.decode(recorded)
        if not isinstance(event, kinds):
            raise UnknownEventType(
                f"{recorded.type!r} at position {recorded.position} is not one of "
                f"{', '.join(event_tag(kind) for kind in kinds)}"
            )
        return event
