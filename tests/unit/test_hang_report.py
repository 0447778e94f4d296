"""tests/support/hang_report.py: what a hung test prints before pytest-timeout ends it."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import hang_report
from tests.support.hang_report import HangReport, task_stacks


async def _stuck_forever(event: asyncio.Event) -> None:
    await event.wait()


async def test_the_dump_names_every_waiting_task_and_where_it_waits() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_stuck_forever(event), name="the-stuck-one")
    await asyncio.sleep(0)  # one turn: the task starts and reaches its wait
    try:
        dump = task_stacks("a title")
    finally:
        event.set()
        await task
    assert "==== a title: every asyncio task ====" in dump
    assert "the-stuck-one" in dump
    assert "in _stuck_forever" in dump
    assert "await event.wait()" in dump


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def test_the_dump_follows_the_await_chain_down_to_the_future() -> None:
    """print_stack shows only `_outer`; the chain names `_inner` and Event.wait too, and
    the future at the bottom."""
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event), name="the-nested-one")
    await asyncio.sleep(0)  # one turn: the task starts and reaches its wait
    try:
        chain = hang_report.await_chain(task)
        dump = task_stacks("nested")
    finally:
        event.set()
        await task
    names = [step.rsplit(" in ", 1)[-1] for step in chain[:-1]]
    assert names == ["_outer", "_inner", "wait"]
    assert chain[-1].startswith("waits on <Future pending")
    assert "in _inner" in dump


def test_a_test_past_its_share_of_the_timeout_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hang_report, "LOOK_EVERY", 0.05)
    report = HangReport.start(timeout=0.25)  # reports after 0.2 s
    report.started("tests/x.py::test_slow")
    time.sleep(0.6)  # the test runs past its share: time itself is what is tested
    report.started("tests/x.py::test_quick")
    report.finished()
    time.sleep(0.3)  # several more looks, with no test running: nothing more is written
    err = capsys.readouterr().err
    assert err.count("tests/x.py::test_slow has run 0 s") == 1
    assert "test_quick" not in err
