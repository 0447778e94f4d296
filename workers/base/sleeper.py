"""One way for a worker to sleep: until an append is notified (LISTEN, through the store's
`Wakeups`), until a deadline on the injectable clock (a ManualClock wakes it when a test moves
it), or for at most `cap` real seconds, whichever comes first.

Every wait runs as a task of its own, so a stop (cancel) that lands in the same loop turn as a
wake-up still cancels the worker (`asyncio.wait_for` on Python 3.11 may swallow it). And a
stop that a library swallowed elsewhere in the worker's round (aiosmtplib waits for each SMTP
reply with `wait_for`: a cancel landing with the reply was lost, and the mailer went on
sleeping and sending, never to stop; tests/integration/test_mailer.py's idle-close test hung
on it in sessions 8 and 12) is honoured here, before the worker sleeps again: the task still
counts the cancel it was asked for (`Task.cancelling`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from events.clock import Clock, sleep_until
from events.store import Wakeups
from workers.base.watch import Watched


class Wake(Protocol):
    """A source of wake-ups, like `events.store.Wakeups`."""

    def clear(self) -> None: ...

    async def wait(self, within: float, *, settle: float = 0.0) -> bool: ...


class Listening(Wakeups):
    """The store's `Wakeups`, which can also tell that its LISTEN connection was lost (say
    Postgres restarted): notifications would no longer come, so the session starts over."""

    async def __aenter__(self) -> Listening:
        await super().__aenter__()
        return self

    @property
    def lost(self) -> bool:
        return self._conn is None or bool(self._conn.is_closed())


class Notified:
    """Wake-ups from a LISTEN callback the worker attaches itself (`notified`), for a channel
    other than the store's."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notified(self, *_: object) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, within: float, *, settle: float = 0.0) -> bool:
        try:
            async with asyncio.timeout(within):
                await self._event.wait()
        except TimeoutError:
            return False
        if settle > 0:
            await asyncio.sleep(settle)
        return True


def _nothing() -> None:
    return None


async def sleep(
    wake: Wake,
    clock: Clock,
    until: datetime | None,
    cap: float,
    *,
    settle: float = 0.0,
    asleep: Callable[[], None] = _nothing,
) -> bool:
    """Until a wake-up (then `settle` seconds more, so one look serves a burst), the clock
    reads `until`, or `cap` real seconds pass; True when woken by a notification. `asleep()`
    is called once every wait is in place (a ManualClock moved from then on wakes it). A task
    asked to stop whose cancel was swallowed on the way here stops now (CancelledError)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    woken = asyncio.ensure_future(wake.wait(cap, settle=settle))
    waits: list[asyncio.Future[Any]] = [woken]
    if until is not None:
        waits.append(asyncio.ensure_future(sleep_until(clock, until)))
    try:
        await asyncio.sleep(0)  # the waits start (a clock sleeper is registered) first
        asleep()
        await asyncio.wait(waits, timeout=cap + settle, return_when=asyncio.FIRST_COMPLETED)
        return bool(woken.result()) if woken.done() else False
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


class Dozing(Protocol):
    """Stats that say whether (and until when) their worker sleeps."""

    sleeping: bool
    asleep_until: datetime | None  # None while sleeping: until woken


D = TypeVar("D", bound=Dozing)


class Sleeper(Generic[D]):
    """`sleep` for one worker: marks its stats asleep (telling those who wait for it) once
    every wait is in place, and awake again after."""

    def __init__(self, clock: Clock, watch: Watched[D], *, settle: float = 0.0) -> None:
        self._clock, self._watch, self._settle = clock, watch, settle

    async def sleep(self, wake: Wake, until: datetime | None, cap: float) -> bool:
        """Until a wake-up, the clock reads `until`, or `cap` real seconds pass; True when
        woken by a notification."""
        stats = self._watch.stats

        def asleep() -> None:
            stats.sleeping, stats.asleep_until = True, until
            self._watch.changed()

        try:
            return await sleep(wake, self._clock, until, cap, settle=self._settle, asleep=asleep)
        finally:
            stats.sleeping, stats.asleep_until = False, None
