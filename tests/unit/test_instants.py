"""events.instants: msgspec's RFC 3339, cut to the forms `isoformat` gives, byte for byte.

The hash chain frames every event's two instants with `utc_micros`: one byte off and no stored
event's hash would verify again, so the property runs over any instant in any offset, whole
seconds and single microseconds included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from events.instants import utc_micros, utc_millis

# naive, as st.datetimes wants them; a day in from either end: any offset stays in range in UTC
FIRST = datetime(1, 1, 2, tzinfo=UTC).replace(tzinfo=None)
LAST = datetime(9999, 12, 30, tzinfo=UTC).replace(tzinfo=None)


def test_the_two_forms() -> None:
    whole = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    assert utc_micros(whole) == b"2026-07-01T09:30:00.000000+00:00"
    assert utc_millis(whole) == "2026-07-01T09:30:00.000Z"
    late = datetime(2026, 12, 6, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-2)))
    assert utc_micros(late) == b"2026-12-07T01:59:59.999999+00:00"
    assert utc_millis(late) == "2026-12-07T01:59:59.999Z"  # cut, not rounded
    assert (
        utc_micros(datetime(7, 3, 4, 5, 6, 7, 8, tzinfo=UTC)) == b"0007-03-04T05:06:07.000008+00:00"
    )


@given(
    st.datetimes(min_value=FIRST, max_value=LAST),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
@example(FIRST.replace(year=2026), 0)  # no fraction: msgspec leaves it out
@example(FIRST.replace(year=2026, microsecond=1), 0)
@example(FIRST.replace(year=2026, microsecond=1000), 90)
def test_the_same_as_isoformat(naive: datetime, offset_minutes: int) -> None:
    instant = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    utc = instant.astimezone(UTC)
    assert utc_micros(instant) == utc.isoformat(timespec="microseconds").encode()
    assert utc_millis(instant) == utc.isoformat(timespec="milliseconds")[:-6] + "Z"
