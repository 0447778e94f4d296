"""Every asyncio task's stack when a test hangs, before pytest-timeout ends it.

pytest-timeout's own report shows threads, and a hung coroutine has none: the main thread
just waits in the event loop's select. So a watchdog thread notes when each test starts
(setup included) and, once one has run for REPORT_SHARE of the timeout, writes the stack of
every task of every live event loop to stderr, where pytest shows it with the test's
failure, and under each task the chain of what it awaits, down to the future it waits on
(`Task.print_stack` shows a coroutine's outermost frame only: session 12's mailer hang
showed `Mailer.run` waiting on "a Future", not which). Reading another thread's loop is
not thread-safe; for a dump taken once, while that loop is stuck, a retry on a set that
changed under us is enough.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time

REPORT_SHARE = 0.8  # of the test's timeout: late enough for no slow test, early enough to print
LOOK_EVERY = 2.0  # seconds between the watchdog's looks


class HangReport:
    def __init__(self, after: float) -> None:
        self.after = after
        self._test: tuple[str, float] | None = None
        self._reported: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def start(cls, timeout: float) -> HangReport:
        report = cls(timeout * REPORT_SHARE)
        threading.Thread(target=report._watch, name="hang-report", daemon=True).start()
        return report

    def started(self, nodeid: str) -> None:
        with self._lock:
            self._test = (nodeid, time.monotonic())

    def finished(self) -> None:
        with self._lock:
            self._test = None

    def _watch(self) -> None:
        while True:
            time.sleep(LOOK_EVERY)  # the watchdog's period: it looks at the clock, not a state
            with self._lock:
                test = self._test
            if test is None or test[0] == self._reported:
                continue
            nodeid, since = test
            if time.monotonic() - since >= self.after:
                self._reported = nodeid
                sys.stderr.write(task_stacks(f"{nodeid} has run {self.after:.0f} s"))
                sys.stderr.flush()


def task_stacks(title: str) -> str:
    """The stack of every task of every event loop not closed, under `title`."""
    out = io.StringIO()
    out.write(f"\n==== {title}: every asyncio task ====\n")
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if loop.is_closed():
            continue
        for _ in range(5):
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:  # the set changed while we read it
                continue
        else:
            tasks = []
        out.write(f"-- {loop!r}: {len(tasks)} tasks\n")
        for task in tasks:
            out.write(f"--- {task!r}\n")
            task.print_stack(file=out)
            out.write("    awaiting, outermost first:\n")
            out.writelines(f"      {step}\n" for step in await_chain(task))
    return out.getvalue()


def await_chain(task: asyncio.Task[object]) -> list[str]:
    """Where `task` waits: each coroutine (or generator) it is suspended in, outermost
    first, as `file:line in function`, then what the innermost one awaits (a future)."""
    steps: list[str] = []
    awaited: object = task.get_coro()
    for _ in range(200):  # a chain is never this deep; a cycle must not hang the watchdog
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            if awaited is not None:  # a future's iterator: the task names the future itself
                steps.append(f"waits on {getattr(task, '_fut_waiter', None) or awaited!r}")
            break
        code = frame.f_code
        steps.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return steps
