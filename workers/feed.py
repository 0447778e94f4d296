"""What the relay publishes to JetStream, and how a subscriber reads it back.

One message per event, on `<prefix>.<tenant>.<stream type>.<event type>`, with the event id as
`Nats-Msg-Id` (JetStream's dedupe key) and the log position and event type as headers, so a
reader can route or resume without decoding the body. The body is a JSON envelope whose
`payload` and `metadata` are the stored JSON copied byte for byte, so a subscriber holding the
previous hash can check the hash chain on what it receives.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from events.envelope import RecordedEvent

MSG_ID_HEADER = "Nats-Msg-Id"
POSITION_HEADER = "Authledger-Position"
EVENT_TYPE_HEADER = "Authledger-Event-Type"


class FeedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event as published: the log's envelope, payload and metadata as JSON objects."""

    event_id: uuid.UUID
    position: int
    tenant_id: str
    stream_type: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    metadata: msgspec.Raw
    payload: msgspec.Raw
    hash: str

    def payload_object(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.payload)
        return decoded

    def metadata_object(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.metadata)
        return decoded

    def to_recorded(self) -> RecordedEvent:
        """The event as the log holds it, e.g. to decode with a Catalogue or check its hash."""
        return RecordedEvent(
            position=self.position,
            event_id=self.event_id,
            tenant_id=self.tenant_id,
            stream_type=self.stream_type,
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
            recorded_at=self.recorded_at,
            payload=bytes(self.payload),
            metadata=bytes(self.metadata),
            hash=bytes.fromhex(self.hash),
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FeedEvent)


def encode_event(event: RecordedEvent) -> bytes:
    return _encoder.encode(
        FeedEvent(
            event_id=event.event_id,
            position=event.position,
            tenant_id=event.tenant_id,
            stream_type=event.stream_type,
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            type=event.type,
            schema_version=event.schema_version,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            metadata=msgspec.Raw(event.metadata),
            payload=msgspec.Raw(event.payload),
            hash=event.hash.hex(),
        )
    )


def decode_event(data: bytes) -> FeedEvent:
    """Read a relayed message body; raises msgspec.ValidationError on anything else."""
    return _decoder.decode(data)


def subject_for(prefix: str, event: RecordedEvent) -> str:
    return f"{prefix}.{event.tenant_id}.{event.stream_type}.{event.type}"


def headers_for(event: RecordedEvent) -> dict[str, str]:
    return {
        MSG_ID_HEADER: str(event.event_id),
        POSITION_HEADER: str(event.position),
        EVENT_TYPE_HEADER: event.type,
    }
