"""Time, injected: production reads the system clock, tests move a manual one.

Workers that wait for a deadline sleep on the clock (`sleep_until`): the system clock sleeps
for real, a manual clock wakes its sleepers when a test moves it to or past their instant.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


class Clock(Protocol):
    def now(self) -> datetime: ...


@runtime_checkable
class SleepingClock(Protocol):
    """A clock that can also wait until it reads a given instant."""

    def now(self) -> datetime: ...

    async def sleep_until(self, instant: datetime) -> None: ...


async def sleep_until(clock: Clock, instant: datetime) -> None:
    """Return once `clock` reads `instant` or later (at once if it already does). A clock
    without `sleep_until` of its own is assumed to move with real time."""
    if isinstance(clock, SleepingClock):
        await clock.sleep_until(instant)
        return
    await asyncio.sleep(max(0.0, (instant - clock.now()).total_seconds()))


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime) -> None:
        await asyncio.sleep(max(0.0, (instant - self.now()).total_seconds()))


class ManualClock:
    """A clock that only moves when told to; starts at a fixed, timezone-aware instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        self._wake_sleepers()

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware instants")
        self._now = instant
        self._wake_sleepers()

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting for this clock to move."""
        return sum(1 for _, future in self._sleepers if not future.done())

    async def sleep_until(self, instant: datetime) -> None:
        """Return once the clock is moved to `instant` or past it; never on its own."""
        if instant.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware instants")
        if self._now >= instant:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((instant, future))
        try:
            await future
        finally:
            self._sleepers = [(i, f) for i, f in self._sleepers if f is not future]

    def _wake_sleepers(self) -> None:
        for instant, future in self._sleepers:
            if instant <= self._now and not future.done():
                future.set_result(None)
