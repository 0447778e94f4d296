"""The sliding-window estimate over two fixed windows, and how long a refused client waits.

Time is cut into fixed windows of `period` seconds from the epoch. At a moment a fraction `f`
into window n, the hits of the last `period` seconds are estimated as

    hits(n) + hits(n - 1) * (1 - f)

(the previous window's hits taken as spread evenly over it). A hit is admitted when the
estimate with it counted stays within the limit. This needs two counters per key, not a log
of every hit, and errs by at most the unevenness of the previous window.

All of it is integer arithmetic on microseconds (a datetime's resolution). With `remaining`
the microseconds left in the window and `P` the period in microseconds, the test is

    (hits(n) + 1) * P + hits(n - 1) * remaining <= limit * P

exactly as `rate_limit_take` (migrations/0013_rate_limits_exact.sql) evaluates it. Floats
here once made the decision and Retry-After disagree at the boundary: a client told to come
back in 40 s could be refused at 40 s, or be told 41 s when 40 s would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

US = 1_000_000  # microseconds in a second
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Window:
    """Where an instant falls for a period: the window number and the microseconds elapsed
    in it (0 <= elapsed_us < period * US)."""

    number: int
    elapsed_us: int
    period: int  # seconds

    @classmethod
    def at(cls, instant: datetime, period: int) -> Window:
        number, elapsed_us = divmod((instant - _EPOCH) // _MICROSECOND, period * US)
        return cls(number, elapsed_us, period)

    @property
    def period_us(self) -> int:
        return self.period * US

    @property
    def remaining_us(self) -> int:
        """Microseconds left in this window: the previous window's weight is this over
        `period_us`."""
        return self.period_us - self.elapsed_us

    @property
    def expires_at(self) -> datetime:
        """When no estimate reads this window's hits any more: the end of the next window."""
        return datetime.fromtimestamp((self.number + 2) * self.period, UTC)

    def later(self, seconds: int) -> Window:
        """The window `seconds` whole seconds after this instant."""
        number, elapsed_us = divmod(
            self.number * self.period_us + self.elapsed_us + seconds * US, self.period_us
        )
        return Window(number, elapsed_us, self.period)


def admits(limit: int, current: int, previous: int, window: Window) -> bool:
    """Whether one more hit fits: (current + 1) + previous * remaining / period <= limit."""
    period_us = window.period_us
    return (current + 1) * period_us + previous * window.remaining_us <= limit * period_us


def retry_after(limit: int, current: int, previous: int, window: Window) -> int:
    """Whole seconds (at least 1) until one more hit fits, if no other hit arrives meanwhile:
    the first whole second that admits, never one too early nor one too late.

    Inside this window the previous window's weight falls linearly; if this window alone is
    already full, the wait runs into the next one, where this window becomes the previous.
    """
    period_us = window.period_us
    if current + 1 <= limit:
        if previous == 0:  # it fits now: the caller raced a hit that has since expired
            return 1
        # admitted once previous * remaining <= (limit - 1 - current) * period_us
        allowed = (limit - 1 - current) * period_us // previous
        wait_us = (period_us - allowed) - window.elapsed_us
    else:
        # next window: 0 hits of its own, this window's `current` as its previous
        allowed = (limit - 1) * period_us // current
        wait_us = (period_us - window.elapsed_us) + (period_us - allowed)
    return max(1, -(-wait_us // US))
