"""What the relay publishes to JetStream, and how a subscriber reads it back.

One message per event, on `<prefix>.<tenant>.<stream type>.<event type>`, with the event id as
`Nats-Msg-Id` (JetStream's dedupe key) and the log position and event type as headers, so a
reader can route or resume without decoding the body. The body is a JSON envelope whose
`payload` and `metadata` are the stored JSON copied byte for byte, so a subscriber holding the
previous hash can check the hash chain on what it receives.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.envelope import RecordedEvent

MSG_ID_HEADER = "Nats-Msg-Id"
POSITION_HEADER = "Authledger-Position"
EVENT_TYPE_HEADER = "Authledger-Event-Type"


# The body: the envelope's fields as the log has them, but `payload` and `metadata` as the
# stored JSON itself and `hash` in hex.
_AS_JSON: dict[str, Any] = {"payload": msgspec.Raw, "metadata": msgspec.Raw, "hash": str}
_Body = msgspec.defstruct(
    "FeedEvent",
    [(f.name, _AS_JSON.get(f.name, f.type)) for f in msgspec.structs.fields(RecordedEvent)],
    frozen=True,
    kw_only=True,
)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Body)


def encode_event(event: RecordedEvent) -> bytes:
    body = msgspec.structs.asdict(event)
    body.update(
        payload=msgspec.Raw(event.payload),
        metadata=msgspec.Raw(event.metadata),
        hash=event.hash.hex(),
    )
    return _encoder.encode(_Body(**body))


def decode_event(data: bytes) -> RecordedEvent:
    """The event a relayed message body carries, as the log holds it (e.g. to decode with a
    Catalogue or check its hash); raises msgspec.ValidationError on anything else."""
    fields = msgspec.structs.asdict(_decoder.decode(data))
    fields.update(
        payload=bytes(fields["payload"]),
        metadata=bytes(fields["metadata"]),
        hash=bytes.fromhex(fields["hash"]),
    )
    return RecordedEvent(**fields)


def subject_for(prefix: str, event: RecordedEvent) -> str:
    return f"{prefix}.{event.tenant_id}.{event.stream_type}.{event.type}"


def headers_for(event: RecordedEvent) -> dict[str, str]:
    return {
        MSG_ID_HEADER: str(event.event_id),
        POSITION_HEADER: str(event.position),
        EVENT_TYPE_HEADER: event.type,
    }
