"""Errors the event store raises; typed so callers can map them without reading messages."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class for event store failures."""


class ConcurrencyConflict(EventStoreError):
    """The stream's version was not the expected one: nothing was written."""

    def __init__(self, tenant_id: str, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {tenant_id}/{stream_id}: expected version {expected}, found {actual}"
        )
        self.tenant_id = tenant_id
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class PartialDuplicate(EventStoreError):
    """Some, but not all, of the event ids of an append were already stored."""


class UnknownEventType(EventStoreError):
    """A stored event's type is not in the catalogue used to decode it."""
