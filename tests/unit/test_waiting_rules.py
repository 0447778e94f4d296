"""Tests wait for what they mean: a fixed sleep in tests/ is either tests.support.waiting's
poll or says on its line why time itself is what the test needs (a clock passing a deadline,
nothing happening within a window). The files listed below still hold older sleeps without
a reason; their counts may only go down."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
POLL = "support/waiting.py"
# Files with sleeps that have no reason on their line yet, and at most how many.
UNEXPLAINED_AT_MOST = {
    "faults/test_nats_outage.py": 1,  # the outage's fixed length
    "faults/test_postgres_outage.py": 1,  # the outage's fixed length
}


def _sleeps(path: Path) -> list[int]:
    """Line numbers of `asyncio.sleep(...)` and `time.sleep(...)` calls in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "sleep"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"asyncio", "time"}
        ):
            found.append(node.lineno)
    return found


def _unexplained() -> dict[str, list[int]]:
    by_file: dict[str, list[int]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        name = path.relative_to(TESTS).as_posix()
        if name == POLL:
            continue
        lines = path.read_text().splitlines()
        bare = [n for n in _sleeps(path) if "#" not in lines[n - 1]]
        if bare:
            by_file[name] = bare
    return by_file


def test_every_fixed_sleep_says_why() -> None:
    """No sleep without a reason on its line, beyond the listed files' remaining counts."""
    over = {
        name: lines
        for name, lines in _unexplained().items()
        if len(lines) > UNEXPLAINED_AT_MOST.get(name, 0)
    }
    assert over == {}, (
        "wait for the condition (tests.support.waiting.wait_until, a worker's wait_for, "
        f"Wakeups.listening/sleepers) instead of sleeping, at: {over}"
    )


def test_one_waiting_helper() -> None:
    """`wait_until`/`eventually` are defined once, in tests/support/waiting.py."""
    defined = []
    for path in sorted(TESTS.rglob("*.py")):
        name = path.relative_to(TESTS).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name in {
                "wait_until",
                "eventually",
            }:
                defined.append(name)
    assert sorted(set(defined)) == [POLL]  # its overloads and itself
