"""Waiting in tests for a condition, never for a length of time.

`wait_until(probe, within=..., what=...)` calls `probe` (plain or async) every `every` seconds
until it returns something other than None or False, and returns that. If `within` seconds pass
first, it fails with an AssertionError that names `what` and the last value seen. A probe that
knows the wait is hopeless (the process it waits for has exited) raises itself.

`answering(http, path)` is the probe for "the server is up": True once `path` answers 200.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import httpx

T = TypeVar("T")

POLL = 0.02  # seconds between looks: short next to any wait worth writing


@overload
async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    what: str = ...,
    every: float = ...,
) -> T: ...


@overload
async def wait_until(
    probe: Callable[[], T | None], *, within: float = ..., what: str = ..., every: float = ...
) -> T: ...


async def wait_until(
    probe: Callable[[], Any],
    *,
    within: float = 10.0,
    what: str = "the condition",
    every: float = POLL,
) -> Any:
    """`probe`'s first value other than None or False; AssertionError after `within` s."""
    deadline = time.monotonic() + within
    while True:
        found = probe()
        if inspect.isawaitable(found):
            found = await found
        if found is not None and found is not False:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {within} s for {what}; the last look saw {found!r}")
        await asyncio.sleep(every)


async def timed(
    probe: Callable[[], Any],
    *,
    within: float,
    what: str = "the condition",
    every: float = POLL,
) -> float:
    """How many seconds `probe` took to hold (see `wait_until`)."""
    started = time.perf_counter()
    await wait_until(probe, within=within, what=what, every=every)
    return time.perf_counter() - started


async def answering(http: httpx.AsyncClient, path: str = "/readyz") -> bool:
    """True once `path` answers 200; False while the server refuses or answers otherwise."""
    try:
        return (await http.get(path)).status_code == 200
    except httpx.TransportError:
        return False
