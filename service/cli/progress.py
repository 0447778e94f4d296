"""How far long CLI work has come (`authledger replay`, `audit export`, `audit verify`), on
stderr so that stdout keeps only the command's output.

On a terminal: a bar (rich) with the count, the rate and the time left, cleared at the end.
Elsewhere (a log file, CI, a pipe): a plain line each time another tenth of the work is done
or `every` seconds have passed, whichever comes first:

    replay: 2,500/10,000 events (25%), 1,234 events/s, about 6 s left

The work calls the reporter with (done, total) as it goes; the reporter decides what to show.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

EVERY = 10.0  # seconds between two plain lines at the most
STEP = 0.1  # ... and a line for each tenth of the work done


class _Rate(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s")


class ProgressReport:
    """Call it with (done, total); use it as a context manager around the work."""

    def __init__(
        self,
        what: str,
        unit: str = "events",
        *,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        every: float = EVERY,
        enabled: bool = True,
    ) -> None:
        """`stream`: stderr by default; `terminal`: whether it is one (asked by default);
        `enabled`: False shows nothing."""
        self.what, self.unit, self.every, self.enabled = what, unit, every, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._said_at = self._started
        self._said: tuple[int, int] | None = None

    def __enter__(self) -> ProgressReport:
        self._started = self._said_at = time.monotonic()
        if self.enabled and self.terminal:
            console = Console(file=self.stream, force_terminal=True)
            self._bar = Progress(
                TextColumn(f"{self.what}:"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(self.unit),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                redirect_stdout=False,  # the command's output stays where it goes
                redirect_stderr=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=None)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        total = max(total, done)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        if total == 0:
            return
        now = time.monotonic()
        last_done = self._said[0] if self._said is not None else 0
        stepped = done - last_done >= STEP * total
        finished = done == total and self._said != (done, total)
        if stepped or finished or now - self._said_at >= self.every:
            self._said, self._said_at = (done, total), now
            print(self.line(done, total, now - self._started), file=self.stream, flush=True)

    def line(self, done: int, total: int, seconds: float) -> str:
        """The plain line: count, share, rate and the time left."""
        share = f" ({done * 100 // total}%)" if total else ""
        rate = done / seconds if seconds > 0 else 0.0
        text = f"{self.what}: {done:,}/{total:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s"
        if done < total and rate > 0:
            text += f", about {(total - done) / rate:,.0f} s left"
        return text
