"""`timestamp` (service/http/bodies.py): ISO 8601 UTC with milliseconds and a Z (spec §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from service.http.bodies import timestamp

FIRST = datetime(1000, 1, 2, tzinfo=UTC).replace(tzinfo=None)  # 4-digit years, either way
LAST = datetime(9999, 12, 30, tzinfo=UTC).replace(tzinfo=None)


def test_the_spec_form() -> None:
    assert timestamp(datetime(2026, 7, 1, 9, 30, tzinfo=UTC)) == "2026-07-01T09:30:00.000Z"
    at = datetime(2026, 12, 6, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-2)))
    assert timestamp(at) == "2026-12-07T01:59:59.999Z"  # milliseconds truncated, in UTC


@given(
    st.datetimes(min_value=FIRST, max_value=LAST),  # naive: st.datetimes wants them so
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_the_same_as_the_field_by_field_form(naive: datetime, offset_minutes: int) -> None:
    """Any instant, in any offset: the fields of its UTC time, milliseconds cut, not rounded."""
    instant = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    utc = instant.astimezone(UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    assert timestamp(instant) == expected
