"""The sliding-window estimate over two fixed windows, and how long a refused client waits.

Time is cut into fixed windows of `period` seconds from the epoch. At a moment a fraction `f`
into window n, the hits of the last `period` seconds are estimated as

    hits(n) + hits(n - 1) * (1 - f)

(the previous window's hits taken as spread evenly over it). A hit is admitted when the
estimate with it counted stays within the limit. This needs two counters per key, not a log
of every hit, and errs by at most the unevenness of the previous window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Window:
    """Where `at` falls for a period: the window number, the seconds elapsed in it, and the
    weight of the previous window's hits."""

    number: int
    elapsed: float
    period: int

    @classmethod
    def at(cls, instant: datetime, period: int) -> Window:
        epoch = instant.timestamp()
        number = math.floor(epoch / period)
        return cls(number, epoch - number * period, period)

    @property
    def previous_weight(self) -> float:
        return 1.0 - self.elapsed / self.period

    @property
    def expires_at(self) -> datetime:
        """When no estimate reads this window's hits any more: the end of the next window."""
        return datetime.fromtimestamp((self.number + 2) * self.period, UTC)


def admits(limit: int, current: int, previous: int, weight: float) -> bool:
    """Whether one more hit fits: (current + 1) + previous * weight <= limit."""
    return current + 1 + previous * weight <= limit


def retry_after(limit: int, current: int, previous: int, window: Window) -> int:
    """Whole seconds (at least 1) until one more hit fits, if no other hit arrives meanwhile.

    Inside this window the previous window's weight falls linearly; if this window alone is
    already full, the wait runs into the next one, where this window becomes the previous.
    """
    period = window.period
    if current + 1 <= limit:
        if previous == 0:  # it fits now: the caller raced a hit that has since expired
            return 1
        fraction = 1 - (limit - 1 - current) / previous  # where the weight has fallen enough
        wait = fraction * period - window.elapsed
    else:
        fraction = max(0.0, 1 - (limit - 1) / current)
        wait = (period - window.elapsed) + fraction * period
    return max(1, math.ceil(wait))
