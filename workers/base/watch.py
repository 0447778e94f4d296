"""A worker's stats, awaitable: `changed()` after every change, `wait_for(predicate)` for tests
and tools that need a state instead of polling for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

S = TypeVar("S")


class Watched(Generic[S]):
    """Holds a stats object; `wait_for` returns it once a predicate holds on it."""

    def __init__(self, stats: S) -> None:
        self.stats = stats
        self._event = asyncio.Event()

    def changed(self) -> None:
        """Wake every waiter to test its predicate again (cheap: call it after any change)."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[S], bool]) -> S:
        """Until `predicate(stats)` holds after a change (bound it with `asyncio.timeout`)."""
        while True:
            event = self._event
            if predicate(self.stats):
                return self.stats
            await event.wait()
