"""The envelope: what the log records about an event besides its payload.

Payloads hold domain facts only. Ids, versions, positions, timestamps and correlation live
here and are stored as columns of the `events` table.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import msgspec

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def check_name(kind: str, value: str) -> str:
    """Tenant ids and stream types become NATS subject tokens: lower-case, no dots."""
    if not _NAME.match(value):
        raise ValueError(f"{kind} must match {_NAME.pattern}: {value!r}")
    return value


def check_stream_id(value: str) -> str:
    if not _STREAM_ID.match(value):
        raise ValueError(f"stream id must match {_STREAM_ID.pattern}: {value!r}")
    return value


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Why and by whom an event was recorded.

    `client_ip` holds the sealed (encrypted) form only: personal data never enters the log
    in plain text. `door` (`v1`, `v06`) and `dialect` (`0.1.0`, `0.6.0`, `0.6.0+authkit`) say
    which HTTP surface a request came through and which dialect version it spoke; operator,
    CLI, worker and erasure events, and every event recorded before the v0.6 door existed,
    have neither (omitted, so those rows keep their bytes).
    """

    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None
    client_ip: str | None = None
    door: str | None = None
    dialect: str | None = None


class StreamRef(msgspec.Struct, frozen=True):
    """One aggregate's stream: its tenant, its type (a NATS subject token) and its id."""

    tenant_id: str
    stream_type: str
    stream_id: str

    def __post_init__(self) -> None:
        check_name("tenant id", self.tenant_id)
        check_name("stream type", self.stream_type)
        check_stream_id(self.stream_id)


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event ready to append: its payload already encoded as JSON."""

    event_id: uuid.UUID
    type: str
    schema_version: int
    occurred_at: datetime
    payload: bytes
    metadata: Metadata = Metadata()


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log holds it."""

    position: int
    event_id: uuid.UUID
    tenant_id: str
    stream_type: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    payload: bytes
    metadata: bytes
    hash: bytes

    @property
    def stream(self) -> StreamRef:
        return StreamRef(self.tenant_id, self.stream_type, self.stream_id)

    def decoded_metadata(self) -> Metadata:
        return msgspec.json.decode(self.metadata, type=Metadata)
