"""workers/base/sleeper.sleep honours a stop that was swallowed on the way to it.

Python 3.11's `asyncio.wait_for` returns the result when the awaited thing completes in the
same loop turn as a cancel, and the cancel is lost (aiosmtplib waits for every SMTP reply that
way). The task still counts the cancel it was asked for; a worker's next sleep stops it.
"""

from __future__ import annotations

import asyncio
import contextlib

from events.clock import SystemClock
from workers.base.sleeper import Notified, sleep


async def _round_that_swallows_a_cancel(started: asyncio.Event) -> None:
    """What the lost cancel looks like from inside: a CancelledError caught, not uncancelled."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):  # as a library's wait_for did
        await asyncio.Event().wait()


async def _worker(started: asyncio.Event, rounds: list[int]) -> None:
    while True:
        await _round_that_swallows_a_cancel(started)
        rounds.append(1)
        await sleep(Notified(), SystemClock(), None, cap=30.0)


async def test_a_worker_whose_stop_was_swallowed_stops_at_its_next_sleep() -> None:
    started, rounds = asyncio.Event(), list[int]()
    task = asyncio.create_task(_worker(started, rounds))
    await started.wait()
    task.cancel()
    # asyncio.wait leaves the task alone when it gives up (awaiting it would cancel it again)
    done, _ = await asyncio.wait({task}, timeout=5)
    try:
        assert done == {task}, "still running: its stop was lost"  # without the rule: asleep
        assert task.cancelled()
        assert rounds == [1]  # it finished the round it was in, and slept no more
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_worker_not_asked_to_stop_sleeps_as_before() -> None:
    wake = Notified()
    task = asyncio.create_task(sleep(wake, SystemClock(), None, cap=30.0))
    await asyncio.sleep(0.05)  # reason: the sleep must be in place before the wake-up
    wake.notified()
    async with asyncio.timeout(5):
        assert await task is True
