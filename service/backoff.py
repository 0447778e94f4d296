"""Capped exponential back-off with jitter: the one every retry loop of ours uses (workers,
the credential cache), so that processes retrying the same outage spread out instead of
knocking together.

The n-th delay (from 0) is drawn from [c/2, c] with c = min(initial * 2**n, cap) ("equal
jitter": never less than half the nominal delay, never more than the cap).
"""

from __future__ import annotations

import random
from collections.abc import Callable

_random = random.SystemRandom()


def jittered(initial: float, cap: float, attempt: int, draw: Callable[[], float]) -> float:
    """The delay before retry number `attempt` (0: the first), `draw()` in [0, 1)."""
    ceiling = min(cap, initial * 2.0 ** min(attempt, 64))
    return ceiling / 2 + float(draw()) * ceiling / 2


class Backoff:
    """Delays that grow from `initial` to `cap` with each failure; `reset()` after progress."""

    def __init__(
        self, initial: float, cap: float, *, draw: Callable[[], float] = _random.random
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError("needs 0 < initial <= cap")
        self.initial, self.cap = initial, cap
        self._draw = draw
        self.failures = 0  # since the last reset

    def next(self) -> float:
        """The delay before the next try, and one more failure counted."""
        delay = jittered(self.initial, self.cap, self.failures, self._draw)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
