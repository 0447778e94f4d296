"""The two-fixed-windows estimate and Retry-After (service.ratelimit.window)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from service.ratelimit.window import Window, admits, retry_after

HOUR = 3_600


def test_a_window_is_a_fixed_slice_of_epoch_time() -> None:
    """Number, elapsed seconds, the previous window's weight and the row's expiry."""
    instant = datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    window = Window.at(instant, HOUR)
    assert window.number == math.floor(instant.timestamp() / HOUR)
    assert window.elapsed == 15 * 60
    assert window.previous_weight == 0.75
    assert window.expires_at == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    assert Window.at(instant + timedelta(minutes=45), HOUR).number == window.number + 1


def test_the_previous_window_counts_less_as_this_one_goes_on() -> None:
    """5/h with 5 hits last hour: refused at first, admitted once a fifth of them has
    slid out (the estimate 1 + 5 * weight must reach 5)."""
    assert not admits(5, 0, 5, weight=1.0)
    assert not admits(5, 0, 5, weight=0.81)
    assert admits(5, 0, 5, weight=0.8)
    assert not admits(5, 5, 0, weight=0.0)
    assert admits(5, 4, 0, weight=0.0)


def test_retry_after_when_this_window_is_full_runs_into_the_next() -> None:
    """5 hits at the start of this hour: not before the next hour, and then only once a
    fifth of those 5 weigh nothing (12 more minutes): 45 + 12 minutes from 9:15."""
    assert retry_after(5, 5, 0, Window(0, 15 * 60, HOUR)) == (45 + 12) * 60


def test_retry_after_when_the_previous_window_weighs_too_much() -> None:
    """2 hits now and 10 last hour, 5/h: the weight must fall to 2/10 (minute 48)."""
    assert retry_after(5, 2, 10, Window(0, 30 * 60, HOUR)) == 18 * 60


def test_retry_after_is_at_least_one_second() -> None:
    assert retry_after(5, 4, 0, Window(0, 10, HOUR)) == 1


def _admitted_after(limit: int, current: int, previous: int, window: Window, wait: int) -> bool:
    """Whether one more hit fits `wait` seconds later, with no other hit meanwhile."""
    total = window.number * window.period + window.elapsed + wait
    number = math.floor(total / window.period)
    later = Window(number, total - number * window.period, window.period)
    counts = {window.number: (current, previous), window.number + 1: (0, current)}
    now_current, now_previous = counts.get(number, (0, 0))
    return admits(limit, now_current, now_previous, later.previous_weight)


@given(
    limit=st.integers(1, 50),
    period=st.sampled_from([1, 60, 900, HOUR, 86_400]),
    current=st.integers(0, 60),
    previous=st.integers(0, 60),
    elapsed_ms=st.integers(0, 86_400_000 - 1),
)
def test_retry_after_is_the_first_whole_second_that_admits(
    limit: int, period: int, current: int, previous: int, elapsed_ms: int
) -> None:
    """For any refused state: admitted after Retry-After seconds, and (when it is over one
    second) still refused a second earlier — the header neither lies nor overstates."""
    window = Window(1_000, (elapsed_ms / 1000) % period, period)
    assume(not admits(limit, current, previous, window.previous_weight))
    wait = retry_after(limit, current, previous, window)
    assert wait >= 1
    assert _admitted_after(limit, current, previous, window, wait)
    if wait > 1:
        assert not _admitted_after(limit, current, previous, window, wait - 1)
