"""Instants written as text, in UTC: the hash chain's form and the protocol's.

`datetime.isoformat` takes about 1.6 µs an instant here; an anonymous registration writes
five (four framed into the chain, one in its answer). msgspec's encoder writes RFC 3339 in C in a
twentieth of that: the same digits, a `Z` for UTC and no fraction when it is zero. Both forms
below are cut from its output, byte for byte what `isoformat` gives
(tests/unit/test_instants.py holds them equal for any instant in any offset).
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

_encode = msgspec.json.Encoder().encode
_WHOLE_SECOND = len(b'"2026-07-01T09:30:00Z"')  # what msgspec writes when the fraction is 0


def utc_micros(instant: datetime) -> bytes:
    """`2026-07-01T09:30:00.000000+00:00`: `instant.astimezone(UTC).isoformat(
    timespec="microseconds")`, encoded (the hash chain's framing, events.hashchain)."""
    text = _encode(instant.astimezone(UTC))
    if len(text) == _WHOLE_SECOND:
        return text[1:20] + b".000000+00:00"
    return text[1:27] + b"+00:00"


def utc_millis(instant: datetime) -> str:
    """`2026-07-01T09:30:00.000Z`: ISO 8601 in UTC with milliseconds, cut, not rounded (the
    protocol's timestamps, spec §1)."""
    text = _encode(instant.astimezone(UTC))
    if len(text) == _WHOLE_SECOND:
        return text[1:20].decode() + ".000Z"
    return text[1:24].decode() + "Z"
