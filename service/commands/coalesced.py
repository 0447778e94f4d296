"""One query for the reads a process's callers make at the same moment.

Under load, the requests a process serves ask the same question about different keys within a
fraction of a millisecond (every ID-JAG registration reads its issuer's trust entry and the
head of its delegation before anything else). Asked one by one, each pays a pool checkout, a
round trip and the server's per-statement work. `Coalesced` answers whatever waits with one
query, with one query in flight at a time: the callers of one turn of the event loop go
together, and those that arrive while a query runs go together in the next one. A lone caller
goes at once; nobody waits for company.

A failed query fails every caller of its batch with the same error (each would have met it
alone); a caller that gives up (cancelled) is left out of the answer.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
MAX_BATCH = 256  # callers answered by one query at most


class Coalesced(Generic[K, V]):
    """`fetch` answers a list of keys with one value per key, in the keys' order."""

    def __init__(
        self, fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]], *, max_batch: int = MAX_BATCH
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.append((key, future))
        runner = self._runner
        if runner is None or runner.done() or runner.get_loop() is not loop:
            # In a context of its own: the first caller's request id must not stick to
            # every query the runner ever sends.
            self._runner = loop.create_task(self._run(), context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[K, asyncio.Future[V]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                batch = [(key, future) for key, future in batch if not future.done()]
                if not batch:
                    continue
                try:
                    values = await self._fetch([key for key, _ in batch])
                except Exception as exc:  # every caller of the batch gets it
                    _fail(batch, exc)
                    continue
                if len(values) != len(batch):
                    _fail(batch, RuntimeError(f"{len(values)} answers for {len(batch)} keys"))
                    continue
                for (_, future), value in zip(batch, values, strict=True):
                    if not future.done():
                        future.set_result(value)
                batch = []
        except BaseException:  # cancelled with the loop: nobody may wait for an answer forever
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise


def _fail(batch: Sequence[tuple[object, asyncio.Future[V]]], error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
