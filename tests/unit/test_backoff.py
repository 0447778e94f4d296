"""service/backoff.py: capped exponential delays with equal jitter."""

from __future__ import annotations

import pytest

from service.backoff import Backoff, jittered


def test_delays_double_up_to_the_cap_within_their_jitter() -> None:
    low, high = Backoff(0.1, 1.0, draw=lambda: 0.0), Backoff(0.1, 1.0, draw=lambda: 0.999999)
    lows = [low.next() for _ in range(7)]
    highs = [high.next() for _ in range(7)]
    assert lows == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert highs == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], rel=1e-5)


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.1, 5.0, draw=lambda: 0.5)
    first = backoff.next()
    backoff.next()
    backoff.reset()
    assert (backoff.failures, backoff.next()) == (0, first)


def test_the_jitter_spreads_retries_and_stays_in_bounds() -> None:
    delays = [Backoff(2.0, 8.0).next() for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 100  # drawn, not fixed


def test_large_attempts_stay_at_the_cap() -> None:
    assert jittered(0.1, 30.0, 10_000, lambda: 0.0) == 15.0


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError, match="initial"):
        Backoff(2.0, 1.0)
