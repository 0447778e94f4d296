"""The two-fixed-windows estimate and Retry-After (service.ratelimit.window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, example, given
from hypothesis import strategies as st

from service.ratelimit.window import US, Window, admits, retry_after

HOUR = 3_600
STATES = {  # a limiter's state for one bucket: its limit, period and two windows' hits
    "limit": st.integers(1, 50),
    "period": st.sampled_from([1, 60, 900, HOUR, 86_400]),
    "current": st.integers(0, 60),
    "previous": st.integers(0, 60),
    "elapsed_us": st.integers(0, 86_400 * US - 1),
}


def test_a_window_is_a_fixed_slice_of_epoch_time() -> None:
    """Number, elapsed microseconds, what is left of it and the row's expiry."""
    instant = datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    window = Window.at(instant, HOUR)
    assert window.number == int(instant.timestamp()) // HOUR
    assert window.elapsed_us == 15 * 60 * US
    assert window.remaining_us == 45 * 60 * US
    assert window.expires_at == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    assert Window.at(instant + timedelta(minutes=45), HOUR).number == window.number + 1


def test_a_window_keeps_every_microsecond() -> None:
    """A float timestamp of 2026 has about a quarter of a microsecond of resolution, so
    the last microsecond of a window could round into the next one; integers cannot."""
    end = datetime(2026, 11, 28, 10, 0, tzinfo=UTC) - timedelta(microseconds=1)
    window = Window.at(end, HOUR)
    assert window.remaining_us == 1
    assert Window.at(end + timedelta(microseconds=1), HOUR) == Window(window.number + 1, 0, HOUR)


def test_the_previous_window_counts_less_as_this_one_goes_on() -> None:
    """5/h with 5 hits last hour: refused at first, admitted once a fifth of them has
    slid out (the estimate 1 + 5 * weight must reach 5), at minute 12 and not a
    microsecond before."""
    minute_12 = 12 * 60 * US
    assert not admits(5, 0, 5, Window(0, 0, HOUR))
    assert not admits(5, 0, 5, Window(0, minute_12 - 1, HOUR))
    assert admits(5, 0, 5, Window(0, minute_12, HOUR))
    assert not admits(5, 5, 0, Window(0, HOUR * US - 1, HOUR))
    assert admits(5, 4, 0, Window(0, 0, HOUR))


def test_the_boundary_that_floats_got_wrong() -> None:
    """44/h, 40 hits now and 9 last hour: admitted once 9 * remaining <= 3 * period, two
    thirds into the hour (minute 40 exactly). From 38:07 that is 113 s; in floats
    (1 - 3/9) * 3600 came to 2400.0000000000005 and the wait to 114 s."""
    window = Window(0, (38 * 60 + 7) * US, HOUR)
    assert retry_after(44, 40, 9, window) == 113
    assert admits(44, 40, 9, window.later(113))
    assert not admits(44, 40, 9, window.later(112))


def test_retry_after_when_this_window_is_full_runs_into_the_next() -> None:
    """5 hits at the start of this hour: not before the next hour, and then only once a
    fifth of those 5 weigh nothing (12 more minutes): 45 + 12 minutes from 9:15."""
    assert retry_after(5, 5, 0, Window(0, 15 * 60 * US, HOUR)) == (45 + 12) * 60


def test_retry_after_when_the_previous_window_weighs_too_much() -> None:
    """2 hits now and 10 last hour, 5/h: the weight must fall to 2/10 (minute 48)."""
    assert retry_after(5, 2, 10, Window(0, 30 * 60 * US, HOUR)) == 18 * 60


def test_retry_after_is_at_least_one_second() -> None:
    assert retry_after(5, 4, 0, Window(0, 10 * US, HOUR)) == 1


def test_retry_after_rounds_a_part_second_up() -> None:
    """5/h, 5 hits last hour, 0.5 s short of minute 12: the wait is 1 s, not 0."""
    assert retry_after(5, 0, 5, Window(0, 12 * 60 * US - US // 2, HOUR)) == 1
    assert retry_after(5, 0, 5, Window(0, 12 * 60 * US - 3 * US // 2, HOUR)) == 2


def _admitted_after(limit: int, current: int, previous: int, window: Window, wait: int) -> bool:
    """Whether one more hit fits `wait` seconds later, with no other hit meanwhile."""
    later = window.later(wait)
    counts = {window.number: (current, previous), window.number + 1: (0, current)}
    now_current, now_previous = counts.get(later.number, (0, 0))
    return admits(limit, now_current, now_previous, later)


def test_the_two_cases_the_float_version_got_wrong() -> None:
    """Found by the property below when it failed at random: 4/min with 9 hits last minute
    is admitted at 40 s (floats said 41), and 2 per 15 min with 9 last window at 800 s (floats
    said 800 but then refused there)."""
    four = Window(0, 0, 60)
    assert retry_after(4, 0, 9, four) == 40
    assert admits(4, 0, 9, four.later(40))
    assert not admits(4, 0, 9, four.later(39))
    two = Window(0, 0, 900)
    assert retry_after(2, 0, 9, two) == 800
    assert admits(2, 0, 9, two.later(800))
    assert not admits(2, 0, 9, two.later(799))


@given(**STATES)
@example(limit=4, period=60, current=0, previous=9, elapsed_us=0)
@example(limit=2, period=900, current=0, previous=9, elapsed_us=0)
def test_retry_after_is_the_first_whole_second_that_admits(
    limit: int, period: int, current: int, previous: int, elapsed_us: int
) -> None:
    """For any refused state: admitted after Retry-After seconds, and (when it is over one
    second) still refused a second earlier — the header neither lies nor overstates."""
    window = Window(1_000, elapsed_us % (period * US), period)
    assume(not admits(limit, current, previous, window))
    wait = retry_after(limit, current, previous, window)
    assert wait >= 1
    assert _admitted_after(limit, current, previous, window, wait)
    if wait > 1:
        assert not _admitted_after(limit, current, previous, window, wait - 1)


@given(**STATES)
def test_admission_only_grows_as_time_passes(
    limit: int, period: int, current: int, previous: int, elapsed_us: int
) -> None:
    """With no new hits, a state admitted now is admitted one microsecond later too (the
    estimate never rises, across the window's end included)."""
    window = Window(1_000, elapsed_us % (period * US), period)
    assume(admits(limit, current, previous, window))
    number, elapsed = divmod(window.elapsed_us + 1, window.period_us)
    if number == 0:
        assert admits(limit, current, previous, Window(window.number, elapsed, period))
    else:
        assert admits(limit, 0, current, Window(window.number + 1, elapsed, period))
