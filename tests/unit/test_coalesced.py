"""service/commands/coalesced.py: the reads of one moment go as one query, in order, each
caller with its own answer; a failure reaches every caller of its batch and nobody else."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from service.commands.coalesced import Coalesced


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)  # turns of the event loop are what is tested: who goes together


class Source:
    """A fetch that records each batch and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()  # open: each fetch goes through; cleared: held
        self.gate.set()
        self.fail_on: int | None = None

    async def fetch(self, keys: Sequence[int]) -> list[str]:
        self.batches.append(list(keys))
        await self.gate.wait()
        if self.fail_on is not None and self.fail_on in keys:
            raise LookupError(f"no {self.fail_on}")
        return [f"v{k}" for k in keys]


async def _one_in_flight(
    *, fail_on: int | None = None
) -> tuple[Source, Coalesced[int, str], asyncio.Future[str]]:
    """A source held at its gate, and the first caller, whose query (key 1) is in flight."""
    source = Source()
    source.gate.clear()
    source.fail_on = fail_on
    reads = Coalesced(source.fetch)
    first = asyncio.ensure_future(reads.get(1))
    await _turns(2)
    assert source.batches == [[1]]
    return source, reads, first


async def test_callers_of_one_moment_share_one_query_and_get_their_own_answers() -> None:
    source = Source()
    reads = Coalesced(source.fetch)
    answers = await asyncio.gather(*(reads.get(k) for k in [3, 1, 2, 1]))
    assert answers == ["v3", "v1", "v2", "v1"]
    assert source.batches == [[3, 1, 2, 1]]


async def test_a_lone_caller_goes_at_once() -> None:
    source = Source()
    reads = Coalesced(source.fetch)
    assert await asyncio.wait_for(reads.get(7), timeout=1) == "v7"
    assert await reads.get(8) == "v8"
    assert source.batches == [[7], [8]]


async def test_callers_arriving_during_a_query_go_together_in_the_next() -> None:
    source, reads, first = await _one_in_flight()
    later = [asyncio.ensure_future(reads.get(k)) for k in (2, 3)]
    await _turns(2)
    assert source.batches == [[1]]  # one query in flight at a time
    source.gate.set()
    assert await first == "v1"
    assert await asyncio.gather(*later) == ["v2", "v3"]
    assert source.batches == [[1], [2, 3]]


async def test_a_failed_query_fails_its_batch_only() -> None:
    source, reads, first = await _one_in_flight(fail_on=2)
    failing = [asyncio.ensure_future(reads.get(k)) for k in (2, 4)]
    await _turns(1)
    source.gate.set()
    assert await first == "v1"
    for future in failing:
        with pytest.raises(LookupError, match="no 2"):
            await future
    assert await reads.get(5) == "v5"  # the reads go on


async def test_a_caller_that_gives_up_is_left_out_and_the_others_answered() -> None:
    source, reads, first = await _one_in_flight()
    quitter = asyncio.ensure_future(reads.get(2))
    stayer = asyncio.ensure_future(reads.get(3))
    await _turns(1)
    quitter.cancel()
    source.gate.set()
    assert await first == "v1"
    assert await stayer == "v3"
    assert quitter.cancelled()
    assert source.batches == [[1], [3]]  # the one who left was not asked about


async def test_a_batch_holds_at_most_max_batch_callers() -> None:
    source = Source()
    reads = Coalesced(source.fetch, max_batch=2)
    assert await asyncio.gather(*(reads.get(k) for k in range(5))) == [f"v{k}" for k in range(5)]
    assert source.batches == [[0, 1], [2, 3], [4]]


async def test_a_fetch_that_answers_the_wrong_number_fails_its_callers() -> None:
    async def short(keys: Sequence[int]) -> list[str]:
        return ["only one"]

    reads: Coalesced[int, str] = Coalesced(short)
    results = await asyncio.gather(reads.get(1), reads.get(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results


async def test_a_cancelled_runner_cancels_its_waiting_callers() -> None:
    source = Source()
    source.gate.clear()
    reads = Coalesced(source.fetch)
    callers = [asyncio.ensure_future(reads.get(k)) for k in (1, 2)]
    await _turns(2)
    more = asyncio.ensure_future(reads.get(3))
    await _turns(1)
    runner = reads._runner
    assert runner is not None
    runner.cancel()
    results = await asyncio.gather(*callers, more, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    source.gate.set()
    assert await asyncio.wait_for(reads.get(4), timeout=1) == "v4"  # a new runner starts
