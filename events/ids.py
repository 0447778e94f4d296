"""Identifiers: time-ordered UUIDs for events, prefixed random ids for domain objects (those
written most, time-ordered too: `time_ordered_token`)."""

from __future__ import annotations

import base64
import secrets
import time
import uuid


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits; sorts by time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return uuid.UUID(int=value)


def random_token(prefix: str, nbytes: int) -> str:
    """`prefix` + base64url (no padding) of `nbytes` bytes from the CSPRNG."""
    return _token(prefix, secrets.token_bytes(nbytes))


def time_ordered_token(prefix: str) -> str:
    """`prefix` + base64url (no padding) of 16 bytes: 48-bit Unix milliseconds, then 80 bits
    from the CSPRNG; the shape of `random_token(prefix, 16)`.

    Ids made within a few seconds of each other share their first characters, so an index on
    them takes new rows on a few pages at a time (as UUIDv7 event ids do) rather than on a
    random page of the whole index each: a long log's inserts stay in the buffer cache
    (docs/benchmarks.md, session 15). They show when they were made, to the millisecond."""
    millis = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    return _token(prefix, millis.to_bytes(6, "big") + secrets.token_bytes(10))


def _token(prefix: str, raw: bytes) -> str:
    return prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
